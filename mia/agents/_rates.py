"""Separate actor and critic learning rates for SB3's actor-critic off-policy algorithms.

SB3's SAC and TD3/DDPG take one ``learning_rate`` and reset every optimiser to it at each train
step (``BaseAlgorithm._update_learning_rate``); ``params.yaml`` gives the actor and the critic
their own rates, as Lillicrap et al. (2015) did for DDPG (1e-4 actor, 1e-3 critic). The
algorithms in :mod:`mia.agents.sac` and :mod:`mia.agents.ddpg` route their override here.
"""

from __future__ import annotations

from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import update_learning_rate
from torch.optim import Optimizer


def set_actor_critic_rates(optimizers: list[Optimizer] | Optimizer, *, critic: Optimizer,
                           actor_lr: float, critic_lr: float, logger: Logger | None) -> None:
    """Give the critic's optimiser ``critic_lr`` and every other one ``actor_lr``.

    :param optimizers: the optimisers SB3 is about to step (actor, critic, and SAC's entropy
        temperature, which follows the actor: it is a policy-side parameter).
    :param critic: the critic's optimiser.
    :param actor_lr: learning rate of the actor (and the entropy temperature).
    :param critic_lr: learning rate of the critic.
    :param logger: SB3 logger to record ``train/actor_learning_rate`` and
        ``train/critic_learning_rate``, or ``None`` before learning starts.
    """
    for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
        update_learning_rate(optimizer, critic_lr if optimizer is critic else actor_lr)
    if logger is not None:
        logger.record("train/actor_learning_rate", actor_lr)
        logger.record("train/critic_learning_rate", critic_lr)
