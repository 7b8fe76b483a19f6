"""Proximal Policy Optimization (Schulman et al., 2017, "Proximal Policy Optimization
Algorithms"), SB3's implementation with separate policy and value activations.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.type_aliases import GymEnv

from mia.agents._common import (
    activation,
    check_config,
    check_device,
    check_seed,
    check_spaces,
    set_torch_threads,
)
from mia.agents._policies import SplitActivationPolicy
from mia.config.agents import PPOConfig
from mia.errors import ConfigError


def ppo_kwargs(cfg: PPOConfig, env: GymEnv, agent: str) -> dict[str, Any]:
    """Check a PPO config against the env and turn it into SB3 ``PPO`` keyword arguments.

    Shared by :mod:`mia.agents.ppo_lagrangian`, whose config extends :class:`PPOConfig`.

    :param cfg: the PPO hyper-parameters.
    :param env: the training env (its number of copies sets the rollout size).
    :param agent: the ``params.yaml`` key, named in errors.
    :return: keyword arguments for ``PPO`` (and subclasses), without ``policy`` and ``env``.
    :raises ConfigError: for a minibatch of one sample or a budget below one rollout (the
        config itself rejects ``batch_size > n_steps``).
    """
    pi_act = activation(cfg.policy_activation, f"agents.{agent}.policy_activation")
    vf_act = activation(cfg.value_activation, f"agents.{agent}.value_activation")
    rollout = cfg.n_steps * int(getattr(env, "num_envs", 1))
    key = f"agents.{agent}"
    if cfg.batch_size < 2:
        # SB3 normalises advantages per minibatch, which needs two samples (SB3 GH#325)
        raise ConfigError(f"{key}.batch_size: {cfg.batch_size}; use at least 2")
    if cfg.total_timesteps < rollout:
        raise ConfigError(f"{key}.total_timesteps: {cfg.total_timesteps} is less than one "
                          f"rollout (n_steps x envs = {rollout}); PPO would collect {rollout} "
                          "steps anyway. Raise total_timesteps or lower n_steps")
    return {
        "learning_rate": cfg.learning_rate,
        "n_steps": cfg.n_steps,
        "batch_size": cfg.batch_size,
        "n_epochs": cfg.n_epochs,
        "gamma": cfg.gamma,
        "gae_lambda": cfg.gae_lambda,
        "clip_range": cfg.clip_range,
        "policy_kwargs": {"net_arch": {"pi": list(cfg.policy_arch), "vf": list(cfg.value_arch)},
                          "activation_fn": pi_act, "value_activation_fn": vf_act},
    }


def build(cfg: PPOConfig, env: GymEnv, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> PPO:
    """Build PPO from ``params.yaml: agents.ppo``.

    :param cfg: the PPO hyper-parameters.
    :param env: a gymnasium env or VecEnv with a bounded ``Box`` action (target position).
    :param seed: seeds Python, numpy, torch and the env (SB3 ``seed=``).
    :param device: torch device; determinism is promised on ``cpu``.
    :param verbose: SB3 verbosity.
    :return: the untrained model; train it with ``model.learn(cfg.total_timesteps)``.
    :raises ConfigError: for a bad hyper-parameter, seed, device or an env that does not fit.
    """
    check_config(cfg, PPOConfig, "ppo")
    seed = check_seed(seed)
    check_device(device)
    check_spaces(env, "continuous", "ppo")
    kwargs = ppo_kwargs(cfg, env, "ppo")
    set_torch_threads()
    return PPO(SplitActivationPolicy, env, seed=seed, device=device, verbose=verbose, **kwargs)
