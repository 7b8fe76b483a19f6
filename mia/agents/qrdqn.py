"""Quantile-Regression DQN (Dabney et al., 2017, "Distributional Reinforcement Learning with
Quantile Regression"), sb3-contrib's implementation, over the discrete {short, flat, long} action.
"""

from __future__ import annotations

from sb3_contrib import QRDQN
from stable_baselines3.common.type_aliases import GymEnv

from mia.agents._common import (
    LEARNING_STARTS,
    activation,
    check_config,
    check_device,
    check_off_policy_budget,
    check_seed,
    check_spaces,
    replay_capacity,
    set_torch_threads,
)
from mia.config.agents import QRDQNConfig


def build(cfg: QRDQNConfig, env: GymEnv, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> QRDQN:
    """Build QR-DQN from ``params.yaml: agents.qrdqn``.

    ``exploration_fraction`` is the share of ``total_timesteps`` over which epsilon anneals
    from 1 to 0.01 (sb3-contrib's schedule, fed the budget by ``model.learn``).

    :param cfg: the QR-DQN hyper-parameters (``n_quantiles`` quantiles per action, 51 default).
    :param env: a gymnasium env or VecEnv with a ``Discrete`` action space.
    :param seed: seeds Python, numpy, torch and the env (SB3 ``seed=``).
    :param device: torch device; determinism is promised on ``cpu``.
    :param verbose: SB3 verbosity.
    :return: the untrained model; train it with ``model.learn(cfg.total_timesteps)``.
    :raises ConfigError: for a bad hyper-parameter, seed, device or an env that does not fit.
    """
    check_config(cfg, QRDQNConfig, "qrdqn")
    seed = check_seed(seed)
    check_device(device)
    check_spaces(env, "discrete", "qrdqn")
    check_off_policy_budget("qrdqn", cfg.total_timesteps, cfg.batch_size)
    act = activation(cfg.activation, "agents.qrdqn.activation")
    set_torch_threads()
    return QRDQN(
        "MlpPolicy", env,
        learning_rate=cfg.learning_rate,
        buffer_size=replay_capacity(cfg.buffer_size, cfg.total_timesteps),
        learning_starts=LEARNING_STARTS,
        batch_size=cfg.batch_size,
        gamma=cfg.gamma,
        exploration_fraction=cfg.exploration_fraction,
        policy_kwargs={"net_arch": list(cfg.net_arch), "activation_fn": act,
                       "n_quantiles": cfg.n_quantiles},
        seed=seed, device=device, verbose=verbose,
    )
