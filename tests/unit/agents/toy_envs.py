"""Small gymnasium envs with the trading env's contract, for agent tests.

Both follow ``mia.envs``'s interface: a Box(-1, 1, (1,)) target position (or Discrete(3)
{short, flat, long}), a float32 Box observation, reward = PnL, and ``info["cost"]`` =
``max(0, -pnl)`` as a percent of a unit initial equity.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _position(action: Any, discrete: bool) -> float:
    if discrete:
        return float(int(action) - 1)  # 0, 1, 2 -> short, flat, long
    return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))


class SignalEnv(gym.Env[np.ndarray, Any]):
    """A planted signal: ``obs[0]`` is the sign of the next return, the rest is noise.

    Holding ``sign(obs[0])`` earns ``edge`` per step on average; anything else earns less.

    :param discrete: Discrete(3) actions instead of a Box position.
    :param obs_dim: observation width.
    :param episode_len: steps before truncation.
    :param edge: mean return in the signal's direction.
    :param noise: standard deviation of the return around it.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, *, discrete: bool = False, obs_dim: int = 4, episode_len: int = 64,
                 edge: float = 0.5, noise: float = 0.5) -> None:
        self.discrete, self.episode_len, self.edge, self.noise = discrete, episode_len, edge, noise
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space: spaces.Space[Any] = (
            spaces.Discrete(3) if discrete else spaces.Box(-1.0, 1.0, (1,), np.float32))
        self._t, self._obs = 0, np.zeros(obs_dim, np.float32)

    def _draw(self) -> np.ndarray:
        obs = self.np_random.normal(size=self.observation_space.shape).astype(np.float32)
        obs[0] = 1.0 if self.np_random.random() < 0.5 else -1.0
        self._obs = obs
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ret = self._obs[0] * self.edge + self.np_random.normal(0.0, self.noise)
        pnl = _position(action, self.discrete) * float(ret)
        self._t += 1
        return self._draw(), pnl, False, self._t >= self.episode_len, {"cost": max(0.0, -pnl)}


class RiskyBanditEnv(gym.Env[np.ndarray, Any]):
    """A constant observation; the position ``a`` earns ``a * r``, ``r ~ N(mu, sigma)``.

    A larger position pays more (``mu > 0``) and loses much more in the tail: the per-step cost
    ``max(0, -a r)`` of a fixed long position has CVaR ``a * CVaR(max(0, -r))`` (0.317 a at
    alpha 0.95 with the defaults), so a CVaR limit below that caps the position.

    :param mu: mean return per step.
    :param sigma: return standard deviation.
    :param episode_len: steps before truncation.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, *, mu: float = 0.1, sigma: float = 0.2, episode_len: int = 32) -> None:
        self.mu, self.sigma, self.episode_len = mu, sigma, episode_len
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return np.ones(2, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        pnl = _position(action, False) * float(self.np_random.normal(self.mu, self.sigma))
        self._t += 1
        return (np.ones(2, np.float32), pnl, False, self._t >= self.episode_len,
                {"cost": max(0.0, -pnl)})


class NoCostEnv(SignalEnv):
    """:class:`SignalEnv` whose step info lacks ``cost`` (a broken env for error tests)."""

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, {}


def deterministic_costs(model: Any, env: gym.Env[np.ndarray, Any], steps: int,
                        seed: int) -> np.ndarray:
    """:return: ``info["cost"]`` of ``steps`` steps of ``model``'s deterministic policy."""
    obs, _ = env.reset(seed=seed)
    costs = np.empty(steps)
    for i in range(steps):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        costs[i] = info["cost"]
        if terminated or truncated:
            obs, _ = env.reset()
    return costs
