"""SAC and DDPG: the actor and the critic each train at their own params.yaml rate."""

import pytest
import torch

from mia.agents import build
from mia.agents.ddpg import SplitRateDDPG
from mia.agents.sac import SplitRateSAC
from tests.unit.agents.conftest import small
from tests.unit.agents.toy_envs import SignalEnv


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("name", ["sac", "ddpg"])
def test_each_optimizer_keeps_its_own_rate_after_train_steps(agents_cfg, name):
    cfg = small(getattr(agents_cfg, name))
    assert cfg.actor_learning_rate != cfg.critic_learning_rate  # params.yaml: 3e-4/1e-3, 1e-4/3e-4
    m = build(name, cfg, SignalEnv(), seed=0)
    m.learn(cfg.total_timesteps)
    assert m._n_updates > 0  # SB3 reset the rates before these gradient steps
    assert _lr(m.actor.optimizer) == cfg.actor_learning_rate
    assert _lr(m.critic.optimizer) == cfg.critic_learning_rate
    if name == "sac":  # the entropy temperature follows the actor
        assert _lr(m.ent_coef_optimizer) == cfg.actor_learning_rate
    assert m.logger.name_to_value["train/critic_learning_rate"] == cfg.critic_learning_rate


@pytest.mark.parametrize("cls", [SplitRateSAC, SplitRateDDPG])
def test_a_zero_critic_rate_freezes_the_critic_while_the_actor_learns(cls):
    m = cls("MlpPolicy", SignalEnv(), learning_rate=1e-3, actor_learning_rate=1e-3,
            critic_learning_rate=0.0, learning_starts=50, batch_size=16,
            policy_kwargs={"net_arch": [16]}, seed=0)
    actor, critic = _snapshot(m.actor), _snapshot(m.critic)
    m.learn(120)
    assert _moved(actor, m.actor)
    assert not _moved(critic, m.critic)


@pytest.mark.parametrize("name", ["sac", "ddpg"])
def test_saved_and_loaded_model_keeps_both_rates(agents_cfg, name, tmp_path):
    cfg = small(getattr(agents_cfg, name))
    m = build(name, cfg, SignalEnv(), seed=0)
    m.learn(cfg.total_timesteps)
    m.save(tmp_path / "model.zip")
    loaded = type(m).load(tmp_path / "model.zip", env=SignalEnv())
    loaded.learn(cfg.total_timesteps, reset_num_timesteps=False)
    assert (_lr(loaded.actor.optimizer), _lr(loaded.critic.optimizer)) == (
        cfg.actor_learning_rate, cfg.critic_learning_rate)
