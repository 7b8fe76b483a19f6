"""Breaker counting: consecutive bad observations trip, clean ones cool down, resets."""

from __future__ import annotations

from mia.risk import BreakerState
from mia.risk.breakers import observe, reset


def _feed(b: BreakerState, pattern: str, *, trip_after: int, cooldown: int | None):
    changes = []
    for i, c in enumerate(pattern):
        b, change = observe(b, c == "x", trip_after=trip_after, cooldown=cooldown, at_ns=i)
        changes.append(change or ".")
    return b, changes


def test_only_consecutive_faults_trip():
    b, changes = _feed(BreakerState("data_quality"), "xx.xx.xxx", trip_after=3, cooldown=None)
    assert changes == [".", ".", ".", ".", ".", ".", ".", ".", "trip"]
    assert b.tripped
    assert b.since_ns == 8
    assert b.streak == 3


def test_manual_breaker_stays_tripped_through_clean_bars_until_reset():
    b, _ = _feed(BreakerState("data_quality"), "xxx", trip_after=3, cooldown=None)
    b, changes = _feed(b, "." * 50, trip_after=3, cooldown=None)
    assert b.tripped
    assert set(changes) == {"."}
    b = reset(b)
    assert (b.tripped, b.streak, b.calm, b.since_ns) == (False, 0, 0, 2)


def test_cooldown_needs_consecutive_clean_bars_and_a_bad_one_restarts_it():
    b, changes = _feed(BreakerState("volatility"), "x...x....", trip_after=1, cooldown=4)
    assert changes == ["trip", ".", ".", ".", ".", ".", ".", ".", "reset"]
    assert not b.tripped


def test_latency_breaches_must_come_in_a_row():
    b, changes = _feed(BreakerState("latency"), "xx.xxx", trip_after=3, cooldown=2)
    assert changes == [".", ".", ".", ".", ".", "trip"]


def test_quiet_observations_return_the_same_record():
    b = BreakerState("stale_feed")
    assert observe(b, False, trip_after=1, cooldown=3, at_ns=5) == (b, None)
    assert observe(b, False, trip_after=1, cooldown=3, at_ns=5)[0] is b
