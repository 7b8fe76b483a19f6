"""Seeded test markets and the repo's env config, shared by the env and backtest tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import EnvConfig, load_params
from mia.data.contracts import contract
from mia.envs.market import Market
from mia.features.normalize import Normalizer

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def env_config(**changes: Any) -> EnvConfig:
    """The repo's ``env`` section with some keys changed."""
    return dataclasses.replace(load_params(REPO_PARAMS, env={}).env, **changes)


def make_market(n: int = 600, n_features: int = 4, seed: int = 0, *, spread: bool = True,
                symbol: str = "ES") -> Market:
    """A random-walk market on the tick grid with gaps between bars and random features."""
    rng = np.random.default_rng(seed)
    tick = contract(symbol).tick_size
    close = 4800.0 + tick * np.cumsum(rng.integers(-4, 5, n))
    open_ = np.r_[close[0], close[:-1]] + tick * rng.integers(-1, 2, n)  # a gap at each open
    raw = rng.standard_normal((n, n_features))
    names = tuple(f"f{i}" for i in range(n_features))
    norm = Normalizer.fit(raw, names, slice(0, n))
    return Market(features=norm.transform(raw), names=names, open=open_, close=close,
                  spread=tick * rng.integers(1, 4, n).astype(float) if spread else None,
                  spec=contract(symbol), bound=norm.clip)


def planted_market(n: int, seed: int, strength: float) -> tuple[Market, np.ndarray]:
    """Closes whose next increment is ``strength * x_t`` plus unit noise, ``x`` a persistent
    AR(1) feature (phi 0.99) beside a pure-noise feature; ``strength = 0`` is a random walk.

    :return: the market and the raw signal x.
    """
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    shocks = rng.standard_normal(n) * np.sqrt(1 - 0.99**2)
    for t in range(1, n):
        x[t] = 0.99 * x[t - 1] + shocks[t]
    step = np.r_[0.0, strength * x[:-1]] + rng.standard_normal(n)
    close = 4800.0 + np.cumsum(step)
    open_ = np.r_[close[0], close[:-1]]
    raw = np.column_stack([x, rng.standard_normal(n)])
    names = ("signal", "noise")
    norm = Normalizer.fit(raw, names, slice(0, n // 2))  # the older half: a training window
    market = Market(features=norm.transform(raw), names=names, open=open_, close=close,
                    spread=None, spec=contract("ES"), bound=norm.clip)
    return market, x
