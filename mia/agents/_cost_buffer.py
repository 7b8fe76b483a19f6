"""Rollout buffer that also keeps the per-step cost signal and its CVaR-shaped advantages.

Used by :class:`mia.agents.ppo_lagrangian.PPOLagrangian`. The cost of step ``t`` is the env's
``info["cost"]`` (the step's loss as a percent of initial equity). For a rollout-level VaR
estimate ``v``, the shaped cost ``(c_t - v)+ / (1 - alpha)`` has, by Rockafellar & Uryasev (2000),
mean ``CVaR_alpha - v``; its GAE advantage is therefore the policy-gradient signal of CVaR at
fixed ``v`` (Chow et al., 2017, "Risk-Constrained Reinforcement Learning with Percentile Risk
Criteria", do the same with ``v`` as an extra variable; at its optimum ``v = VaR``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from mia.errors import OperationalError

_BASE_ARRAYS = ("observations", "actions", "values", "log_probs", "advantages", "returns")
_COST_ARRAYS = ("cost_advantages", "cost_returns")


class CostRolloutSamples(NamedTuple):
    """One minibatch: SB3's samples plus the cost advantages and cost value targets."""

    base: RolloutBufferSamples
    cost_advantages: th.Tensor
    cost_returns: th.Tensor


def gae(rewards: np.ndarray, values: np.ndarray, episode_starts: np.ndarray,
        last_values: np.ndarray, dones: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimation (Schulman et al., 2016), SB3's recursion.

    :param rewards: (steps, envs) per-step signal.
    :param values: (steps, envs) value estimates of the observations.
    :param episode_starts: (steps, envs) 1 where a step begins a new episode.
    :param last_values: (envs,) value of the observation after the last step.
    :param dones: (envs,) whether the last step ended its episode.
    :param gamma: discount.
    :param lam: GAE lambda.
    :return: (steps, envs) advantages; returns are ``advantages + values``.
    """
    steps = len(rewards)
    out = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1], dtype=rewards.dtype)
    for t in reversed(range(steps)):
        if t == steps - 1:
            alive, following = 1.0 - dones.astype(np.float32), last_values
        else:
            alive, following = 1.0 - episode_starts[t + 1], values[t + 1]
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        out[t] = running
    return out


class CostRolloutBuffer(RolloutBuffer):
    """SB3 ``RolloutBuffer`` plus costs, cost values and CVaR-shaped cost advantages.

    Per step, call :meth:`record_cost` (and :meth:`bootstrap_cost` for a truncated episode)
    *before* ``add``, which advances the write position; once full, :meth:`record_cost_values`
    (one batched forward pass: the policy does not change during a rollout).
    """

    costs: np.ndarray
    cost_values: np.ndarray
    cost_bootstrap: np.ndarray
    cost_advantages: np.ndarray
    cost_returns: np.ndarray

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs)
        self.costs = np.zeros(shape, dtype=np.float32)
        self.cost_values = np.zeros(shape, dtype=np.float32)
        self.cost_bootstrap = np.zeros(shape, dtype=np.float32)
        self.cost_advantages = np.zeros(shape, dtype=np.float32)
        self.cost_returns = np.zeros(shape, dtype=np.float32)

    def record_cost(self, cost: np.ndarray) -> None:
        """:param cost: (envs,) this step's costs."""
        self.costs[self.pos] = cost

    def record_cost_values(self, values: th.Tensor) -> None:
        """:param values: (steps x envs, 1) cost values of the stored observations, in the
        order of :attr:`observations` flattened (step-major)."""
        self.cost_values = values.cpu().numpy().reshape(self.buffer_size, self.n_envs)

    def bootstrap_cost(self, env_index: int, discounted_value: float) -> None:
        """A truncated (not terminated) episode: add ``gamma * V_c(terminal obs)`` to the step's
        shaped cost, as SB3 does for the reward (SB3 GH#633)."""
        self.cost_bootstrap[self.pos, env_index] = discounted_value

    def compute_cost_returns_and_advantage(self, last_cost_values: th.Tensor, dones: np.ndarray,
                                           *, var: float, alpha: float) -> None:
        """GAE of the shaped cost ``(c - var)+ / (1 - alpha)`` with the buffer's gamma, lambda.

        :param last_cost_values: cost values of the observation after the last step.
        :param dones: whether the last step ended its episode, per env.
        :param var: the rollout's VaR estimate, held fixed.
        :param alpha: the CVaR level in (0, 1).
        """
        shaped = np.maximum(self.costs - var, 0.0) / (1.0 - alpha) + self.cost_bootstrap
        last = last_cost_values.clone().cpu().numpy().flatten()
        self.cost_advantages = gae(shaped.astype(np.float32), self.cost_values,
                                   self.episode_starts, last, dones, self.gamma, self.gae_lambda)
        self.cost_returns = self.cost_advantages + self.cost_values

    def minibatches(self, batch_size: int) -> Iterator[CostRolloutSamples]:
        """One pass over the rollout in random minibatches (SB3 ``get`` plus the cost arrays).

        Draws one permutation from numpy's global generator, as ``RolloutBuffer.get`` does, so
        a seeded run sees the same minibatches as SB3 PPO.

        :param batch_size: samples per minibatch.
        :raises OperationalError: if the rollout is not complete.
        """
        if not self.full:
            raise OperationalError("the rollout buffer is not full; collect a rollout first")
        total = self.buffer_size * self.n_envs
        indices = np.random.permutation(total)  # noqa: NPY002 - SB3's generator, seeded by SB3
        if not self.generator_ready:
            for name in _BASE_ARRAYS + _COST_ARRAYS:
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        for start in range(0, total, batch_size):
            batch = indices[start:start + batch_size]
            yield CostRolloutSamples(
                base=self._get_samples(batch),
                cost_advantages=self.to_torch(self.cost_advantages[batch].flatten()),
                cost_returns=self.to_torch(self.cost_returns[batch].flatten()))
