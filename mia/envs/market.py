"""The env's input record, its checks, and the per-bar accounting shared with the backtest.

**Timing and accounting** (one definition for :class:`~mia.envs.trading_env.TradingEnv`, the
vectorised env and :func:`mia.backtest.simulate.simulate`). The agent observes bar ``t`` (its
features are computed from bars ``<= t``) and chooses a target position ``q_new``; the order fills
at the **open of bar t + 1**, never at bar ``t``. The step's net PnL in USD is::

    pnl = q_old * gap[t] + q_new * intra[t + 1] - |q_new - q_old| * unit_cost[t + 1]

    gap[t]        = (open[t + 1] - close[t]) * multiplier    the old position, close t -> open t+1
    intra[t + 1]  = (close[t + 1] - open[t + 1]) * multiplier  the new position, open -> close
    unit_cost[t + 1]  USD per contract traded at the open of t + 1 (mia.envs.costs)

Pure numpy (the backtest imports it without gymnasium).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from mia.envs.costs import CostModel
from mia.errors import OperationalError
from mia.features.normalize import first_non_finite
from mia.types import ContractSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, kw_only=True)
class Market:
    """What an env trades on: normalised features and the prices it fills at.

    :param features: (T, F) float32 features, already normalised (the env fits nothing).
    :param names: the F feature names (the FeatureSpec order): checked against ``features``.
    :param open: (T,) bar opens, points (fills happen here).
    :param close: (T,) bar closes, points (positions are marked here).
    :param spread: (T,) full bid-ask spread per bar in points, or ``None`` (cost model default).
    :param spec: the contract (multiplier, tick size).
    :param bound: the normaliser's clip: every feature the env serves lies in
        ``[-bound, bound]`` (the observation space's limits).
    """

    features: np.ndarray
    names: tuple[str, ...]
    open: np.ndarray
    close: np.ndarray
    spread: np.ndarray | None
    spec: ContractSpec
    bound: float

    def __post_init__(self) -> None:
        t = len(self.close)
        problems = []
        if not isinstance(self.features, np.ndarray) or self.features.dtype != np.float32 \
                or self.features.ndim != 2:
            problems.append("features must be a (T, F) float32 array (Normalizer.transform "
                            "output)")
        elif self.features.shape[1] != len(self.names):
            problems.append(f"features have {self.features.shape[1]} columns but the spec names "
                            f"{len(self.names)} features; normalise the spec's own matrix")
        elif self.features.shape[0] != t:
            problems.append(f"features have {self.features.shape[0]} rows, close has {t}")
        for label, arr in (("open", self.open), ("close", self.close), ("spread", self.spread)):
            if arr is not None and np.shape(arr) != (t,):
                problems.append(f"{label} has shape {np.shape(arr)}, expected ({t},)")
        if not (np.isfinite(self.bound) and self.bound > 0):
            problems.append(f"bound={self.bound!r} must be finite and > 0")
        if problems:
            raise OperationalError("market: " + "; ".join(problems))

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, features: np.ndarray, names: Sequence[str],
                  spec: ContractSpec, bound: float) -> Market:
        """Take open, close and (when present) ``bid_ask_spread`` from a bar frame.

        :param bars: bars of one symbol, row-aligned with ``features``.
        :param features: (T, F) normalised float32 features.
        :param names: feature names.
        :param spec: the contract.
        :param bound: the normaliser's clip.
        :return: the market record.
        """
        spread = bars["bid_ask_spread"] if "bid_ask_spread" in bars.columns else None
        return cls(features=features, names=tuple(names),
                   open=bars["open"].to_numpy(np.float64), close=bars["close"].to_numpy(np.float64),
                   spread=None if spread is None else spread.to_numpy(np.float64),
                   spec=spec, bound=float(bound))

    @property
    def n_rows(self) -> int:
        """Number of bars."""
        return len(self.close)


class BarArrays(NamedTuple):
    """Per-bar USD amounts per contract (formula in the module docstring); index = bar.

    :param gap: ``(open[t+1] - close[t]) * multiplier``; 0 at the last bar.
    :param intra: ``(close[t] - open[t]) * multiplier``.
    :param unit_cost: USD cost of trading one contract at the open of bar ``t``.
    """

    gap: np.ndarray
    intra: np.ndarray
    unit_cost: np.ndarray


def bar_arrays(open_: np.ndarray, close: np.ndarray, costs: CostModel,
               spread: np.ndarray | None = None) -> BarArrays:
    """Precompute the accounting arrays of a price series.

    :param open_: (T,) opens, points.
    :param close: (T,) closes, points.
    :param costs: the cost model.
    :param spread: (T,) bar spreads in points, or ``None``.
    :return: the arrays, float64.
    """
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    m = costs.multiplier
    gap = np.zeros_like(c)
    gap[:-1] = (o[1:] - c[:-1]) * m
    return BarArrays(gap=gap, intra=(c - o) * m, unit_cost=costs.unit_costs(len(c), spread))


def check_segments(market: Market, segments: Sequence[slice]) -> tuple[slice, ...]:
    """Check the row segments an env may trade in, and the data inside them.

    :param market: the market.
    :param segments: contiguous row ranges: a fold's ``train_segments()``, or
        ``(fold.validation,)``.
    :return: the segments as plain ``slice(start, stop)`` of ints, in the given order.
    :raises OperationalError: no segment (an empty fold); a segment with a step, outside the
        data, shorter than 2 bars (no step possible) or overlapping another; or, inside a
        segment, a non-finite feature, a feature beyond ``bound`` (not normalised), or a
        non-positive price. Messages name the segment, row and feature.
    """
    if len(segments) == 0:
        raise OperationalError("env: no row segments (an empty fold); pass the fold's "
                               "train_segments() or its validation slice")
    out: list[slice] = []
    for k, seg in enumerate(segments):
        start, stop, step = seg.start, seg.stop, seg.step
        if step not in (None, 1) or start is None or stop is None:
            raise OperationalError(f"env: segment {k} {seg} must be slice(start, stop) of rows")
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= market.n_rows:
            raise OperationalError(f"env: segment {k} rows {start}..{stop} lie outside the "
                                   f"{market.n_rows} rows of the market")
        if stop - start < 2:
            raise OperationalError(f"env: segment {k} (rows {start}..{stop}) has {stop - start} "
                                   "bar(s); a step needs 2 (decide at t, fill at t+1's open): "
                                   "drop it or widen the fold")
        out.append(slice(start, stop))
    spans = sorted((s.start, s.stop) for s in out)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise OperationalError(f"env: segments {a0}..{a1} and {b0}..{b1} overlap")
    rows = np.concatenate([np.arange(s.start, s.stop) for s in out])
    where = first_non_finite(market.features, market.names, rows)
    if where is not None:
        raise OperationalError(f"env: {where}; features must be finite after warm-up: start "
                               "the segments after the spec's warm-up or fix the feature")
    sub = market.features[rows]
    over = np.abs(sub) > np.float32(market.bound)  # the observation space's float32 limit
    if over.any():
        r, c = np.unravel_index(int(np.argmax(over)), over.shape)
        raise OperationalError(f"env: feature {market.names[int(c)]!r} is {float(sub[r, c])} at "
                               f"row {int(rows[r])}, beyond the normaliser's bound {market.bound}: "
                               "pass Normalizer.transform output, not raw features")
    for label, arr in (("open", market.open), ("close", market.close)):
        px = np.asarray(arr, dtype=np.float64)[rows]
        bad = ~(np.isfinite(px) & (px > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise OperationalError(f"env: {label} is {float(px[i])} at row {int(rows[i])}; "
                                   "prices must be finite and > 0")
    return tuple(out)


class Windows:
    """Episode windows inside row segments: ``(first, last)`` rows, ``last - first`` steps.

    Training draws a segment with probability proportional to its bars (a long segment is not
    under-sampled beside a short one), then a uniform start, and runs
    ``min(episode_bars, bars - 1)`` steps. Evaluation runs the segments whole, in order, one per
    episode.

    :param segments: checked segments (:func:`check_segments`).
    :param episode_bars: steps per training episode.
    """

    def __init__(self, segments: Sequence[slice], episode_bars: int) -> None:
        if episode_bars < 1:
            raise OperationalError(f"env: episode_bars={episode_bars} must be >= 1")
        self.segments = tuple(segments)
        self.episode_bars = int(episode_bars)
        lengths = np.array([s.stop - s.start for s in self.segments], dtype=np.float64)
        self._p = lengths / lengths.sum()
        self._next = 0

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """:param rng: the env's generator. :return: a training window ``(first, last)``."""
        seg = self.segments[int(rng.choice(len(self.segments), p=self._p))]
        steps = min(self.episode_bars, seg.stop - seg.start - 1)
        first = int(seg.start) + int(rng.integers(seg.stop - seg.start - steps))
        return first, first + steps

    def next_whole(self) -> tuple[int, int]:
        """:return: the next segment whole, cycling in order (evaluation)."""
        seg = self.segments[self._next]
        self._next = (self._next + 1) % len(self.segments)
        return int(seg.start), int(seg.stop) - 1
