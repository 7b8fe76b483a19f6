"""Position simulator: a target-position series through the env's exact accounting.

Given targets decided at each bar ``t`` and filled at the open of ``t + 1``, the simulator books
the same PnL as :class:`mia.envs.trading_env.TradingEnv` (formula in :mod:`mia.envs.market`;
a test holds the two equal bar by bar), vectorised with numpy. Pure numpy: no gymnasium.

Per-bar arrays are indexed by the bar whose close ends the interval: ``pnl[i]`` is earned over
``(close[i-1], close[i]]`` by ``positions[i-1]`` from ``close[i-1]`` to ``open[i]`` and by
``positions[i]`` from ``open[i]`` to ``close[i]``, net of the cost of trading ``traded[i]``
contracts at ``open[i]``. ``positions[0] = 0`` and ``pnl[0] = 0`` (the window starts flat, like an
env episode), and ``targets[-1]`` would fill after the window, so it is not used.

**Trades.** A trade is a run of bars with a non-zero position of one sign: it opens at the fill
that leaves flat (or flips), and closes at the fill that returns to flat or flips the sign; a
flip closes one trade and opens another at the same open. Scaling in or out within the run
stays in the trade. A trade's PnL is everything its position earned, net of its costs: the
entry fill, fills inside the run, and the closing fill (of a flip, the part that closes). So
the trades' PnL sums to the total PnL. A trade still open at the end of the window is marked at
the last close (``closed=False``, no exit cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mia.envs.costs import CostModel
from mia.envs.market import bar_arrays
from mia.errors import OperationalError


class Trade(NamedTuple):
    """One round trip (or an open position at the end of the window).

    :param entry_row: bar at whose open the trade was entered (absolute row).
    :param exit_row: bar at whose open it was closed; the last bar if still open.
    :param side: ``+1`` long, ``-1`` short.
    :param contracts: largest absolute position during the trade.
    :param entry_price: reference (open) price of the entry fill, points.
    :param exit_price: reference price of the exit fill, or the last close if open, points.
    :param pnl: net PnL in USD, costs included.
    :param costs: the trade's transaction costs in USD (included in ``pnl``).
    :param closed: ``False`` if the position was still open at the end of the window.
    """

    entry_row: int
    exit_row: int
    side: int
    contracts: int
    entry_price: float
    exit_price: float
    pnl: float
    costs: float
    closed: bool


@dataclass(frozen=True, kw_only=True)
class SimResult:
    """Per-bar accounting of a simulated window (indexing in the module docstring).

    :param pnl: (n,) net PnL in USD per bar.
    :param equity: (n,) ``initial_equity + cumsum(pnl)``, USD.
    :param positions: (n,) int64 contracts held over each bar (from its open to its close).
    :param traded: (n,) int64 contracts traded at each bar's open.
    :param costs: (n,) USD transaction costs paid at each bar's open.
    :param trades: the trades, in entry order.
    :param initial_equity: USD before the first bar.
    :param first_row: absolute row number of the window's first bar.
    """

    pnl: np.ndarray
    equity: np.ndarray
    positions: np.ndarray
    traded: np.ndarray
    costs: np.ndarray
    trades: tuple[Trade, ...]
    initial_equity: float
    first_row: int

    @property
    def total_pnl(self) -> float:
        """Net PnL of the window, USD."""
        return float(self.pnl.sum())


def _check_targets(targets: np.ndarray, n: int, max_contracts: int) -> np.ndarray:
    q = np.asarray(targets, dtype=np.float64)
    if q.shape != (n,):
        raise OperationalError(f"simulate: targets have shape {q.shape}, expected ({n},): one "
                               "decision per bar of the window")
    bad = ~np.isfinite(q) | (q != np.round(q)) | (np.abs(q) > max_contracts)
    if bad.any():
        i = int(np.argmax(bad))
        raise OperationalError(f"simulate: target {float(q[i])} at bar {i} is not a whole "
                               f"number of contracts within the limit +/-{max_contracts}")
    return q


def simulate(targets: np.ndarray, open_: np.ndarray, close: np.ndarray, costs: CostModel, *,
             max_contracts: int, initial_equity: float, spread: np.ndarray | None = None,
             first_row: int = 0) -> SimResult:
    """Book a target-position series over a window of bars.

    :param targets: (n,) signed contracts wanted after each bar ``t``'s decision, filled at
        ``open[t + 1]``; whole numbers within ``+/-max_contracts``.
    :param open_: (n,) bar opens of the window, points.
    :param close: (n,) bar closes, points.
    :param costs: the cost model (``CostModel.from_config(spec, cfg.env)``).
    :param max_contracts: the position limit the targets must respect.
    :param initial_equity: USD before the first bar.
    :param spread: (n,) full bid-ask spread per bar in points, or ``None`` (the default).
    :param first_row: absolute row number of ``open_[0]``; trades report absolute rows.
    :return: the per-bar accounting and the trades.
    :raises OperationalError: fewer than 2 bars, or targets of the wrong shape, fractional or
        beyond the limit.
    """
    n = len(close)
    if n < 2 or len(open_) != n:
        raise OperationalError(f"simulate: need >= 2 bars with one open per close, got "
                               f"{len(open_)} opens and {n} closes")
    q = _check_targets(targets, n, max_contracts)
    arr = bar_arrays(open_, close, costs, spread)
    pos = np.zeros(n, dtype=np.float64)
    pos[1:] = q[:-1]
    prev = np.zeros(n, dtype=np.float64)
    prev[1:] = pos[:-1]
    gap_pnl = np.zeros(n, dtype=np.float64)
    gap_pnl[1:] = prev[1:] * arr.gap[:-1]
    intra_pnl = pos * arr.intra
    cost = np.abs(pos - prev) * arr.unit_cost
    # same operations in the same order as TradingEnv.step: (old*gap + new*intra) - fees
    pnl = gap_pnl + intra_pnl - cost
    trades = _trades(pos, gap_pnl, intra_pnl, arr.unit_cost, cost, np.asarray(open_, np.float64),
                     np.asarray(close, np.float64), first_row)
    # equity accumulates bar by bar from initial_equity, as the env's info["equity"] does
    start = np.array([float(initial_equity) + pnl[0]])
    return SimResult(pnl=pnl, equity=np.cumsum(np.concatenate((start, pnl[1:]))),
                     positions=pos.astype(np.int64), traded=np.abs(pos - prev).astype(np.int64),
                     costs=cost, trades=trades, initial_equity=float(initial_equity),
                     first_row=int(first_row))


def _trades(pos: np.ndarray, gap_pnl: np.ndarray, intra_pnl: np.ndarray, unit_cost: np.ndarray,
            cost: np.ndarray, open_: np.ndarray, close: np.ndarray,
            first_row: int) -> tuple[Trade, ...]:
    n = len(pos)
    side = np.sign(pos)
    # a run starts where the sign changes to non-zero; it ends where the sign changes again
    changes = np.flatnonzero(np.diff(side, prepend=0.0) != 0.0)
    out: list[Trade] = []
    for k, e in enumerate(changes.tolist()):
        if side[e] == 0.0:
            continue
        x = changes[k + 1] if k + 1 < len(changes) else n  # first bar after the run
        held = pos[e:x]
        entry_cost = abs(held[0]) * unit_cost[e]
        inner_cost = float(cost[e + 1 : x].sum())
        exit_cost = abs(held[-1]) * unit_cost[x] if x < n else 0.0
        earned = float(intra_pnl[e:x].sum() + gap_pnl[e + 1 : min(x + 1, n)].sum())
        fees = entry_cost + inner_cost + exit_cost
        out.append(Trade(
            entry_row=first_row + e, exit_row=first_row + (x if x < n else n - 1),
            side=int(side[e]), contracts=int(np.abs(held).max()),
            entry_price=float(open_[e]), exit_price=float(open_[x] if x < n else close[-1]),
            pnl=earned - fees, costs=fees, closed=x < n,
        ))
    return tuple(out)
