from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from executor.feeds import Backoff, BadMessage, Feed, FeedItem, Idle
from executor.feeds.replay import ReplayFeed
from executor.feeds.vendor import VendorFeed, VendorSession
from mia.clock import TestClock
from mia.data.store import BarStore
from mia.data.stream import (
    MalformedMessage,
    Pacer,
    bar_time,
    decode_message,
    encode_bar,
    time_ns,
)
from mia.errors import OperationalError, StoreError, TemporaryError
from mia.types import Bar
from tests.unit.conftest import make_bars

T0 = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    """Two symbols, two trade dates, different seeds."""
    frame = pd.concat([make_bars(symbol="ES", seed=1), make_bars(symbol="MNQ", seed=2)])
    BarStore(tmp_path / "raw").write(frame)
    return tmp_path / "raw", frame


def _bars(feed) -> list[FeedItem]:
    return [e for e in feed if isinstance(e, FeedItem)]


# -- replay ------------------------------------------------------------------------------------


def test_replay_merges_symbols_in_ts_order_and_yields_every_stored_bar(store):
    root, frame = store
    feed = ReplayFeed(root, ["ES", "MNQ"])
    assert isinstance(feed, Feed)
    items = _bars(feed)
    assert len(items) == len(frame)
    keys = [(i.ts_ns, i.bar.symbol) for i in items]
    assert keys == sorted(keys)
    es = [i for i in items if i.bar.symbol == "ES"]
    want = frame[frame["symbol"] == "ES"].reset_index(drop=True)
    assert [i.bar.close for i in es] == want["close"].tolist()
    assert [i.ts_ns for i in es] == pd.DatetimeIndex(want["ts"]).asi8.tolist()
    first = items[0]
    assert first.ack is None
    assert first.source_id == f"{first.bar.symbol}:{first.ts_ns}"
    assert time_ns(first.bar.ts) == first.ts_ns
    assert first.bar.ts.tzinfo is not None


def test_replay_carries_optional_groups_in_extra(tmp_path):
    BarStore(tmp_path).write(make_bars(groups=True))
    item = next(iter(ReplayFeed(tmp_path, ["ES"])))
    assert set(item.bar.extra) == {"bid_volume", "ask_volume", "taker_volume",
                                   "bid_ask_spread", "order_volume"}


def test_replay_without_groups_has_no_extra(store):
    item = next(iter(ReplayFeed(store[0], ["ES"])))
    assert item.bar.extra is None


def test_replay_start_after_resumes_after_the_last_journaled_bar(store):
    root, frame = store
    everything = _bars(ReplayFeed(root, ["ES", "MNQ"]))
    es_cut = [i for i in everything if i.bar.symbol == "ES"][1500].ts_ns  # in the second day
    mnq_cut = [i for i in everything if i.bar.symbol == "MNQ"][10].ts_ns
    resumed = _bars(ReplayFeed(root, ["ES", "MNQ"], start_after={"ES": es_cut, "MNQ": mnq_cut}))
    want = [i for i in everything
            if i.ts_ns > (es_cut if i.bar.symbol == "ES" else mnq_cut)]
    assert [i.source_id for i in resumed] == [i.source_id for i in want]
    assert len(resumed) == len(frame) - 1501 - 11


def test_replay_date_range_reads_only_those_trade_dates(store):
    items = _bars(ReplayFeed(store[0], ["ES"], start=date(2024, 1, 3), end=date(2024, 1, 3)))
    assert len(items) == 1380  # one 23-hour session of 1-minute bars


def test_replay_at_real_time_waits_the_bar_gaps_on_the_injected_clock(store):
    clock = TestClock(T0)
    items = []
    for item in ReplayFeed(store[0], ["ES"], end=date(2024, 1, 2), speed=1.0, clock=clock):
        items.append(item)
        assert clock.monotonic() == pytest.approx((item.ts_ns - items[0].ts_ns) / 1e9)
    assert clock.monotonic() == pytest.approx(1379 * 60.0)


def test_replay_n_times_faster_divides_the_waits(store):
    clock = TestClock(T0)
    items = _bars(ReplayFeed(store[0], ["ES"], end=date(2024, 1, 2), speed=60.0, clock=clock))
    assert clock.monotonic() == pytest.approx((items[-1].ts_ns - items[0].ts_ns) / 1e9 / 60)


@pytest.mark.parametrize("speed", [None, 0])
def test_replay_as_fast_as_possible_never_sleeps(store, speed):
    clock = TestClock(T0)
    assert len(_bars(ReplayFeed(store[0], ["ES"], speed=speed, clock=clock))) == 2760
    assert clock.monotonic() == 0.0


def test_replay_max_gap_caps_the_wait_over_a_session_break(store):
    clock = TestClock(T0)
    _bars(ReplayFeed(store[0], ["ES"], speed=1.0, clock=clock, max_gap_s=120.0))
    # 2 x 1379 one-minute gaps plus the 61-minute maintenance break capped at 2 minutes
    assert clock.monotonic() == pytest.approx(2 * 1379 * 60.0 + 120.0)


def test_pacer_catches_up_instead_of_drifting_when_the_consumer_is_slow():
    clock = TestClock(T0)
    pacer = Pacer(1.0, clock)
    pacer.wait(0)
    clock.advance(150.0)  # the consumer spent 150 s on the first bar
    pacer.wait(60 * 10**9)  # due at 60 s: already late, no wait
    pacer.wait(120 * 10**9)  # due at 120 s: still late
    assert clock.monotonic() == 150.0
    pacer.wait(180 * 10**9)  # due at 180 s
    assert clock.monotonic() == pytest.approx(180.0)


def test_replay_close_ends_iteration_after_the_current_bar(store):
    feed = ReplayFeed(store[0], ["ES"])
    seen = []
    for item in feed:
        seen.append(item)
        if len(seen) == 3:
            feed.close()
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"symbols": ["ES"], "speed": -1.0}, OperationalError, "speed"),
        ({"symbols": ["ES"], "speed": math.inf}, OperationalError, "speed"),
        ({"symbols": ["ES"], "max_gap_s": 0.0}, OperationalError, "max_gap_s"),
        ({"symbols": ["ES", "ES"]}, OperationalError, "unique"),
        ({"symbols": []}, OperationalError, "non-empty"),
        ({"symbols": ["ES"], "start_after": {"MNQ": 1}}, OperationalError, "start_after"),
        ({"symbols": ["NQ"]}, StoreError, "no NQ bars"),
        ({"symbols": ["ES"], "start": date(2030, 1, 1)}, StoreError, "no ES bars"),
    ],
)
def test_replay_rejects_bad_arguments_at_construction(store, kwargs, error, match):
    with pytest.raises(error, match=match):
        ReplayFeed(store[0], **kwargs)


# -- wire format -------------------------------------------------------------------------------


def _fields(**over: str | None) -> dict[bytes, bytes]:
    base = {"ts_ns": "1704207660000000000", "symbol": "ES", "open": "4800.25", "high": "4801.0",
            "low": "4799.5", "close": "4800.75", "volume": "12.0"}
    base.update(over)  # type: ignore[arg-type]
    return {k.encode(): v.encode() for k, v in base.items() if v is not None}


def test_wire_format_round_trips_a_bar_with_optional_groups():
    bar = Bar(bar_time(1704207660000000000), "ES", 4800.25, 4801.0, 4799.5, 4800.75, 12.0,
              {"vix": 13.5})
    fields = {k.encode(): v.encode() for k, v in encode_bar(1704207660000000000, bar).items()}
    assert decode_message(fields, "ES") == (1704207660000000000, bar)


def test_wire_format_leaves_market_rules_to_the_inline_validator():
    # high < low is a market-rule fault (bad_ohlc), judged by the loop's validator, not the feed
    ts, bar = decode_message(_fields(high="4790.0"), "ES")
    assert bar.high < bar.low
    assert ts == 1704207660000000000


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"close": None}, "missing_field"),
        ({"close": "abc"}, "not_a_number"),
        ({"close": "nan"}, "non_finite"),
        ({"volume": "inf"}, "non_finite"),
        ({"ts_ns": "1.7e18"}, "bad_ts"),
        ({"ts_ns": "1704207660000000001"}, "bad_ts"),
        ({"ts_ns": "-5"}, "bad_ts"),
        ({"ts_ns": "99999999999999999999999"}, "bad_ts"),
        ({"symbol": "MNQ"}, "wrong_symbol"),
        ({"bid_vol": "1.0"}, "unknown_field"),
        ({"bid_volume": "1.0"}, "partial_group"),
        ({"vix": "NaN"}, "non_finite"),
    ],
)
def test_wire_format_rejects_a_malformed_entry_with_its_code(over, code):
    with pytest.raises(MalformedMessage) as info:
        decode_message(_fields(**over), "ES")
    assert info.value.code == code


# -- vendor interface --------------------------------------------------------------------------


def _vbar(minute: int, symbol: str = "ES", close: float = 4800.0) -> Bar:
    ts = bar_time(1704207600 * 10**9 + minute * 60 * 10**9)
    return Bar(ts, symbol, close, close + 1, close - 1, close, 5.0)


class ScriptEnd(Exception):
    """The script has no more reads: ends the test's iteration."""


class ScriptedSession:
    """A vendor session driven by a script (no vendor exists offline): each ``read`` pops the
    next step, a list of bars or an exception; ``history`` serves from a recorded tape."""

    name = "scripted"

    def __init__(self, reads, tape=(), connect_failures=0):
        self.reads = list(reads)
        self.tape = list(tape)
        self.connect_failures = connect_failures
        self.calls: list[str] = []

    def connect(self):
        self.calls.append("connect")
        if self.connect_failures:
            self.connect_failures -= 1
            raise TemporaryError("vendor unreachable")

    def subscribe(self, symbols):
        self.calls.append(f"subscribe:{','.join(symbols)}")

    def read(self, timeout_s):
        step = self.reads.pop(0) if self.reads else ScriptEnd()
        if isinstance(step, BaseException):
            raise step
        return step

    def history(self, symbol, after_ts_ns):
        self.calls.append(f"history:{symbol}")
        return [b for b in self.tape if b.symbol == symbol and time_ns(b.ts) > after_ts_ns]

    def close(self):
        self.calls.append("close")


def _drain(feed, limit=50):
    out = []
    try:
        for event in feed:
            out.append(event)
            if len(out) >= limit:
                break
    except ScriptEnd:
        pass
    return out


def test_scripted_session_satisfies_the_vendor_protocol():
    assert isinstance(ScriptedSession([]), VendorSession)


def test_vendor_feed_fills_a_disconnection_gap_from_history_without_duplicates():
    tape = [_vbar(m) for m in range(1, 8)]
    session = ScriptedSession(
        reads=[[tape[0], tape[1]], [tape[2]], TemporaryError("socket closed"), [tape[5], tape[6]]],
        tape=tape)
    events = _drain(VendorFeed(session, ["ES"], clock=TestClock(T0)))
    bars = [e for e in events if isinstance(e, FeedItem)]
    assert [b.bar.ts for b in bars] == [b.ts for b in tape]  # 1..3 live, 4..7 history, no dup
    assert any(isinstance(e, Idle) and not e.connected for e in events)
    assert session.calls.count("connect") == 2
    assert session.calls[-1] == "close"
    assert all(b.ack is None for b in bars)


def test_vendor_feed_start_after_fetches_the_bars_since_the_last_journaled_one():
    tape = [_vbar(m) for m in range(1, 5)]
    session = ScriptedSession(reads=[[]], tape=tape)
    feed = VendorFeed(session, ["ES"], start_after={"ES": time_ns(tape[1].ts)})
    events = _drain(feed)
    assert [e.bar.ts for e in events if isinstance(e, FeedItem)] == [tape[2].ts, tape[3].ts]
    assert Idle(1.0, True, "no data") in events


def test_vendor_feed_backs_off_while_the_vendor_is_unreachable():
    clock = TestClock(T0)
    session = ScriptedSession(reads=[[_vbar(1)]], connect_failures=3)
    events = _drain(VendorFeed(session, ["ES"], clock=clock, backoff=Backoff(0.1, 5.0, 2.0)))
    idles = [e for e in events if isinstance(e, Idle)]
    assert [i.waited_s for i in idles] == [0.1, 0.2, 0.4]
    assert all(not i.connected and "unreachable" in i.reason for i in idles)
    assert clock.monotonic() == pytest.approx(0.7)
    assert isinstance(events[-1], FeedItem)


def test_vendor_feed_reports_malformed_bars_as_bad_messages_and_keeps_going():
    naive = Bar(datetime(2024, 1, 2, 15, 0), "ES", 1.0, 1.0, 1.0, 1.0, 1.0)  # noqa: DTZ001
    session = ScriptedSession(reads=[[_vbar(1, close=math.nan), _vbar(2, symbol="NQ"), naive,
                                      _vbar(3)]])
    events = _drain(VendorFeed(session, ["ES"]))
    bad = [e for e in events if isinstance(e, BadMessage)]
    assert [b.code for b in bad] == ["non_finite", "wrong_symbol", "bad_ts"]
    assert [e.bar.ts for e in events if isinstance(e, FeedItem)] == [_vbar(3).ts]


def test_vendor_feed_rejects_bad_arguments():
    with pytest.raises(OperationalError, match="timeout_s"):
        VendorFeed(ScriptedSession([]), ["ES"], timeout_s=0)
    with pytest.raises(OperationalError, match="start_after"):
        VendorFeed(ScriptedSession([]), ["ES"], start_after={"MNQ": 1})


def test_backoff_grows_to_its_cap_and_resets():
    b = Backoff(0.5, 2.0, 2.0)
    assert [b.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(OperationalError):
        Backoff(0.0, 1.0)
