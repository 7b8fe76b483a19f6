"""The per-bar risk loop: breakers on bar sequences, limits over trade dates, people, snapshots."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from mia.risk import Exit, Mode, RiskEngine, RiskFeatures, RiskInputError, restore, snapshot
from mia.risk.state import release
from mia.validation.inline import InlineValidator
from tests.unit.risk._rules import quiet, rules

ES = rules("ES")
T0 = int(datetime(2024, 1, 2, 15, 0, tzinfo=UTC).timestamp() * 1e9)
MIN = 60_000_000_000
D1, D2 = date(2024, 1, 2), date(2024, 1, 3)


def _engine(equity: float = 250_000.0) -> RiskEngine:
    return RiskEngine(ES, equity=equity, trade_date=D1, now_ns=T0)


def _bar(eng: RiskEngine, i: int, o: float, h: float, lo: float, c: float, atr: float = 4.0,
         **kw):
    return eng.on_bar(now_ns=T0 + i * MIN, open=o, high=h, low=lo, close=c,
                      features=quiet(atr_14=atr, atr_dynamic=atr), **kw)


def _calm(eng: RiskEngine, start: int, n: int, price: float = 4000.0):
    events = []
    for i in range(start, start + n):
        events += _bar(eng, i, price, price + 1.5, price - 1.5, price).events
    return events


def _enter_long(eng: RiskEngine, i: int, price: float = 4000.0) -> int:
    d = eng.decide(1.0, position=0, equity=250_000.0, price=price, features=quiet())
    eng.on_fill(d.order, price, now_ns=T0 + i * MIN)
    return d.order


def test_flash_crash_trips_the_volatility_breaker_stops_the_long_and_cools_down():
    eng = _engine()
    _calm(eng, 0, 20)
    assert _enter_long(eng, 20) == 6
    # the crash bar: true range 41 points against 4 x ATR 4 = 16
    crash = _bar(eng, 21, 4000.0, 4001.0, 3960.0, 3965.0, atr=6.6)
    assert crash.exits == (Exit(-6, 3992.0, "stop", -1),)
    (event,) = crash.events
    assert (event.cause, event.action, event.to_mode) == ("breaker.volatility", "engage",
                                                          Mode.REDUCING)
    assert "true range 41 points > 16" in event.why
    eng.on_fill(-6, 3992.0, now_ns=T0 + 21 * MIN)
    # aftershocks keep it tripped; no entry while REDUCING
    assert _bar(eng, 22, 3965.0, 3990.0, 3940.0, 3950.0, atr=8.0).events == ()
    d = eng.decide(1.0, position=0, equity=247_000.0, price=3950.0, features=quiet())
    assert d.order == 0
    assert "reducing" in [r.code for r in d.reasons]
    events = _calm(eng, 23, 15, price=3950.0)
    assert [(e.cause, e.action, e.to_mode) for e in events] == [
        ("breaker.volatility", "release", Mode.RUNNING)]
    assert events[0].why == "15 clean bars after the trip"


def test_a_real_jump_is_accepted_once_the_next_bar_confirms_it_and_no_fault_streak_follows():
    validator = InlineValidator(max_staleness_s=120.0, max_jump_atr=8.0)
    for i in range(5):
        ts = T0 + i * MIN
        assert validator.check(ts, 4000.0, 4001.0, 3999.0, 4000.0, 100.0, ts, 4.0) is None
    ts = T0 + 5 * MIN  # the market gaps 100 points (a Sunday open, a release): one bar rejected
    assert validator.check(ts, 3900.0, 3901.0, 3899.0, 3900.0, 100.0, ts, 4.0).code == "jump"
    ts += MIN  # the next bar agrees with the new level: a real move, accepted
    assert validator.check(ts, 3901.0, 3902.0, 3899.0, 3901.0, 100.0, ts, 4.0) is None
    assert validator.last_close == 3901.0


def test_data_faults_after_a_spike_storm_halt_until_a_person_resets_validator_and_breaker():
    eng, validator = _engine(), InlineValidator(max_staleness_s=120.0, max_jump_atr=8.0)
    for i in range(5):  # accepted bars around 4000
        ts = T0 + i * MIN
        assert validator.check(ts, 4000.0, 4001.0, 3999.0, 4000.0, 100.0, ts, 4.0) is None
        _bar(eng, i, 4000.0, 4001.0, 3999.0, 4000.0)
    _enter_long(eng, 5)
    events = []
    for i in range(6, 12):  # a broken feed: each bar jumps, none agrees with the one before
        ts = T0 + i * MIN
        level = 3900.0 if i % 2 else 4100.0
        fault = validator.check(ts, level, level + 1, level - 1, level, 100.0, ts, 4.0)
        assert fault is not None
        assert fault.code == "jump"
        events += eng.on_fault(now_ns=ts, code=fault.code)
    (trip,) = events  # the 3rd consecutive fault trips; later ones are not new events
    assert (trip.cause, trip.to_mode, trip.at_ns) == ("breaker.data_quality", Mode.HALTED,
                                                      T0 + 8 * MIN)
    assert "3 consecutive inline-validation faults" in trip.why
    assert "last jump" in trip.why
    d = eng.decide(1.0, position=6, equity=249_000.0, price=3900.0, features=RiskFeatures())
    assert (d.order, d.action) == (-6, "flatten")
    with pytest.raises(RiskInputError, match="latch"):  # no automatic path clears it
        release(eng.state, "breaker.data_quality", why="auto", at_ns=0)
    assert _calm(eng, 12, 30) == []
    assert eng.mode is Mode.HALTED
    # the explicit path: the operator confirms the move, re-anchors the validator, resets
    ts = T0 + 42 * MIN
    validator.reset(last_ts_ns=ts - MIN, last_close=3900.0)
    event = eng.reset("breaker.data_quality", by="alice", why="real move (FOMC)", now_ns=ts)
    assert (event.to_mode, event.by) == (Mode.RUNNING, "alice")
    assert validator.check(ts, 3900.0, 3902.0, 3899.0, 3901.0, 100.0, ts, 4.0) is None
    assert eng.breakers["data_quality"].streak == 0


def test_isolated_faults_between_good_bars_do_not_trip():
    eng = _engine()
    events = []
    for i in range(12):
        if i % 3 == 2:
            _bar(eng, i, 4000.0, 4001.0, 3999.0, 4000.0)
        else:
            events += eng.on_fault(now_ns=T0 + i * MIN, code="non_finite")
    assert events == []
    assert eng.mode is Mode.RUNNING


def test_daily_loss_rolls_over_at_the_trade_date_change():
    eng = _engine()
    assert eng.on_equity(now_ns=T0, trade_date=D1, equity=245_500.0) == ()  # -1.8 %
    (loss,) = eng.on_equity(now_ns=T0 + MIN, trade_date=D1, equity=244_000.0)  # -2.4 %
    assert (loss.cause, loss.to_mode) == ("breaker.loss", Mode.REDUCING)
    (limit,) = eng.on_equity(now_ns=T0 + 2 * MIN, trade_date=D1, equity=242_000.0)  # -3.2 %
    assert (limit.cause, limit.to_mode) == ("limit.daily_loss", Mode.HALTED)
    assert "daily loss 3.20% of start-of-day equity 250,000.00" in limit.why
    # 17:00 ET: the next bar belongs to the next trade date; both holds release
    rolled = eng.on_equity(now_ns=T0 + 3 * MIN, trade_date=D2, equity=242_000.0)
    assert [(e.cause, e.action) for e in rolled] == [("breaker.loss", "release"),
                                                     ("limit.daily_loss", "release")]
    assert eng.mode is Mode.RUNNING
    assert eng.track.day_start == 242_000.0
    # the new day's loss is measured from the new start: -2.5 % of 242k trips again
    (again,) = eng.on_equity(now_ns=T0 + 4 * MIN, trade_date=D2, equity=235_950.0)
    assert again.cause == "breaker.loss"


def test_an_overnight_gap_counts_against_the_new_day():
    eng = _engine()
    eng.on_equity(now_ns=T0, trade_date=D1, equity=250_000.0)
    (loss,) = eng.on_equity(now_ns=T0 + MIN, trade_date=D2, equity=244_000.0)
    assert loss.cause == "breaker.loss"


def test_drawdown_from_peak_halts_and_stays_latched_across_days():
    eng = _engine()
    eng.on_equity(now_ns=T0, trade_date=D1, equity=260_000.0)
    eng.on_equity(now_ns=T0 + MIN, trade_date=D2, equity=245_000.0)
    events = eng.on_equity(now_ns=T0 + 2 * MIN, trade_date=date(2024, 1, 4), equity=233_000.0)
    assert ("limit.max_drawdown", Mode.HALTED) in [(e.cause, e.to_mode) for e in events]
    eng.on_equity(now_ns=T0 + 3 * MIN, trade_date=date(2024, 1, 5), equity=234_000.0)
    assert eng.mode is Mode.HALTED  # a new day does not clear it
    with pytest.raises(RiskInputError, match="reserved"):
        eng.reset("limit.max_drawdown", by="risk", why="x", now_ns=T0)
    eng.reset("limit.max_drawdown", by="bob", why="reviewed, resume", now_ns=T0 + 4 * MIN)
    assert eng.track.peak == 234_000.0  # the peak restarts, or the next mark trips again
    assert eng.on_equity(now_ns=T0 + 5 * MIN, trade_date=date(2024, 1, 5),
                         equity=234_000.0) == ()
    assert eng.mode is Mode.RUNNING


def test_stale_feed_trips_while_open_and_not_in_the_maintenance_break():
    eng = _engine()
    _bar(eng, 1, 4000.0, 4001.0, 3999.0, 4000.0)
    last = T0 + MIN
    assert eng.heartbeat(now_ns=last + 120 * 10**9, session_open=True) == ()  # 120 s: not yet
    (stale,) = eng.heartbeat(now_ns=last + 121 * 10**9, session_open=True)
    assert (stale.cause, stale.to_mode) == ("breaker.stale_feed", Mode.REDUCING)
    assert "no bar for 121.0 s" in stale.why
    events = _calm(eng, 4, 15)
    assert [(e.cause, e.action) for e in events] == [("breaker.stale_feed", "release")]
    # 17:00-18:00 ET: no bars due; the clock restarts at the reopen
    assert eng.heartbeat(now_ns=last + 3600 * 10**9, session_open=False) == ()
    reopen = last + 3700 * 10**9
    assert eng.heartbeat(now_ns=reopen, session_open=True) == ()
    assert eng.heartbeat(now_ns=reopen + 60 * 10**9, session_open=True) == ()


def test_latency_breaches_in_a_row_trip_and_calm_bars_reset():
    eng = _engine()
    events = []
    for i, ms in enumerate([60.0, 70.0, 10.0, 60.0, 80.0, 55.0]):
        events += _bar(eng, i, 4000.0, 4001.0, 3999.0, 4000.0, latency_ms=ms).events
    (trip,) = events
    assert trip.at_ns == T0 + 5 * MIN
    assert trip.cause == "breaker.latency"
    back = []
    for i in range(6, 21):
        back += _bar(eng, i, 4000.0, 4001.0, 3999.0, 4000.0, latency_ms=1.0).events
    assert [e.action for e in back] == ["release"]


def test_kill_switch_halts_flattens_and_only_a_person_clears_it():
    eng = _engine()
    _calm(eng, 0, 3)
    _enter_long(eng, 3)
    event = eng.kill(by="http:alice", why="manual stop", now_ns=T0 + 4 * MIN)
    assert event is not None
    assert event.to_mode is Mode.HALTED
    assert eng.decide(1.0, position=6, equity=250_000.0, price=4000.0,
                      features=quiet()).order == -6
    _calm(eng, 5, 50)
    eng.on_equity(now_ns=T0 + 60 * MIN, trade_date=D2, equity=250_000.0)
    assert eng.mode is Mode.HALTED
    with pytest.raises(RiskInputError, match="no hold 'breaker.loss'"):
        eng.reset("breaker.loss", by="alice", why="x", now_ns=T0)
    with pytest.raises(RiskInputError, match="reason"):
        eng.reset("kill_switch", by="alice", why=" ", now_ns=T0)
    eng.reset("kill_switch", by="alice", why="checked", now_ns=T0 + 61 * MIN)
    assert eng.mode is Mode.RUNNING


def test_take_profit_then_trailing_stop_through_the_engine():
    eng = _engine()
    _calm(eng, 0, 3)
    _enter_long(eng, 3)  # 6 @ 4000, stop 3992, 2R 4016
    tp = _bar(eng, 4, 4001.0, 4017.0, 4000.0, 4015.0)
    assert tp.exits == (Exit(-3, 4016.0, "take_profit", 0),)
    eng.on_fill(-3, 4016.0, now_ns=T0 + 4 * MIN)
    assert eng.trade is not None
    assert eng.trade.stop == 4011.0
    stop = _bar(eng, 5, 4014.0, 4015.0, 4010.0, 4012.0)
    assert stop.exits == (Exit(-3, 4011.0, "stop", -1),)
    eng.on_fill(-3, 4011.0, now_ns=T0 + 5 * MIN)
    assert eng.trade is None


def test_snapshot_round_trips_through_json_mid_trade():
    eng = _engine()
    _calm(eng, 0, 3)
    _enter_long(eng, 3)
    _bar(eng, 4, 4000.0, 4040.0, 3999.0, 4030.0)  # a volatility trip and a moved stop
    eng.on_equity(now_ns=T0 + 4 * MIN, trade_date=D1, equity=244_000.0)
    eng.kill(by="alice", why="test", now_ns=T0 + 5 * MIN)
    snap = json.loads(json.dumps(snapshot(eng), allow_nan=False))
    back = restore(ES, snap)
    assert snapshot(back) == snapshot(eng)
    assert back.state == eng.state
    assert back.trade == eng.trade
    assert back.mode is Mode.HALTED
    args = {"position": 6, "equity": 244_000.0, "price": 4030.0, "features": quiet()}
    assert back.decide(0.5, **args) == eng.decide(0.5, **args)
    with pytest.raises(RiskInputError, match="version"):
        restore(rules("MNQ"), snap)
    with pytest.raises(RiskInputError, match="malformed"):
        restore(ES, {**snap, "trade": {"side": 1}})


def test_invalid_bar_is_refused():
    with pytest.raises(RiskInputError, match="not a valid bar"):
        _bar(_engine(), 0, 4000.0, 3999.0, 3998.0, 4000.0)  # open above high
    with pytest.raises(RiskInputError, match="not a valid bar"):
        _bar(_engine(), 0, 4000.0, float("nan"), 3998.0, 4000.0)
