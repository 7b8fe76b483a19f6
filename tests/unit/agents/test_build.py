"""Every params.yaml key reaches the SB3 model, and bad input fails before training."""

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from mia.agents import build
from mia.agents._common import TORCH_THREADS_ENV
from mia.errors import ConfigError
from tests.unit.agents.conftest import small
from tests.unit.agents.toy_envs import SignalEnv


def _linear_widths(module: nn.Module) -> list[int]:
    return [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]


def _activations(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, nn.ReLU | nn.Tanh)}


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def test_sac_uses_every_config_key(agents_cfg):
    cfg = small(agents_cfg.sac, actor_arch=(24, 12), critic_arch=(20,), activation="tanh",
                gamma=0.9, tau=0.02, batch_size=8, ent_coef=0.2)
    m = build("sac", cfg, SignalEnv(), seed=0)
    assert _linear_widths(m.actor.latent_pi) == [24, 12]
    assert _linear_widths(m.critic.qf0) == [20, 1]
    assert _linear_widths(m.critic.qf1) == [20, 1]
    assert _activations(m.actor) == _activations(m.critic) == {nn.Tanh}
    assert _lr(m.actor.optimizer) == cfg.actor_learning_rate
    assert _lr(m.critic.optimizer) == cfg.critic_learning_rate
    assert (m.gamma, m.tau, m.batch_size) == (0.9, 0.02, 8)
    assert m.ent_coef_optimizer is None
    assert m.ent_coef_tensor.item() == pytest.approx(0.2)
    auto = build("sac", small(agents_cfg.sac), SignalEnv(), seed=0)
    assert auto.ent_coef == "auto"
    assert _lr(auto.ent_coef_optimizer) == cfg.actor_learning_rate


@pytest.mark.parametrize("name", ["sac", "ddpg", "qrdqn"])
def test_replay_buffer_is_capped_at_the_training_budget(agents_cfg, name):
    cfg = small(getattr(agents_cfg, name))
    assert cfg.buffer_size == 1_000_000  # the params.yaml value
    m = build(name, cfg, SignalEnv(discrete=name == "qrdqn", obs_dim=151), seed=0)
    assert m.replay_buffer.buffer_size == cfg.total_timesteps
    assert m.replay_buffer.observations.shape == (cfg.total_timesteps, 1, 151)


def test_ppo_uses_every_config_key_with_separate_activations(agents_cfg):
    cfg = small(agents_cfg.ppo, policy_arch=(24, 12), value_arch=(20,), n_steps=96,
                batch_size=48, n_epochs=3, gamma=0.9, gae_lambda=0.8, clip_range=0.3,
                total_timesteps=96)
    assert (cfg.policy_activation, cfg.value_activation) == ("tanh", "relu")
    m = build("ppo", cfg, SignalEnv(), seed=0)
    ext = m.policy.mlp_extractor
    assert _linear_widths(ext.policy_net) == [24, 12]
    assert _activations(ext.policy_net) == {nn.Tanh}
    assert _linear_widths(ext.value_net) == [20]
    assert _activations(ext.value_net) == {nn.ReLU}
    assert _lr(m.policy.optimizer) == cfg.learning_rate
    assert (m.n_steps, m.batch_size, m.n_epochs, m.gamma, m.gae_lambda) == (96, 48, 3, 0.9, 0.8)
    assert m.clip_range(1.0) == pytest.approx(0.3)
    assert (m.rollout_buffer.gamma, m.rollout_buffer.gae_lambda) == (0.9, 0.8)


def test_ddpg_uses_every_config_key_and_noise_in_action_units(agents_cfg):
    cfg = small(agents_cfg.ddpg, actor_arch=(24,), critic_arch=(20, 10), gamma=0.9, tau=0.05,
                action_noise=0.3)
    assert (cfg.actor_activation, cfg.critic_activation) == ("tanh", "relu")
    m = build("ddpg", cfg, SignalEnv(), seed=0)
    assert _linear_widths(m.actor.mu) == [24, 1]
    assert _activations(m.actor) == {nn.Tanh}
    assert _linear_widths(m.critic.qf0) == [20, 10, 1]
    assert _activations(m.critic) == {nn.ReLU}
    assert (_lr(m.actor.optimizer), _lr(m.critic.optimizer)) == (
        cfg.actor_learning_rate, cfg.critic_learning_rate)
    assert (m.gamma, m.tau) == (0.9, 0.05)
    assert m.action_noise._sigma == pytest.approx([0.3])
    wide = SignalEnv()
    wide.action_space = spaces.Box(-2.0, 2.0, (1,), np.float32)
    # SB3 adds the noise to the action rescaled to [-1, 1]: 0.3 action units = 0.15 there
    assert build("ddpg", cfg, wide, seed=0).action_noise._sigma == pytest.approx([0.15])
    quiet = build("ddpg", dataclasses.replace(cfg, action_noise=0.0), SignalEnv(), seed=0)
    assert quiet.action_noise is None


def test_qrdqn_uses_every_config_key(agents_cfg):
    cfg = small(agents_cfg.qrdqn, net_arch=(24, 12), gamma=0.9, exploration_fraction=0.3)
    assert cfg.n_quantiles == 51
    assert cfg.activation == "relu"
    m = build("qrdqn", cfg, SignalEnv(discrete=True), seed=0)
    assert _linear_widths(m.quantile_net) == [24, 12, 3 * 51]  # 51 quantiles per action
    assert _activations(m.quantile_net) == {nn.ReLU}
    assert _lr(m.policy.optimizer) == cfg.learning_rate
    assert (m.gamma, m.batch_size, m.exploration_fraction) == (0.9, cfg.batch_size, 0.3)
    few = build("qrdqn", dataclasses.replace(cfg, n_quantiles=7), SignalEnv(discrete=True),
                seed=0)
    assert _linear_widths(few.quantile_net)[-1] == 3 * 7


def test_ppo_lagrangian_uses_its_cvar_keys_and_a_cost_critic_shaped_like_the_value_net(
        agents_cfg):
    cfg = small(agents_cfg.ppo_lagrangian, value_arch=(20, 10), cvar_alpha=0.9,
                cvar_limit=0.3, lambda_init=0.5, lambda_learning_rate=0.2)
    m = build("ppo_lagrangian", cfg, SignalEnv(), seed=0)
    assert (m.cvar_alpha, m.cvar_limit, m.lagrange_multiplier, m.lambda_learning_rate) == (
        0.9, 0.3, 0.5, 0.2)
    assert _linear_widths(m.policy.cost_value_net) == [20, 10, 1]
    assert _activations(m.policy.cost_value_net) == {nn.ReLU}
    assert _lr(m.policy.cost_optimizer) == cfg.learning_rate


# --- bad input: a clear error before anything trains ---------------------------------------

@pytest.mark.parametrize(("name", "discrete"), [
    ("sac", True), ("ppo", True), ("ddpg", True), ("ppo_lagrangian", True), ("qrdqn", False)])
def test_env_with_the_wrong_action_space_is_rejected(agents_cfg, name, discrete):
    with pytest.raises(ConfigError, match="action space"):
        build(name, small(getattr(agents_cfg, name)), SignalEnv(discrete=discrete), seed=0)


def test_env_with_a_non_box_observation_is_rejected(agents_cfg):
    env = SignalEnv()
    env.observation_space = spaces.Discrete(4)
    with pytest.raises(ConfigError, match="observation space must be a Box"):
        build("ppo", small(agents_cfg.ppo), env, seed=0)


@pytest.mark.parametrize(("name", "overrides", "match"), [
    ("ppo", {"total_timesteps": 32}, "less than one rollout"),
    ("ppo", {"batch_size": 1}, "at least 2"),
    ("ppo_lagrangian", {"cvar_alpha": 1.0}, "must be below 1"),
    ("sac", {"total_timesteps": 100}, "would never train"),
    ("ddpg", {"total_timesteps": 150, "batch_size": 200}, "exceeds total_timesteps"),
    ("qrdqn", {"activation": "elu"}, "agents.qrdqn.activation: 'elu' is not an activation"),
    ("ddpg", {"critic_activation": "gelu"}, "agents.ddpg.critic_activation"),
])
def test_bad_hyperparameters_raise_config_errors_naming_the_key(agents_cfg, name, overrides,
                                                                 match):
    cfg = small(getattr(agents_cfg, name), **overrides)
    env = SignalEnv(discrete=name == "qrdqn")
    with pytest.raises(ConfigError, match=match):
        build(name, cfg, env, seed=0)


def test_budget_below_one_vectorised_rollout_is_rejected(agents_cfg):
    cfg = small(agents_cfg.ppo, n_steps=64, total_timesteps=100)
    build("ppo", cfg, DummyVecEnv([SignalEnv]), seed=0)  # 64 steps x 1 env: fits
    with pytest.raises(ConfigError, match=r"less than one rollout \(n_steps x envs = 128\)"):
        build("ppo", cfg, DummyVecEnv([SignalEnv, SignalEnv]), seed=0)


def test_config_of_another_agent_is_rejected(agents_cfg):
    with pytest.raises(ConfigError, match="sac: build needs a SACConfig .* got PPOConfig"):
        build("sac", agents_cfg.ppo, SignalEnv(), seed=0)


@pytest.mark.parametrize("seed", [-1, 2**32, True, 1.5])
def test_unusable_seed_is_rejected(agents_cfg, seed):
    with pytest.raises(ConfigError, match="seed"):
        build("ppo", small(agents_cfg.ppo), SignalEnv(), seed=seed)


@pytest.mark.parametrize("device", ["gpu0", "cuda"])
def test_unusable_device_is_rejected_instead_of_silently_using_the_cpu(agents_cfg, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the fallback case cannot occur")
    with pytest.raises(ConfigError, match="device"):
        build("ppo", small(agents_cfg.ppo), SignalEnv(), seed=0, device=device)


def test_torch_threads_come_from_the_environment_with_a_default_of_one(agents_cfg,
                                                                        monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
        build("ppo", small(agents_cfg.ppo), SignalEnv(), seed=0)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(TORCH_THREADS_ENV, "2")
        build("ppo", small(agents_cfg.ppo), SignalEnv(), seed=0)
        assert torch.get_num_threads() == 2
        monkeypatch.setenv(TORCH_THREADS_ENV, "zero")
        with pytest.raises(ConfigError, match="MIA_TORCH_THREADS='zero'"):
            build("ppo", small(agents_cfg.ppo), SignalEnv(), seed=0)
    finally:
        torch.set_num_threads(before)


def test_value_activation_also_applies_when_net_arch_is_one_list():
    from mia.agents._policies import SplitActivationPolicy

    box = spaces.Box(-1.0, 1.0, (3,), np.float32)
    policy = SplitActivationPolicy(box, spaces.Box(-1.0, 1.0, (1,), np.float32),
                                   lambda _: 1e-3, net_arch=[8], activation_fn=nn.Tanh,
                                   value_activation_fn=nn.ReLU)
    ext = policy.mlp_extractor
    assert _linear_widths(ext.value_net) == [8]
    assert _activations(ext.value_net) == {nn.ReLU}
    assert _activations(ext.policy_net) == {nn.Tanh}
