"""CVaR PPO-Lagrangian: the shaped cost, the dual ascent, the equivalence with PPO at lambda 0,
and a constrained policy that takes less tail risk than PPO."""

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from mia.agents import build
from mia.agents._cost_buffer import CostRolloutBuffer
from mia.agents.ppo_lagrangian import PPOLagrangian
from mia.backtest.metrics import var_cvar
from mia.errors import ConfigError, OperationalError
from tests.unit.agents.conftest import small
from tests.unit.agents.toy_envs import NoCostEnv, RiskyBanditEnv, deterministic_costs


class _Multipliers(BaseCallback):
    """(lambda, CVaR of the rollout lambda was last updated with) at each rollout start."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[float, float]] = []

    def _on_rollout_start(self) -> None:
        self.history.append((self.model.lagrange_multiplier, self.model.rollout_cvar))

    def _on_step(self) -> bool:
        return True


def _buffer(n_steps: int) -> CostRolloutBuffer:
    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    return CostRolloutBuffer(n_steps, box, box, device="cpu", gamma=0.5, gae_lambda=1.0)


def _fill(buf: CostRolloutBuffer, costs: list[float], starts: list[float]) -> None:
    for c, s in zip(costs, starts, strict=True):
        buf.record_cost(np.array([c], np.float32))
        buf.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.array([s]), torch.zeros(1, 1),
                torch.zeros(1))


def test_cost_advantages_are_gae_of_the_cvar_shaped_cost():
    buf = _buffer(3)
    _fill(buf, [0.0, 1.0, 3.0], [1.0, 0.0, 0.0])
    # VaR 1, alpha 0.5: shaped cost (c - 1)+ / 0.5 = 0, 0, 4; values 0, gamma 0.5, lambda 1
    buf.compute_cost_returns_and_advantage(torch.zeros(1, 1), np.array([True]), var=1.0,
                                           alpha=0.5)
    assert buf.cost_advantages.ravel() == pytest.approx([1.0, 2.0, 4.0])  # 4, 0 + .5*4, .5*2
    buf.record_cost_values(torch.full((3, 1), 0.5))  # V_c = 0.5 everywhere
    buf.compute_cost_returns_and_advantage(torch.zeros(1, 1), np.array([True]), var=1.0,
                                           alpha=0.5)
    # deltas 0 + .5*.5 - .5, 0 + .5*.5 - .5, 4 - .5 = -.25, -.25, 3.5 -> A = .5, 1.5, 3.5
    assert buf.cost_advantages.ravel() == pytest.approx([0.5, 1.5, 3.5])
    assert buf.cost_returns.ravel() == pytest.approx([1.0, 2.0, 4.0])  # discounted shaped cost
    cut = _buffer(3)
    _fill(cut, [0.0, 1.0, 3.0], [1.0, 1.0, 0.0])  # a new episode starts at step 1
    cut.compute_cost_returns_and_advantage(torch.zeros(1, 1), np.array([True]), var=1.0,
                                           alpha=0.5)
    assert cut.cost_advantages.ravel() == pytest.approx([0.0, 2.0, 4.0])


def test_truncated_episode_bootstraps_the_cost_value():
    buf = _buffer(2)
    buf.record_cost(np.array([2.0], np.float32))
    buf.bootstrap_cost(0, 0.75)  # gamma * V_c(terminal obs) of a truncated episode
    buf.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.array([1.0]), torch.zeros(1, 1),
            torch.zeros(1))
    _fill(buf, [0.0], [1.0])
    buf.compute_cost_returns_and_advantage(torch.zeros(1, 1), np.array([True]), var=0.0,
                                           alpha=0.5)
    assert buf.cost_advantages.ravel() == pytest.approx([2.0 / 0.5 + 0.75, 0.0])


def _cfg(agents_cfg, **overrides):
    return small(agents_cfg.ppo_lagrangian, n_steps=64, batch_size=32, total_timesteps=320,
                 **overrides)


def test_lambda_rises_by_dual_ascent_while_the_constraint_is_violated(agents_cfg):
    cfg = _cfg(agents_cfg, cvar_limit=0.01, lambda_init=0.0, lambda_learning_rate=2.0)
    m = build("ppo_lagrangian", cfg, RiskyBanditEnv(), seed=0)
    record = _Multipliers()
    m.learn(cfg.total_timesteps, callback=record)
    history = [*record.history[1:], (m.lagrange_multiplier, m.rollout_cvar)]
    assert len(history) == 5  # one update per 64-step rollout
    lam = cfg.lambda_init
    for got, cvar in history:
        assert cvar > cfg.cvar_limit  # violated throughout
        assert got == pytest.approx(max(0.0, lam + 2.0 * (cvar - 0.01)))
        assert got > lam
        lam = got
    assert m.rollout_cvar == pytest.approx(var_cvar(m.rollout_buffer.costs.ravel(), 0.95)[1])
    logged = m.logger.name_to_value
    assert logged["train/lambda"] == pytest.approx(m.lagrange_multiplier)
    assert logged["train/cvar"] == pytest.approx(m.rollout_cvar)
    assert logged["train/constraint_violation"] == pytest.approx(m.rollout_cvar - 0.01)
    assert logged["train/var"] == pytest.approx(m.rollout_var)
    assert "train/cost_value_loss" in logged


def test_lambda_returns_to_zero_and_stays_there_when_the_limit_is_slack(agents_cfg):
    cfg = _cfg(agents_cfg, cvar_limit=50.0, lambda_init=3.0, lambda_learning_rate=1.0)
    m = build("ppo_lagrangian", cfg, RiskyBanditEnv(), seed=0)
    record = _Multipliers()
    m.learn(cfg.total_timesteps, callback=record)
    assert record.history[0][0] == 3.0
    assert [lam for lam, _ in record.history[1:]] == [0.0] * 4
    assert m.lagrange_multiplier == 0.0


def test_with_lambda_zero_the_policy_trains_exactly_as_plain_ppo(agents_cfg):
    cfg = _cfg(agents_cfg, cvar_limit=50.0, lambda_init=0.0)
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(agents_cfg.ppo)}
    # SB3 seeds the global generators when a model is built: build and train one at a time
    ppo = build("ppo", dataclasses.replace(agents_cfg.ppo, **fields), RiskyBanditEnv(), seed=4)
    ppo.learn(cfg.total_timesteps)
    lag = build("ppo_lagrangian", cfg, RiskyBanditEnv(), seed=4)
    lag.learn(cfg.total_timesteps)
    assert lag.lagrange_multiplier == 0.0
    ours, theirs = lag.policy.state_dict(), ppo.policy.state_dict()
    assert {k for k in ours if not k.startswith("cost_value_net")} == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_constrained_policy_takes_less_tail_risk_than_ppo_and_nears_the_limit(agents_cfg):
    # A bandit: no temporal structure, so a short horizon (gamma 0.5) keeps advantages' noise
    # low; a larger step size lets 16 updates move the policy. Same budget and seed for both.
    budget = {"policy_arch": (16,), "value_arch": (16,), "n_steps": 128, "batch_size": 64,
              "n_epochs": 10, "learning_rate": 1e-2, "gamma": 0.5, "gae_lambda": 0.9,
              "total_timesteps": 2048}
    limit = 0.1  # a full long position's CVaR is 0.317: PPO violates the limit
    ppo = build("ppo", dataclasses.replace(agents_cfg.ppo, **budget), RiskyBanditEnv(), seed=0)
    ppo.learn(2048)
    lag = build("ppo_lagrangian",
                dataclasses.replace(agents_cfg.ppo_lagrangian, **budget, cvar_limit=limit,
                                    lambda_learning_rate=5.0),
                RiskyBanditEnv(), seed=0)
    lag.learn(2048)
    cvar_ppo = var_cvar(deterministic_costs(ppo, RiskyBanditEnv(), 4000, seed=11), 0.95)[1]
    cvar_lag = var_cvar(deterministic_costs(lag, RiskyBanditEnv(), 4000, seed=11), 0.95)[1]
    assert cvar_ppo > 0.3  # PPO goes (almost) fully long
    assert cvar_lag < cvar_ppo - 0.1
    assert abs(cvar_lag - limit) < abs(cvar_ppo - limit) / 2
    assert lag.lagrange_multiplier > 1.0


def test_env_without_a_cost_signal_stops_at_the_first_step(agents_cfg):
    m = build("ppo_lagrangian", _cfg(agents_cfg), NoCostEnv(), seed=0)
    with pytest.raises(OperationalError, match=r"info\['cost'\]"):
        m.learn(320)
    assert m.num_timesteps == 1


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cvar_alpha": 1.0}, "cvar_alpha"), ({"cvar_alpha": 0.0}, "cvar_alpha"),
    ({"lambda_init": -0.1}, "lambda_init"), ({"lambda_learning_rate": 0.0}, "lambda_learning"),
    ({"cvar_limit": 0.0}, "cvar_limit"), ({"rollout_buffer_class": object}, "CostRolloutBuffer"),
])
def test_bad_lagrangian_parameters_are_rejected_before_setup(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PPOLagrangian("MlpPolicy", RiskyBanditEnv(), **kwargs)


def test_saved_model_keeps_lambda_and_the_cost_critic(agents_cfg, tmp_path):
    cfg = _cfg(agents_cfg, cvar_limit=0.01, lambda_learning_rate=2.0)
    m = build("ppo_lagrangian", cfg, RiskyBanditEnv(), seed=0)
    m.learn(cfg.total_timesteps)
    m.save(tmp_path / "lag.zip")
    loaded = PPOLagrangian.load(tmp_path / "lag.zip", env=RiskyBanditEnv())
    assert loaded.lagrange_multiplier == m.lagrange_multiplier > 0
    ours, theirs = m.policy.cost_value_net.state_dict(), loaded.policy.cost_value_net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.policy.cost_optimizer.state_dict()["state"]  # Adam moments restored
