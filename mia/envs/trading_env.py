"""A gymnasium env trading one futures contract on normalised features, with real costs.

- **Observation**: :func:`mia.features.normalize.observation` of bar ``t``'s normalised features
  and the current position (``position / max_contracts``): the vector the executor builds live.
- **Action**: ``Box(-1, 1, (1,))`` target position as a share of ``max_contracts``, rounded to
  whole contracts (half to even); or, with ``discrete=True``, ``Discrete(3)`` =
  ``{0: short, 1: flat, 2: long}`` x ``max_contracts`` (QR-DQN). The limit is
  ``cfg.max_contracts``: an action cannot exceed it.
- **Timing**: the agent observes bar ``t`` and its order fills at the open of bar ``t + 1``; the
  old position earns ``close[t] -> open[t+1]``, the new one ``open[t+1] -> close[t+1]``, and the
  position change pays :mod:`mia.envs.costs` at ``t + 1`` (formula: :mod:`mia.envs.market`).
- **Reward** = net PnL (USD, after costs) x ``cfg.reward_scale``.
- **info** (a new dict every step): ``pnl`` net USD; ``fees`` USD transaction costs of the step;
  ``position`` contracts held after the fill; ``equity`` USD (``initial_equity`` + PnL so far in
  the episode); and ``cost``, the per-step signal of the CVaR constraint (PPO-Lagrangian)::

      cost = max(0, -pnl) / initial_equity * 100        the step's loss, % of initial equity

  so ``agents.ppo_lagrangian.cvar_limit: 0.1`` with ``cvar_alpha: 0.95`` reads "the mean of the
  worst 5 % of step losses is at most 0.1 % of equity" (Rockafellar & Uryasev, 2000, CVaR;
  Chow et al., 2017, CVaR-constrained policy optimisation).
- **Episodes**: training draws a window of ``cfg.episode_bars`` steps inside a random allowed
  segment (seeded by ``reset(seed=...)``); ``evaluate=True`` runs each segment whole, in order, one
  per episode (out-of-sample scoring; ``reset(seed=...)`` restarts at the first segment). Every
  episode starts flat with ``initial_equity``; its end is a time limit (``truncated``), never a
  terminal state, and an open position is left open (marked at the last close, not liquidated).

Speed: a step is one lookup of a precomputed per-bar tuple (gap, intra, unit cost, observation
row), a handful of Python float operations and one copy of the row (gymnasium requires a fresh
array per call) with the position written in place; nothing scans the data, so steps/s barely
depend on its length (tests/benchmarks/bench_envs.py: ~870k steps/s at 2k rows, ~815k at 200k).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mia.config import EnvConfig
from mia.envs.costs import CostModel
from mia.envs.market import BarArrays, Market, Windows, bar_arrays, check_segments
from mia.errors import OperationalError
from mia.features.normalize import POSITION_INDEX, observation_matrix


class Prepared(NamedTuple):
    """What an env precomputes from its inputs (shared with :mod:`mia.envs.vec_env`).

    :param segments: the checked segments.
    :param costs: the cost model.
    :param arrays: per-bar accounting arrays.
    :param obs: (T, F + 1) float32 observation rows with the position slot zeroed.
    :param observation_space: the Box of observations.
    :param action_space: Box(-1, 1, (1,)) or Discrete(3).
    """

    segments: tuple[slice, ...]
    costs: CostModel
    arrays: BarArrays
    obs: np.ndarray
    observation_space: spaces.Box
    action_space: spaces.Space[Any]


def prepare(market: Market, segments: Sequence[slice], cfg: EnvConfig,
            discrete: bool) -> Prepared:
    """Check the inputs and precompute everything a step needs.

    :param market: features and prices.
    :param segments: allowed row segments.
    :param cfg: the env config.
    :param discrete: Discrete(3) actions instead of a Box.
    :return: the precomputed pieces.
    :raises OperationalError: as :func:`mia.envs.market.check_segments`.
    """
    segs = check_segments(market, segments)
    costs = CostModel.from_config(market.spec, cfg)
    arrays = bar_arrays(market.open, market.close, costs, market.spread)
    high = np.full(len(market.names) + 1, market.bound, dtype=np.float32)
    high[POSITION_INDEX] = 1.0
    action_space: spaces.Space[Any] = (spaces.Discrete(3) if discrete
                                       else spaces.Box(-1.0, 1.0, (1,), dtype=np.float32))
    return Prepared(segments=segs, costs=costs, arrays=arrays,
                    obs=observation_matrix(market.features),
                    observation_space=spaces.Box(-high, high, dtype=np.float32),
                    action_space=action_space)


class TradingEnv(gym.Env[np.ndarray, Any]):
    """Trade one contract over the allowed segments of a market (module docstring).

    :param market: normalised features, prices, spread, contract.
    :param segments: allowed row segments: ``fold.train_segments()`` for training,
        ``(fold.validation,)`` for out-of-sample scoring.
    :param cfg: ``params.yaml`` env section (limit, costs, reward scale, episode length, equity).
    :param discrete: use ``Discrete(3)`` actions ``{short, flat, long}``.
    :param evaluate: run each segment whole and in order instead of sampling windows.
    :raises OperationalError: no segment, a segment shorter than 2 bars, a non-finite or
        un-normalised feature, a feature count that disagrees with the names.
    """

    metadata = {"render_modes": []}  # no rendering: the journal and the metrics are the view

    def __init__(self, market: Market, segments: Sequence[slice], cfg: EnvConfig, *,
                 discrete: bool = False, evaluate: bool = False) -> None:
        super().__init__()
        prep = prepare(market, segments, cfg, discrete)
        self.market, self.cfg, self.costs = market, cfg, prep.costs
        self.segments, self.discrete, self.evaluate = prep.segments, discrete, evaluate
        self.observation_space = prep.observation_space
        self.action_space = prep.action_space
        self._windows = Windows(prep.segments, cfg.episode_bars)
        # Per decision bar t, everything step() reads in one tuple: gap[t], intra[t+1],
        # unit_cost[t+1] as Python floats (~3x cheaper to index and add than numpy scalars, and
        # the same IEEE double operations as the simulator) and a view of observation row t+1.
        # One lookup, objects allocated side by side: steps/s barely depend on the data length.
        rows = list(prep.obs)
        self._rows = rows
        a = prep.arrays
        self._bars = list(zip(a.gap[:-1].tolist(), a.intra[1:].tolist(),
                              a.unit_cost[1:].tolist(), rows[1:], strict=True))
        m = int(cfg.max_contracts)
        self._max = m
        self._inv_max = 1.0 / m
        self._levels = {0: -m, 1: 0, 2: m} if discrete else None
        self._scale = float(cfg.reward_scale)
        self._initial_equity = float(cfg.initial_equity)
        self._loss_pct = 100.0 / self._initial_equity
        self._t = self._last = -1  # no episode yet: step() refuses until reset()
        self._first = -1
        self._pos = 0
        self._equity = self._initial_equity

    @property
    def row(self) -> int:
        """The bar observed now (the decision bar of the next step)."""
        return self._t

    @property
    def window(self) -> tuple[int, int]:
        """``(first, last)`` rows of the current episode; it has ``last - first`` steps."""
        return self._first, self._last

    @property
    def position(self) -> int:
        """Contracts held now."""
        return self._pos

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode flat at ``initial_equity``.

        :param seed: seeds the window sampler (training) or restarts at the first segment
            (evaluation).
        :param options: not supported; must be empty.
        :return: the first observation and ``{"position", "equity", "row"}``.
        """
        super().reset(seed=seed)
        if options:
            raise OperationalError(f"env: reset() takes no options, got {sorted(options)}")
        if self.evaluate:
            if seed is not None:
                self._windows = Windows(self.segments, self.cfg.episode_bars)
            first, last = self._windows.next_whole()
        else:
            first, last = self._windows.sample(self.np_random)
        self._first, self._t, self._last = first, first, last
        self._pos, self._equity = 0, self._initial_equity
        obs = self._rows[first].copy()
        obs[POSITION_INDEX] = 0.0
        return obs, {"position": 0, "equity": self._equity, "row": first}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Fill the target position at the next bar's open and mark it to that bar's close.

        :param action: ``(1,)`` float array in ``[-1, 1]`` (values outside are clipped), or an
            int in ``{0, 1, 2}`` with ``discrete=True``.
        :return: observation of bar ``t + 1``, reward, ``terminated`` (always False),
            ``truncated`` (end of the window), info (module docstring).
        :raises OperationalError: no episode running, or an invalid action (NaN, wrong shape,
            unknown discrete index).
        """
        t = self._t
        if t >= self._last:
            raise OperationalError("env: no running episode (it ended, or reset() was never "
                                   "called); call reset()")
        if self._levels is None:
            try:
                a = action.item()
            except (AttributeError, ValueError):
                raise OperationalError(f"env: action must be a (1,) float array, got "
                                       f"{action!r}") from None
            if a > 1.0:
                a = 1.0
            elif a < -1.0:
                a = -1.0
            elif a != a:  # NaN: compares false above
                raise OperationalError("env: action is NaN; the policy produced no number")
            q = round(a * self._max)
        else:
            try:
                q = self._levels[action]
            except (KeyError, TypeError):
                q = self._slow_level(action)
        gap, intra, unit_cost, row = self._bars[t]  # gap[t], intra[t+1], cost[t+1], obs[t+1]
        old = self._pos
        dq = q - old
        fees = (dq if dq >= 0 else -dq) * unit_cost
        pnl = old * gap + q * intra - fees
        equity = self._equity + pnl
        self._t, self._pos, self._equity = t + 1, q, equity
        obs = row.copy()
        obs[POSITION_INDEX] = q * self._inv_max
        info = {"pnl": pnl, "cost": -pnl * self._loss_pct if pnl < 0.0 else 0.0,
                "fees": fees, "position": q, "equity": equity}
        return obs, pnl * self._scale, False, t + 1 == self._last, info

    def _slow_level(self, action: Any) -> int:
        # a 0-d or (1,) integer array (SB3's predict() on one observation), else a clear error
        levels = self._levels if self._levels is not None else {}
        arr = np.asarray(action)
        if arr.size == 1 and arr.dtype.kind in "iu" and int(arr.item()) in levels:
            return levels[int(arr.item())]
        raise OperationalError(f"env: discrete action must be 0 (short), 1 (flat) or 2 (long), "
                               f"got {action!r}")
