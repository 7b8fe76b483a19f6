"""Same seed + same env -> identical weights after training (CPU)."""

import pytest
import torch

from mia.agents import action_kind, build
from mia.config import AGENT_NAMES
from tests.unit.agents.conftest import small
from tests.unit.agents.toy_envs import SignalEnv


def _trained(agents_cfg, name: str, seed: int) -> dict[str, torch.Tensor]:
    cfg = small(getattr(agents_cfg, name))
    m = build(name, cfg, SignalEnv(discrete=action_kind(name) == "discrete"), seed=seed)
    m.learn(cfg.total_timesteps)
    return m.policy.state_dict()


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_same_seed_trains_identical_weights_and_another_seed_does_not(agents_cfg, name):
    a, b = _trained(agents_cfg, name, 7), _trained(agents_cfg, name, 7)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _trained(agents_cfg, name, 8)
    assert any(not torch.equal(a[k], c[k]) for k in a)
