"""Automatic canary rollback (issue 7, item 6): when the canary book must stop at once.

Checked after every bar on the canary's own book (pure; the loop acts on the verdict: share 0
locally, the canary's position closed, the ``canary`` alias cleared in the registry with the
reason, a critical alert):

- **drawdown**: the canary book's fall from its peak equity > ``rollback.max_drawdown``;
- **error rate**: decisions that failed (a non-finite feature, the graph raising) over the bars
  it ran > ``rollback.max_error_rate`` (after 100 bars);
- **latency**: the canary's decision took > ``rollback.max_latency_ms`` three bars in a row;
- **under-performance**: after ``rollback.min_trades`` round trips, its return on its capital
  trails production's return on its capital by more than ``rollback.underperformance``.

A change of the canary's share moves capital into or out of its book: :meth:`CanaryWatch.transfer`
moves the peak with it, so a share stepped down is not a drawdown (nor a share stepped up a gain
that a later mark would fall from).
"""

from __future__ import annotations

from dataclasses import dataclass

from executor.settings import RollbackSettings

MIN_BARS_FOR_ERROR_RATE = 100
LATENCY_BREACHES = 3


@dataclass(kw_only=True)
class CanaryWatch:
    """Counters of the canary book since it arrived (mutable; the loop thread's).

    :param rules: the rollback thresholds.
    """

    rules: RollbackSettings
    bars: int = 0
    errors: int = 0
    slow: int = 0
    trades: int = 0
    peak: float = 0.0

    def observe(self, *, equity: float, decided: bool, latency_ms: float, trades: int) -> None:
        """Record one bar of the canary book.

        :param equity: the book's equity at the close. :param decided: its decision worked.
        :param latency_ms: how long its decision took. :param trades: round trips so far.
        """
        self.bars += 1
        self.errors += 0 if decided else 1
        self.slow = self.slow + 1 if latency_ms > self.rules.max_latency_ms else 0
        self.trades = trades
        self.peak = max(self.peak, equity)

    def transfer(self, amount: float) -> None:
        """Capital moved into (``+``) or out of (``-``) the canary book: not a gain or a loss.

        :param amount: USD moved (the change of the book's capital).
        """
        if self.peak > 0.0:
            self.peak = max(self.peak + amount, 0.0)

    def verdict(self, *, equity: float, capital: float, production_return: float) -> str | None:
        """:param equity: the canary book's equity now. :param capital: its capital.
        :param production_return: production's return on its capital over the same time.
        :return: why the canary must be rolled back, or None."""
        r = self.rules
        drawdown = 0.0 if self.peak <= 0 else 1.0 - equity / self.peak
        if drawdown > r.max_drawdown:
            return f"canary drawdown {drawdown:.2%} > rollback.max_drawdown {r.max_drawdown:.2%}"
        if self.bars >= MIN_BARS_FOR_ERROR_RATE and self.errors / self.bars > r.max_error_rate:
            return (f"canary decision errors {self.errors}/{self.bars} bars > "
                    f"rollback.max_error_rate {r.max_error_rate:.1%}")
        if self.slow >= LATENCY_BREACHES:
            return (f"canary decisions slower than {r.max_latency_ms:g} ms for {self.slow} bars "
                    "in a row")
        if self.trades >= r.min_trades and capital > 0:
            gap = (equity / capital - 1.0) - production_return
            if gap < -r.underperformance:
                return (f"canary return on capital trails production's by {-gap:.2%} over "
                        f"{self.trades} trades (> rollback.underperformance "
                        f"{r.underperformance:.2%})")
        return None
