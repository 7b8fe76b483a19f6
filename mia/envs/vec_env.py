"""N training windows of one market stepped together with numpy: a stable-baselines3 ``VecEnv``.

Same observation, action, timing, accounting and info keys as
:class:`mia.envs.trading_env.TradingEnv` (a test holds the two equal step by step); the N
windows share one market and one config. SB3's ``DummyVecEnv`` over N ``TradingEnv`` would work
too, but it calls each env in Python, deep-copies every info dict each step and holds N copies
of the observation matrix; this class does one vectorised update for all windows over one copy.
Measured (tests/benchmarks/bench_envs.py, 150 features): ~3x DummyVecEnv's env-steps/s at 8
windows, ~10x at 32; with a single window numpy's per-call overhead makes DummyVecEnv faster.

SB3 conventions: an episode ends at its window's end as a time limit, so the step's info carries
``TimeLimit.truncated = True`` and ``terminal_observation`` (the value of the last state is
bootstrapped, not zeroed), the window restarts at once, and ``episode`` = ``{"r", "l", "t"}``
(as SB3's ``Monitor`` writes it: return, length, seconds since construction) feeds
``ep_rew_mean`` in the training logs. Seeds set by ``seed()`` (SB3 calls it with the model's
seed) apply at the next ``reset()``; window ``i`` draws from its own generator seeded
``seed + i``. Attributes and methods are those of this object, shared by all N windows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from mia.config import EnvConfig
from mia.envs.market import Market, Windows
from mia.envs.trading_env import prepare
from mia.errors import ConfigError, OperationalError
from mia.features.normalize import POSITION_INDEX


class TradingVecEnv(VecEnv):
    """``n_envs`` training windows over the allowed segments of one market.

    :param market: normalised features, prices, spread, contract.
    :param segments: allowed row segments (``fold.train_segments()``).
    :param cfg: ``params.yaml`` env section.
    :param n_envs: number of windows stepped together.
    :param discrete: ``Discrete(3)`` actions ``{short, flat, long}`` (QR-DQN).
    :param seed: seed of the windows' generators (window ``i`` gets ``seed + i``); ``None``
        draws fresh entropy until ``seed()`` is called.
    :raises ConfigError: ``n_envs < 1``.
    :raises OperationalError: as :class:`~mia.envs.trading_env.TradingEnv`.
    """

    def __init__(self, market: Market, segments: Sequence[slice], cfg: EnvConfig, n_envs: int,
                 *, discrete: bool = False, seed: int | None = None) -> None:
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ConfigError(f"vec env: n_envs={n_envs!r} must be an integer >= 1")
        prep = prepare(market, segments, cfg, discrete)
        self.render_mode: str | None = None  # read by VecEnv.__init__ through get_attr
        super().__init__(n_envs, prep.observation_space, prep.action_space)
        self.market, self.cfg, self.costs = market, cfg, prep.costs
        self.segments, self.discrete = prep.segments, discrete
        self._obs = prep.obs
        self._gap, self._intra, self._unit_cost = prep.arrays
        self._windows = Windows(prep.segments, cfg.episode_bars)
        self._rngs = [np.random.default_rng() for _ in range(n_envs)]
        m = int(cfg.max_contracts)
        self._max, self._inv_max = float(m), 1.0 / m
        self._levels = np.array([-m, 0, m], dtype=np.float64) if discrete else None
        self._scale = float(cfg.reward_scale)
        self._initial_equity = float(cfg.initial_equity)
        self._loss_pct = 100.0 / self._initial_equity
        self._t = np.full(n_envs, -1, dtype=np.int64)
        self._last = np.full(n_envs, -1, dtype=np.int64)
        self._pos = np.zeros(n_envs, dtype=np.float64)
        self._equity = np.full(n_envs, self._initial_equity)
        self._ep_return = np.zeros(n_envs, dtype=np.float64)
        self._ep_len = np.zeros(n_envs, dtype=np.int64)
        self._created = time.perf_counter()
        self._actions: np.ndarray | None = None
        self._running = False  # set by reset()
        if seed is not None:
            self.seed(seed)

    def _start(self, i: int) -> int:
        first, last = self._windows.sample(self._rngs[i])
        self._t[i], self._last[i] = first, last
        self._pos[i], self._equity[i] = 0.0, self._initial_equity
        self._ep_return[i], self._ep_len[i] = 0.0, 0
        return first

    def reset(self) -> np.ndarray:
        """Start every window flat; apply pending seeds.

        :return: (n_envs, F + 1) float32 observations.
        """
        if any(self._options):
            raise OperationalError("vec env: reset() takes no options; call set_options(None)")
        for i, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[i] = np.random.default_rng(s)
        self._reset_seeds()
        self._reset_options()
        firsts = [self._start(i) for i in range(self.num_envs)]
        obs = self._obs.take(self._t, axis=0)
        obs[:, POSITION_INDEX] = 0.0
        self._running = True
        self.reset_infos = [{"position": 0, "equity": self._initial_equity, "row": f}
                            for f in firsts]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """:param actions: (n_envs, 1) floats in [-1, 1], or (n_envs,) ints in {0, 1, 2}."""
        self._actions = actions

    def _targets(self, actions: np.ndarray | None) -> tuple[np.ndarray, list[float]]:
        # Reductions like .any() cost ~1 us each here; checks run on the Python list instead.
        n = self.num_envs
        if actions is None or not self._running:
            raise OperationalError("vec env: call reset() and step_async() before step_wait()")
        a = np.asarray(actions)
        if a.size != n:
            raise OperationalError(f"vec env: got {a.size} actions for {n} windows")
        if self._levels is not None:
            idx = a.reshape(n)
            if idx.dtype.kind not in "iu" or not set(idx.tolist()) <= {0, 1, 2}:
                raise OperationalError(f"vec env: discrete actions must be 0 (short), 1 (flat) "
                                       f"or 2 (long), got {idx.tolist()}")
            q = self._levels.take(idx)
        else:
            x = a.reshape(n).astype(np.float64)
            # np.rint rounds half to even, as Python's round() in TradingEnv; NaN propagates
            q = np.rint(np.minimum(np.maximum(x, -1.0), 1.0) * self._max)
        held = q.tolist()
        total = sum(held)
        if total != total:
            raise OperationalError("vec env: an action is NaN; the policy produced no number")
        return q, held

    def step_wait(self) -> VecEnvStepReturn:
        """Fill every window's target at its next bar's open (accounting: mia.envs.market).

        :return: observations, float32 rewards, dones, infos (keys as ``TradingEnv``).
        """
        q, held = self._targets(self._actions)
        t, old = self._t, self._pos
        t1 = t + 1
        fees = np.abs(q - old) * self._unit_cost.take(t1)
        pnl = old * self._gap.take(t) + q * self._intra.take(t1) - fees
        self._equity += pnl
        reward = pnl * self._scale
        self._ep_return += reward
        self._ep_len += 1
        self._t, self._pos = t1, q
        obs = self._obs.take(t1, axis=0)
        obs[:, POSITION_INDEX] = q * self._inv_max
        k = self._loss_pct
        infos: list[dict[str, Any]] = [
            {"pnl": p, "cost": -p * k if p < 0.0 else 0.0, "fees": f, "position": int(h),
             "equity": e}
            for p, f, h, e in zip(pnl.tolist(), fees.tolist(), held, self._equity.tolist(),
                                  strict=True)
        ]
        dones = t1 == self._last
        ended = dones.tolist()
        if True in ended:
            for i, done in enumerate(ended):
                if not done:
                    continue
                info = infos[i]
                info["terminal_observation"] = obs[i].copy()
                info["TimeLimit.truncated"] = True
                info["episode"] = {"r": float(self._ep_return[i]), "l": int(self._ep_len[i]),
                                   "t": round(time.perf_counter() - self._created, 6)}
                obs[i] = self._obs[self._start(i)]
                obs[i, POSITION_INDEX] = 0.0
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release: the windows hold no process, file or socket."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """:return: this object's attribute, once per requested window."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of this object (shared by every window)."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call one of this object's methods once per requested window.

        :return: the results, one per window.
        """
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[Any],
                       indices: VecEnvIndices = None) -> list[bool]:
        """:return: ``False`` per window: no gymnasium wrapper is involved."""
        return [False for _ in self._get_indices(indices)]
