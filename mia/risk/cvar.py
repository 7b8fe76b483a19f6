"""The CVaR of a book's recent trades: what the leverage cut ``cut_cvar_loss`` reads.

reference.md cuts leverage to 1x when "cvar loss > 0.1", and counts "CVaR loss > 0.1 over 100
trades" as a retraining trigger and an alert. Here a trade is a run of fills on one side
(:mod:`mia.risk.stops`); its return is the PnL its closing fills realised (side x (fill - average
entry) x contracts x multiplier, at the reference prices the engine books: gross of costs, which
the engine never sees) over the equity marked at the close before it closed. A flip closes one
trade and opens the next. The CVaR at ``alpha`` of the last ``window`` returns is the mean loss
of the worst ``ceil((1 - alpha) x n)`` of them (0.95 over 100 trades: the five worst), a positive
equity fraction, 0 when even those made money, and NaN (not measured: no cut, the gate says
``skip.cvar_loss``) before ``min_trades`` trades have closed.

:class:`TradeRecord` lives in :class:`mia.risk.engine.RiskEngine`, so the backtest and the
executor measure it identically from the fills they book, and it travels in the risk snapshot.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from mia.risk.stops import TradeRisk


class TradeRecord:
    """The returns of the last closed trades and the PnL the open one has realised so far.

    :param window: trades kept (``risk.cvar_trades``).
    :param alpha: the CVaR level (``risk.cvar_alpha``), in (0, 1).
    :param min_trades: trades needed before the CVaR is measured (``risk.cvar_min_trades``).
    :param returns: closed trades' returns, oldest first (a restored snapshot).
    :param open_pnl: USD the open trade's reducing fills realised (a restored snapshot).
    """

    __slots__ = ("_cvar", "alpha", "min_trades", "open_pnl", "returns")

    def __init__(self, window: int, alpha: float, min_trades: int, *,
                 returns: Iterable[float] = (), open_pnl: float = 0.0) -> None:
        self.alpha = alpha
        self.min_trades = min_trades
        self.returns: deque[float] = deque((float(r) for r in returns), maxlen=window)
        self.open_pnl = float(open_pnl)
        self._cvar = self._measure()

    @property
    def cvar_loss(self) -> float:
        """:return: the CVaR loss of the recorded trades (module doc), NaN before
        ``min_trades``; computed when a trade closes, read every decision."""
        return self._cvar

    def on_fill(self, before: TradeRisk | None, after: TradeRisk | None, quantity: int,
                price: float, multiplier: float, equity: float) -> None:
        """Book the part of a fill that closes contracts of the open trade.

        :param before: the trade before the fill (``None``: flat, the fill only opens).
        :param after: the trade after it (``None``: flat; another side: a flip).
        :param quantity: signed contracts filled. :param price: its reference price, points.
        :param multiplier: USD per point. :param equity: USD marked at the last close.
        """
        if before is None or quantity == 0 or (quantity > 0) == (before.side > 0):
            return  # opens or adds: nothing realised
        closed = min(abs(quantity), before.qty)
        self.open_pnl += before.side * (price - before.entry_price) * closed * multiplier
        if after is not None and after.side == before.side:
            return  # reduced, still open
        if equity > 0.0:  # an account at or below zero has no fraction to lose
            self.returns.append(self.open_pnl / equity)
            self._cvar = self._measure()
        self.open_pnl = 0.0

    def _measure(self) -> float:
        n = len(self.returns)
        if n < self.min_trades:
            return math.nan
        tail = max(1, math.ceil((1.0 - self.alpha) * n - 1e-9))
        worst = sorted(self.returns)[:tail]
        return max(0.0, -sum(worst) / tail)
