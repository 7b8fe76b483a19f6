"""The automatic canary rollback rules (issue 7, item 6), on the canary book's counters."""

from __future__ import annotations

import dataclasses

import pytest

from executor.canary import LATENCY_BREACHES, MIN_BARS_FOR_ERROR_RATE, CanaryWatch
from executor.settings import RollbackSettings

CAPITAL = 250_000.0
RULES = RollbackSettings(max_drawdown=0.03, min_trades=20, underperformance=0.01,
                         max_error_rate=0.05, max_latency_ms=50.0)


def watch(**rules: float) -> CanaryWatch:
    return CanaryWatch(rules=dataclasses.replace(RULES, **rules))


def feed(w: CanaryWatch, equities: list[float], *, latency_ms: float = 1.0,
         trades: int = 0) -> None:
    for eq in equities:
        w.observe(equity=eq, decided=True, latency_ms=latency_ms, trades=trades)


def test_a_healthy_canary_is_kept():
    w = watch()
    feed(w, [CAPITAL, CAPITAL * 1.01, CAPITAL * 1.005], trades=25)
    assert w.verdict(equity=CAPITAL * 1.005, capital=CAPITAL, production_return=0.005) is None


def test_drawdown_from_the_canary_books_peak_beyond_the_limit_rolls_back():
    w = watch()
    feed(w, [CAPITAL, CAPITAL * 1.10])  # the peak is the book's high, not its capital
    low = CAPITAL * 1.10 * (1 - 0.031)
    w.observe(equity=low, decided=True, latency_ms=1.0, trades=0)
    why = w.verdict(equity=low, capital=CAPITAL, production_return=0.0)
    assert why is not None
    assert "drawdown 3.10%" in why
    assert "rollback.max_drawdown 3.00%" in why


def test_drawdown_at_exactly_the_limit_is_kept():
    w = watch(max_drawdown=0.25)  # 1 - 0.75 is exact in binary: the comparison is the rule's
    feed(w, [CAPITAL, CAPITAL * 0.75])
    assert w.verdict(equity=CAPITAL * 0.75, capital=CAPITAL, production_return=0.0) is None


def test_error_rate_is_judged_only_after_enough_bars():
    w = watch()
    feed(w, [CAPITAL] * (MIN_BARS_FOR_ERROR_RATE - 1))
    w.errors = MIN_BARS_FOR_ERROR_RATE - 1  # every decision failed, but too few bars to judge
    assert w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.0) is None
    feed(w, [CAPITAL])
    why = w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.0)
    assert why is not None
    assert "decision errors 99/100 bars" in why


def test_error_rate_at_the_limit_is_kept_and_above_it_rolls_back():
    w = watch()
    feed(w, [CAPITAL] * 100)
    w.errors = 5  # 5 % = max_error_rate
    assert w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.0) is None
    w.errors = 6
    assert "rollback.max_error_rate" in (w.verdict(equity=CAPITAL, capital=CAPITAL,
                                                   production_return=0.0) or "")


def test_a_failed_decision_reported_by_observe_counts_as_an_error():
    w = watch()
    w.observe(equity=CAPITAL, decided=False, latency_ms=1.0, trades=0)
    w.observe(equity=CAPITAL, decided=True, latency_ms=1.0, trades=0)
    assert (w.bars, w.errors) == (2, 1)


def test_slow_decisions_roll_back_only_when_consecutive():
    w = watch()
    for _ in range(LATENCY_BREACHES - 1):
        feed(w, [CAPITAL], latency_ms=80.0)
    feed(w, [CAPITAL], latency_ms=5.0)  # one fast decision restarts the count
    for _ in range(LATENCY_BREACHES - 1):
        feed(w, [CAPITAL], latency_ms=80.0)
    assert w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.0) is None
    feed(w, [CAPITAL], latency_ms=80.0)
    why = w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.0)
    assert why is not None
    assert f"slower than 50 ms for {LATENCY_BREACHES} bars" in why


def test_underperforming_production_after_enough_trades_rolls_back():
    w = watch()
    feed(w, [CAPITAL], trades=20)
    # canary +0 %, production +1.5 %: trails by 1.5 % > 1 %
    why = w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.015)
    assert why is not None
    assert "trails production's by 1.50% over 20 trades" in why


def test_underperformance_is_not_judged_before_min_trades():
    w = watch()
    feed(w, [CAPITAL], trades=19)
    assert w.verdict(equity=CAPITAL, capital=CAPITAL, production_return=0.5) is None


def test_trailing_by_less_than_the_margin_is_kept():
    w = watch()
    feed(w, [CAPITAL * 1.005], trades=40)
    assert w.verdict(equity=CAPITAL * 1.005, capital=CAPITAL, production_return=0.0149) is None


@pytest.mark.parametrize("capital", [0.0, -1.0])
def test_a_book_without_capital_is_never_judged_on_returns(capital):
    w = watch()
    feed(w, [1.0], trades=100)
    assert w.verdict(equity=1.0, capital=capital, production_return=1.0) is None
