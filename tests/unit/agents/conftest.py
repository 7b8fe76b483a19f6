from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mia.config import AgentsConfig, load_params

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


@pytest.fixture(scope="session")
def agents_cfg() -> AgentsConfig:
    """``params.yaml: agents`` as the project ships it."""
    return load_params(REPO_PARAMS).agents


def small(cfg: Any, **overrides: Any) -> Any:
    """A params.yaml agent config with tiny networks and budgets (SB3's tests train 64 steps)."""
    name = type(cfg).__name__
    if name.startswith("PPO"):
        base: dict[str, Any] = {"policy_arch": (16,), "value_arch": (16,), "n_steps": 64,
                                "batch_size": 32, "n_epochs": 2, "total_timesteps": 128}
    elif name == "QRDQNConfig":
        base = {"net_arch": (16,), "total_timesteps": 164, "batch_size": 16}
    else:
        base = {"actor_arch": (16,), "critic_arch": (16,), "total_timesteps": 164,
                "batch_size": 16}
    return dataclasses.replace(cfg, **{**base, **overrides})
