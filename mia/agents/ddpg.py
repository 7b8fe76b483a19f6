"""Deep Deterministic Policy Gradient (Lillicrap et al., 2015, "Continuous control with deep
reinforcement learning"), SB3's implementation with separate actor and critic learning rates and
activations, and Gaussian exploration noise.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from gymnasium import spaces
from stable_baselines3 import DDPG
from stable_baselines3.common.noise import NormalActionNoise
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
from mia.agents._policies import SplitActivationTD3Policy
from mia.agents._rates import SplitRates
from mia.config.agents import DDPGConfig


class SplitRateDDPG(SplitRates, DDPG):
    """SB3 DDPG whose actor and critic learn at their own rates.

    :param actor_learning_rate: Adam step of the actor; ``None`` = SB3's ``learning_rate``.
    :param critic_learning_rate: Adam step of the critic; ``None`` = ``learning_rate``.
        Other parameters are SB3 ``DDPG``'s.
    """

    def __init__(self, *args: Any, actor_learning_rate: float | None = None,
                 critic_learning_rate: float | None = None, **kwargs: Any) -> None:
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self._apply_rates([self.actor.optimizer, self.critic.optimizer], log=False)


def build(cfg: DDPGConfig, env: GymEnv, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> SplitRateDDPG:
    """Build DDPG from ``params.yaml: agents.ddpg``.

    ``action_noise`` is the standard deviation of Gaussian noise in action units. SB3 adds the
    noise to the action rescaled to [-1, 1], so it is divided by the half-width of the action Box
    (1 for the env's Box(-1, 1): unchanged); 0 disables exploration noise.

    :param cfg: the DDPG hyper-parameters.
    :param env: a gymnasium env or VecEnv with a bounded ``Box`` action (target position).
    :param seed: seeds Python, numpy, torch and the env (SB3 ``seed=``).
    :param device: torch device; determinism is promised on ``cpu``.
    :param verbose: SB3 verbosity.
    :return: the untrained model; train it with ``model.learn(cfg.total_timesteps)``.
    :raises ConfigError: for a bad hyper-parameter, seed, device or an env that does not fit.
    """
    check_config(cfg, DDPGConfig, "ddpg")
    seed = check_seed(seed)
    check_device(device)
    check_spaces(env, "continuous", "ddpg")
    check_off_policy_budget("ddpg", cfg.total_timesteps, cfg.batch_size)
    actor_act = activation(cfg.actor_activation, "agents.ddpg.actor_activation")
    critic_act = activation(cfg.critic_activation, "agents.ddpg.critic_activation")
    set_torch_threads()
    space = cast(spaces.Box, env.action_space)  # checked above
    half_width = (np.asarray(space.high, dtype=np.float64) - space.low) / 2.0
    noise = None if cfg.action_noise == 0 else NormalActionNoise(
        mean=np.zeros(space.shape[0]), sigma=cfg.action_noise / half_width)
    return SplitRateDDPG(
        SplitActivationTD3Policy, env,
        learning_rate=cfg.actor_learning_rate,
        actor_learning_rate=cfg.actor_learning_rate,
        critic_learning_rate=cfg.critic_learning_rate,
        buffer_size=replay_capacity(cfg.buffer_size, cfg.total_timesteps),
        learning_starts=LEARNING_STARTS,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        action_noise=noise,
        policy_kwargs={"net_arch": {"pi": list(cfg.actor_arch), "qf": list(cfg.critic_arch)},
                       "activation_fn": actor_act, "critic_activation_fn": critic_act},
        seed=seed, device=device, verbose=verbose,
    )
