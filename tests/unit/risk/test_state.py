"""Trading states from holds, events of every change, and the kill-switch latch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mia.risk import Mode, RiskInputError, TradingState
from mia.risk.state import engage, kill, release

T0 = int(datetime(2024, 1, 2, 15, 0, tzinfo=UTC).timestamp() * 1e9)


def test_no_hold_is_running_and_the_most_severe_hold_wins():
    s = TradingState()
    assert s.mode is Mode.RUNNING
    s, e1 = engage(s, "breaker.volatility", Mode.REDUCING, "cooldown", why="tr 30", at_ns=T0)
    assert s.mode is Mode.REDUCING
    assert e1 is not None
    assert (e1.from_mode, e1.to_mode, e1.action, e1.by) == (Mode.RUNNING, Mode.REDUCING,
                                                            "engage", "risk")
    s, e2 = engage(s, "limit.daily_loss", Mode.HALTED, "trade_date", why="-3 %", at_ns=T0 + 1)
    assert s.mode is Mode.HALTED
    assert (e2.from_mode, e2.to_mode) == (Mode.REDUCING, Mode.HALTED)
    s, e3 = release(s, "breaker.volatility", why="cooled down", at_ns=T0 + 2)
    assert s.mode is Mode.HALTED  # the daily loss still holds trading
    assert e3 is not None
    assert (e3.from_mode, e3.to_mode) == (Mode.HALTED, Mode.HALTED)
    s, e4 = release(s, "limit.daily_loss", why="trade date rolled", at_ns=T0 + 3)
    assert s.mode is Mode.RUNNING
    assert e4 is not None
    assert e4.to_mode is Mode.RUNNING


def test_engaging_a_held_cause_again_changes_nothing():
    s, _ = engage(TradingState(), "breaker.latency", Mode.REDUCING, "cooldown", why="x", at_ns=1)
    again, event = engage(s, "breaker.latency", Mode.REDUCING, "cooldown", why="y", at_ns=2)
    assert again is s
    assert event is None
    assert release(s, "breaker.loss", why="-", at_ns=3) == (s, None)


def test_kill_switch_is_a_latch_only_a_person_clears():
    s, event = kill(TradingState(), by="alice", why="broker outage", at_ns=T0)
    assert s.mode is Mode.HALTED
    assert event is not None
    assert event.to_dict() == {
        "at": "2024-01-02T15:00:00+00:00", "at_ns": T0, "cause": "kill_switch",
        "action": "engage", "from": "RUNNING", "to": "HALTED", "why": "broker outage",
        "by": "alice",
    }
    with pytest.raises(RiskInputError, match="latch"):
        release(s, "kill_switch", why="auto", at_ns=T0 + 1)  # automatic code cannot
    with pytest.raises(RiskInputError, match="name"):
        release(s, "kill_switch", why="", at_ns=T0 + 1, by="bob")  # a person needs a reason
    s, event = release(s, "kill_switch", why="broker back", at_ns=T0 + 2, by="bob")
    assert s.mode is Mode.RUNNING
    assert event is not None
    assert event.by == "bob"


def test_kill_switch_needs_who_and_why_and_pulling_it_twice_is_one_event():
    with pytest.raises(RiskInputError, match="who"):
        kill(TradingState(), by=" ", why="x", at_ns=0)
    s, _ = kill(TradingState(), by="file:/run/mia/kill", why="file present", at_ns=0)
    assert kill(s, by="signal:SIGUSR1", why="signal", at_ns=1) == (s, None)


def test_a_hold_must_restrict_something():
    with pytest.raises(RiskInputError, match="REDUCING or HALTED"):
        engage(TradingState(), "x", Mode.RUNNING, "cooldown", why="-", at_ns=0)


def test_event_time_is_the_time_passed_in():
    _, event = engage(TradingState(), "breaker.loss", Mode.REDUCING, "trade_date", why="-",
                      at_ns=T0 + 500_000)
    assert event is not None
    assert event.at == datetime(2024, 1, 2, 15, 0, 0, 500, tzinfo=UTC)
