"""Soft Actor-Critic (Haarnoja et al., 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor"), SB3's implementation with separate actor and
critic learning rates.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3 import SAC
from stable_baselines3.common.type_aliases import GymEnv
from torch.optim import Optimizer

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
from mia.agents._rates import SplitRates
from mia.config.agents import SACConfig


class SplitRateSAC(SplitRates, SAC):
    """SB3 SAC whose actor (and entropy temperature) and critic learn at their own rates.

    :param actor_learning_rate: Adam step of the actor and of the entropy temperature;
        ``None`` = SB3's ``learning_rate`` schedule.
    :param critic_learning_rate: Adam step of the twin Q-networks; ``None`` = ``learning_rate``.
        Other parameters are SB3 ``SAC``'s.
    """

    def __init__(self, *args: Any, actor_learning_rate: float | None = None,
                 critic_learning_rate: float | None = None, **kwargs: Any) -> None:
        # set before super().__init__, which runs _setup_model
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        # the optimisers are created at lr_schedule(1); give each its own rate from the start
        self._apply_rates(self._optimizers(), log=False)

    def _optimizers(self) -> list[Optimizer]:
        extra = [] if self.ent_coef_optimizer is None else [self.ent_coef_optimizer]
        return [self.actor.optimizer, self.critic.optimizer, *extra]


def build(cfg: SACConfig, env: GymEnv, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> SplitRateSAC:
    """Build SAC from ``params.yaml: agents.sac``.

    :param cfg: the SAC hyper-parameters.
    :param env: a gymnasium env or VecEnv with a bounded ``Box`` action (target position).
    :param seed: seeds Python, numpy, torch and the env (SB3 ``seed=``).
    :param device: torch device; determinism is promised on ``cpu``.
    :param verbose: SB3 verbosity (0 silent, 1 progress tables).
    :return: the untrained model; train it with ``model.learn(cfg.total_timesteps)``.
    :raises ConfigError: for a bad hyper-parameter, seed, device or an env that does not fit,
        before anything is allocated.
    """
    check_config(cfg, SACConfig, "sac")
    seed = check_seed(seed)
    check_device(device)
    check_spaces(env, "continuous", "sac")
    check_off_policy_budget("sac", cfg.total_timesteps, cfg.batch_size)
    act = activation(cfg.activation, "agents.sac.activation")
    set_torch_threads()
    return SplitRateSAC(
        "MlpPolicy", env,
        learning_rate=cfg.actor_learning_rate,
        actor_learning_rate=cfg.actor_learning_rate,
        critic_learning_rate=cfg.critic_learning_rate,
        buffer_size=replay_capacity(cfg.buffer_size, cfg.total_timesteps),
        learning_starts=LEARNING_STARTS,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        ent_coef=cfg.ent_coef,
        policy_kwargs={"net_arch": {"pi": list(cfg.actor_arch), "qf": list(cfg.critic_arch)},
                       "activation_fn": act},
        seed=seed, device=device, verbose=verbose,
    )
