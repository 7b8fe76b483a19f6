"""Separate actor and critic learning rates for SB3's actor-critic off-policy algorithms.

SB3's SAC and TD3/DDPG take one ``learning_rate`` and reset every optimiser to it at each train
step (``BaseAlgorithm._update_learning_rate``); ``params.yaml`` gives the actor and the critic
their own rates, as Lillicrap et al. (2015) did for DDPG (1e-4 actor, 1e-3 critic). The
algorithms in :mod:`mia.agents.sac` and :mod:`mia.agents.ddpg` route their override here.
"""

from __future__ import annotations

from typing import Any

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


class SplitRates:
    """Mixin for SB3's SAC / DDPG subclasses that carry ``actor_learning_rate`` and
    ``critic_learning_rate`` (``None``: follow SB3's schedule): SB3 calls
    ``_update_learning_rate`` before every batch of gradient steps and would reset every
    optimiser to one rate; this routes it to :func:`set_actor_critic_rates` instead."""

    def _update_learning_rate(self, optimizers: list[Optimizer] | Optimizer) -> None:
        self._apply_rates(optimizers, log=True)

    def _apply_rates(self, optimizers: list[Optimizer] | Optimizer, *, log: bool) -> None:
        me: Any = self  # the SB3 algorithm this is mixed into
        scheduled = float(me.lr_schedule(me._current_progress_remaining))
        set_actor_critic_rates(
            optimizers, critic=me.critic.optimizer,
            actor_lr=scheduled if me.actor_learning_rate is None else me.actor_learning_rate,
            critic_lr=scheduled if me.critic_learning_rate is None else me.critic_learning_rate,
            logger=me.logger if log else None)
