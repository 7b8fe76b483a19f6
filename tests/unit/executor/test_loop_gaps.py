"""The live loop's known gaps of issue 7, closed (docs/executor.md, "Known gaps"):

- ``routing: shadow``: the shadow book gets hypothetical fills, never reaches the broker, and
  production decides as it would alone;
- ``split`` at share 1: production (no capital) stops trading and is closed; the share steps
  5 -> 15 -> 50 -> 100 % and back are transfers of capital, not losses;
- the latency breaker is fed the previous tick's latency (live, not in a replay);
- the stale-feed breaker follows the CME session calendar, not the connection;
- malformed feed messages count toward the data-quality breaker.

Real parts (conftest.py's world: bundles, the paper broker, the SQLite journal); a live-mode loop
here runs on an injected wall clock and tick counter, so nothing depends on the machine's speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from executor.calendar import session_open
from executor.feeds.base import BadMessage, FeedItem, Idle
from executor.journal import Journal
from executor.settings import RollbackSettings
from executor.slot import ModelSlot
from mia.risk import Mode
from tests.unit.executor.test_loop import until_holding

ET, CT = ZoneInfo("America/New_York"), ZoneInfo("America/Chicago")
LOOSE = RollbackSettings(max_drawdown=1.0, min_trades=10**6, underperformance=1e9,
                         max_error_rate=1.0, max_latency_ms=1e6)
LIMITS = ("limit.daily_loss", "limit.max_drawdown", "breaker.loss")
IDLE = Idle(waited_s=1.0, connected=True, reason="no data")


def ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def es_bars(n: int, events: Iterable[Any]) -> Iterator[Any]:
    """The first ``n`` ES bars of a replay, each followed by its MNQ partner."""
    return islice(events, 2 * n)


def submits(journal: Journal, since_seq: int = 0) -> list[dict[str, Any]]:
    return [r.payload for r in journal.read("order", since_seq) if r.payload["action"] == "submit"]


def targets(stats: Any, book: str) -> dict[int, int]:
    return {ts: target for ts, b, target in stats.decisions if b == book}


def causes(journal: Journal, since_seq: int = 0) -> list[tuple[str, str, str]]:
    """:return: (book, cause, action) of every risk event journaled after ``since_seq``."""
    return [(r.payload["book"], r.payload["event"]["cause"], r.payload["event"]["action"])
            for r in journal.read("risk_event", since_seq)]


class Shares:
    """The model watcher as far as the loop's share goes: the registry's canary share, no swaps
    (``mia registry set-share`` moves it; the loop reads it between bars)."""

    def __init__(self, share: float) -> None:
        self.share = share

    def take(self) -> list[Any]:
        return []

    def running(self, slot_name: str, version: str | None) -> None:
        pass

    def clear_canary(self, reason: str) -> None:
        pass


class Clock:
    """The wall clock and the tick counter of a live-mode loop, moved by the test."""

    def __init__(self) -> None:
        self.now = 0
        self.perf = 0

    def wall_ns(self) -> int:
        return self.now

    def perf_ns(self) -> int:
        self.perf += 1_000  # a microsecond a reading: time moves, fast
        return self.perf


class SlowSlot(ModelSlot):
    """A model whose decision takes ``delay_ns`` on the loop's tick counter."""

    clock: Clock
    delay_ns: int = 60_000_000

    def decide(self, position: int) -> Any:
        self.clock.perf += self.delay_ns
        return super().decide(position)


def live_bars(clock: Clock, events: Iterable[Any], lag_ns: int = 1_000_000_000) -> Iterator[Any]:
    """The events as a live feed delivers them: each bar arrives ``lag_ns`` after its close."""
    for ev in events:
        if isinstance(ev, FeedItem):
            clock.now = ev.ts_ns + lag_ns
        yield ev


@pytest.fixture
def make_live_loop(world, tmp_path):
    """A factory of warm live-mode loops (``replay=False``: "now" is the clock's wall time)."""
    from executor.app import open_state
    from executor.loop import Executor, Services
    from executor.router import Routing

    opened: list[Any] = []

    def make(clock: Clock, *, slot: ModelSlot | None = None, replay: bool = False,
             name: str = "live") -> tuple[Executor, Any]:
        p = world.cfg.params
        state = open_state(tmp_path / name, ("ES", "MNQ"), p)
        opened.append(state)
        ex = Executor(symbol="ES", cross_symbol="MNQ", params=p, state=state.recovered.state,
                      slots={"production": slot or ModelSlot.load(world.production, "1"),
                             "canary": None},
                      services=Services(journal=state.journal, broker=state.broker,
                                        snapshots=state.snapshots),
                      routing=Routing(), rollback=LOOSE, capital=p.env.initial_equity,
                      record=True, replay=replay, wall_ns=clock.wall_ns, perf_ns=clock.perf_ns)
        ex.warm(world.history())
        return ex, state

    yield make
    for state in opened:
        state.broker.close()
        state.journal.close()


# --- routing: shadow -------------------------------------------------------------------------

@pytest.mark.slow
def test_shadow_routing_fills_the_shadow_book_hypothetically_and_production_trades_alone(
        world, make_executor, tmp_path):
    share, n = 0.2, 900
    ex, st = make_executor(canary=True, share=share, mode="shadow", rollback=LOOSE,
                           state_dir=tmp_path / "shadow")
    stats = ex.run(es_bars(n, world.replay()))  # raised RiskInputError at the 2nd shadow order
    assert stats.bars == n
    # the broker saw production's orders only; the shadow's were journaled and filled here
    assert {o.book for o in st.broker.orders()} == {"production"}
    assert len(st.broker.orders()) == stats.orders
    shadow_orders = [o for o in submits(st.journal) if o["book"] == "shadow"]
    shadow_fills = [r.payload for r in st.journal.read("fill") if r.payload["book"] == "shadow"]
    assert len(shadow_orders) > 2
    assert stats.shadow_fills == len(shadow_fills) >= len(shadow_orders) - 1
    assert st.broker.positions().get("ES", 0) == ex.state.position("production", "ES")
    # a PnL of its own, on a notional capital of the canary's share
    book = ex.state.books[("shadow", "ES")]
    assert book.cash != 0.0
    assert ex.engines["shadow/ES"].track.day_start == pytest.approx(
        world.cfg.params.env.initial_equity * share, rel=0.05)
    # production decides exactly as production alone
    alone, _ = make_executor(state_dir=tmp_path / "alone")
    want = alone.run(es_bars(n, world.replay()))
    assert targets(stats, "production") == targets(want, "production")
    # ... and the shadow exactly as the canary trading alone with the share's capital: the
    # hypothetical fills are the paper broker's (prices, costs, timing)
    solo = {"production": ModelSlot.load(world.canary, "2"), "canary": None}
    small, _ = make_executor(slots=solo, capital=world.cfg.params.env.initial_equity * share,
                             state_dir=tmp_path / "solo")
    canary_alone = small.run(es_bars(n, world.replay()))
    assert targets(stats, "shadow") == targets(canary_alone, "production")
    assert any(targets(stats, "shadow").values()), "the shadow must trade to prove anything"
    assert book == small.state.books[("production", "ES")]


def test_a_restart_in_shadow_mode_recovers_the_shadow_book_and_fills_its_open_order(
        world, make_executor, tmp_path):
    ex, st = make_executor(canary=True, share=0.2, mode="shadow", rollback=LOOSE,
                           state_dir=tmp_path / "s")
    events = list(es_bars(700, world.replay()))
    k = 0
    while True:  # stop (as kill -9 would) with a shadow order open
        ex.handle(events[k])
        if events[k].bar.symbol == "MNQ" and ex.state.pending("shadow", "ES") != 0:
            break
        k += 1
    pending = ex.state.pending("shadow", "ES")
    assert pending != 0
    books = dict(ex.state.books)
    st.journal.close()
    st.broker.close()
    again, st2 = make_executor(canary=True, share=0.2, mode="shadow", rollback=LOOSE,
                               state_dir=tmp_path / "s")
    assert again.state.books == books
    assert st2.recovered.resubmitted == ()  # a shadow order never goes to the broker
    q = again.state.position("shadow", "ES")
    for ev in events[k + 1:k + 3]:  # the next bar fills it at its open
        again.handle(ev)
    assert again.state.position("shadow", "ES") == q + pending
    assert {o.book for o in st2.broker.orders()} <= {"production"}


def test_a_shadow_book_that_no_canary_trades_any_more_is_closed(world, make_executor):
    watcher = Shares(0.2)
    ex, st = make_executor(canary=True, share=0.2, mode="shadow", rollback=LOOSE,
                           watcher=watcher)
    events = iter(es_bars(900, world.replay()))
    held = until_holding(ex, events, "shadow")
    assert held != 0
    seq = st.journal.last_seq
    watcher.share = 0.0  # the canary's share cleared
    ex.handle(IDLE)  # read between bars
    for ev in islice(events, 4):
        ex.handle(ev)
    closes = [o for o in submits(st.journal, since_seq=seq) if o["book"] == "shadow"]
    assert [(o["quantity"], o["reason"]) for o in closes] == [
        (-held, "flatten: no canary trades this book")]
    assert ex.state.position("shadow", "ES") == 0


# --- split at share 1, and the share steps ---------------------------------------------------

def run_until(ex: Any, events: Iterator[Any], done: Any) -> None:
    for ev in events:
        ex.handle(ev)
        if ev.bar.symbol == "MNQ" and done(ex.state):
            return
    raise AssertionError("the condition never held in the window")


def exposed(book: str) -> Any:
    return lambda st: st.position(book, "ES") != 0 and not st.pending(book, "ES")


@pytest.mark.slow
def test_share_one_under_split_stops_production_closes_it_and_a_step_back_trades_it_again(
        world, make_executor):
    watcher = Shares(0.5)
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE, watcher=watcher)
    events = iter(es_bars(1300, world.replay()))
    run_until(ex, events, exposed("production"))
    held = ex.state.position("production", "ES")
    seq = st.journal.last_seq
    watcher.share = 1.0  # mia registry set-share 1 (the canary review's last step)
    ex.handle(IDLE)  # read between bars
    n_before = len(targets(ex.stats, "production"))
    for ev in islice(events, 400):
        ex.handle(ev)  # raised RiskInputError (equity 0) at the next bar
    orders = [o for o in submits(st.journal, since_seq=seq) if o["book"] == "production"]
    assert [(o["quantity"], o["reason"]) for o in orders] == [
        (-held, "flatten: production has no capital (canary share 1)")]
    assert ex.state.position("production", "ES") == 0
    assert len(targets(ex.stats, "production")) == n_before  # no decision without capital
    assert any(b == "canary" and t > max(targets(ex.stats, "production"))
               for t, b, _ in ex.stats.decisions)
    assert ex.engines["canary/ES"].track.last == pytest.approx(
        world.cfg.params.env.initial_equity, rel=0.05)  # the whole account, not a gain
    # and back down: production trades again, with half the account
    watcher.share = 0.5
    ex.handle(IDLE)
    for ev in events:
        ex.handle(ev)
    assert len(targets(ex.stats, "production")) > n_before
    assert ex.engines["production/ES"].track.last == pytest.approx(
        world.cfg.params.env.initial_equity * 0.5, rel=0.05)
    assert [c for c in causes(st.journal) if c[1] in LIMITS] == []
    assert ex.canary_watch.peak == pytest.approx(
        world.cfg.params.env.initial_equity * 0.5, rel=0.05)
    assert ex.slots["canary"] is not None  # no rollback: a step down is no drawdown


def test_a_fresh_start_at_share_one_trades_the_canary_alone(world, make_executor):
    ex, st = make_executor(canary=True, share=1.0, rollback=LOOSE)
    stats = ex.run(es_bars(300, world.replay()))
    assert stats.bars == 300
    assert "production/ES" not in ex.engines  # no engine at equity 0
    assert targets(stats, "production") == {}
    assert any(targets(stats, "canary").values())
    assert {o.book for o in st.broker.orders()} == {"canary"}


@pytest.mark.slow
def test_the_canary_review_share_steps_trip_no_loss_limit_and_roll_nothing_back(
        world, make_executor):
    # rollback at the default 3 % drawdown: a step down must not read as one
    rules = RollbackSettings(max_drawdown=0.03, min_trades=10**6, underperformance=1e9,
                             max_error_rate=1.0, max_latency_ms=1e6)
    watcher = Shares(0.05)
    ex, st = make_executor(canary=True, share=0.05, rollback=rules, watcher=watcher)
    events = iter(es_bars(1300, world.replay()))
    capital = world.cfg.params.env.initial_equity
    for share in (0.15, 0.5, 1.0, 0.15):
        for ev in islice(events, 200):
            ex.handle(ev)
        watcher.share = share
    for ev in events:
        ex.handle(ev)
    # each step moved capital between the books: 10 % .. 100 % of production's was no loss
    assert [c for c in causes(st.journal) if c[1] in LIMITS] == []
    assert ex.slots["canary"] is not None
    for book, part in (("production", 0.85), ("canary", 0.15)):
        track = ex.engines[f"{book}/ES"].track
        assert track.last == pytest.approx(capital * part, rel=0.05)
        assert track.drawdown < 0.03


def test_a_share_changed_while_the_executor_was_down_is_a_transfer_too(world, make_executor,
                                                                      tmp_path):
    ex, st = make_executor(canary=True, share=0.05, rollback=LOOSE, state_dir=tmp_path / "s")
    events = list(es_bars(600, world.replay()))
    ex.run(events[:400])  # a graceful stop: the final snapshot holds the engines
    st.journal.close()
    st.broker.close()
    again, st2 = make_executor(canary=True, share=0.5, rollback=LOOSE, state_dir=tmp_path / "s")
    seq = st2.journal.last_seq
    for ev in events[400:]:
        again.handle(ev)
    assert [c for c in causes(st2.journal, seq) if c[1] in LIMITS] == []
    capital = world.cfg.params.env.initial_equity
    assert again.engines["production/ES"].track.last == pytest.approx(capital * 0.5, rel=0.05)


def test_an_invalid_share_from_the_registry_keeps_the_running_share_and_alerts_once(
        world, make_executor):
    watcher = Shares(0.2)
    ex, st = make_executor(canary=True, share=0.2, rollback=LOOSE, watcher=watcher)
    watcher.share = 1.5  # a canary_share tag set by hand
    ex.run(es_bars(20, world.replay()))
    assert ex.routing.share == 0.2
    alerts = [r.payload for r in st.journal.read("alert")
              if r.payload["code"] == "canary_share_invalid"]
    assert len(alerts) == 1
    assert "1.5" in alerts[0]["message"]
    assert "set-share" in alerts[0]["message"]


# --- the latency breaker -----------------------------------------------------------------------

def slow_slot(world: Any, clock: Clock) -> SlowSlot:
    slot = SlowSlot.load(world.production, "1")
    slot.clock = clock
    return slot


def test_slow_live_ticks_trip_the_latency_breaker(world, make_live_loop):
    clock = Clock()
    ex, st = make_live_loop(clock, slot=slow_slot(world, clock))
    ex.run(live_bars(clock, es_bars(20, world.replay())))
    trips = [r.payload["event"] for r in st.journal.read("risk_event")
             if r.payload["event"]["cause"] == "breaker.latency"]
    assert [(t["action"], t["to"]) for t in trips[:1]] == [("engage", "REDUCING")]
    assert "tick-to-decision 60." in trips[0]["why"]
    assert ex.stats.faults == 0  # the bars were fresh: judged by the (injected) wall clock


def test_fast_live_ticks_leave_the_latency_breaker_alone(world, make_live_loop):
    clock = Clock()
    ex, st = make_live_loop(clock)
    ex.run(live_bars(clock, es_bars(20, world.replay())))
    assert ex.stats.bars == 20
    assert [c for c in causes(st.journal) if c[1] == "breaker.latency"] == []


def test_a_replay_does_not_feed_the_latency_breaker(world, make_live_loop):
    # a replay must decide what the backtest decides, which measures no latency
    clock = Clock()
    ex, st = make_live_loop(clock, slot=slow_slot(world, clock), replay=True)
    ex.run(es_bars(20, world.replay()))
    assert ex.stats.bars == 20
    assert [c for c in causes(st.journal) if c[1] == "breaker.latency"] == []


# --- the stale-feed breaker and the CME session ----------------------------------------------

@pytest.mark.parametrize(("when", "is_open"), [
    (datetime(2024, 1, 3, 12, 0, tzinfo=ET), True),  # Wednesday midday
    (datetime(2024, 1, 3, 16, 59, 59, tzinfo=ET), True),
    (datetime(2024, 1, 3, 17, 0, tzinfo=ET), False),  # the daily break
    (datetime(2024, 1, 3, 17, 59, 59, tzinfo=ET), False),
    (datetime(2024, 1, 3, 18, 0, tzinfo=ET), True),  # Thursday's session opens
    (datetime(2024, 1, 3, 16, 30, tzinfo=CT), False),  # 16:00-17:00 Chicago is the break
    (datetime(2024, 1, 3, 17, 0, tzinfo=CT), True),
    (datetime(2024, 7, 10, 16, 30, tzinfo=CT), False),  # in summer time too
    (datetime(2024, 7, 10, 15, 59, tzinfo=CT), True),
    (datetime(2024, 1, 5, 16, 59, tzinfo=ET), True),  # Friday's last minute
    (datetime(2024, 1, 5, 18, 30, tzinfo=ET), False),  # Friday evening: the weekend
    (datetime(2024, 1, 6, 12, 0, tzinfo=ET), False),  # Saturday
    (datetime(2024, 1, 7, 16, 59, tzinfo=CT), False),  # Sunday before the open
    (datetime(2024, 1, 7, 17, 0, tzinfo=CT), True),  # Sunday 17:00 Chicago opens Monday
    (datetime(2024, 1, 14, 19, 0, tzinfo=ET), False),  # Martin Luther King Jr. Day's session
    (datetime(2024, 1, 15, 18, 30, tzinfo=ET), True),  # ... and Tuesday's
    (datetime(2024, 12, 24, 19, 0, tzinfo=ET), False),  # Christmas
])
def test_the_cme_session_is_open_sunday_to_friday_outside_the_daily_break_and_holidays(
        when, is_open):
    assert session_open(ns(when)) is is_open


def feed_session_edge(ex: Any, clock: Clock, world: Any, day: date, *, first: bool) -> int:
    """Feed five ES bars (and partners) of the trade date ``day``: its first or its last.
    :return: the last bar's ts."""
    events = list(world.replay(day, day))
    events = events[:10] if first else events[-10:]
    for ev in live_bars(clock, events):
        ex.handle(ev)
    assert (ex.stats.bars, ex.stats.faults) == (5, 0)
    return max(ev.ts_ns for ev in events)


def stale_trips(journal: Journal) -> list[str]:
    return [r.payload["event"]["action"] for r in journal.read("risk_event")
            if r.payload["event"]["cause"] == "breaker.stale_feed"]


def test_a_disconnected_feed_in_the_session_trips_the_stale_feed_breaker(world, make_live_loop):
    clock = Clock()
    ex, st = make_live_loop(clock)
    last = feed_session_edge(ex, clock, world, date(2024, 1, 4), first=True)
    assert session_open(last + 200 * 10**9)  # Wednesday evening, Thursday's session
    for s in range(10, 200, 10):  # Redis down: the feed reconnects and yields Idle
        clock.now = last + s * 10**9
        ex.handle(Idle(waited_s=10.0, connected=False, reason="Connection refused"))
    assert stale_trips(st.journal) == ["engage"]
    assert ex.engines["production/ES"].mode is Mode.REDUCING
    ex.handle(IDLE)  # reconnected, no bar yet
    links = [(r.payload["code"], r.payload["level"]) for r in st.journal.read("alert")
             if r.payload["code"].startswith("feed_")]
    assert links == [("feed_down", "critical"), ("feed_restored", "info")]  # once each


@pytest.mark.parametrize(("day", "quiet"), [
    (date(2024, 1, 4), [datetime(2024, 1, 4, 17, 0, 30, tzinfo=ET),
                        datetime(2024, 1, 4, 17, 30, tzinfo=ET),
                        datetime(2024, 1, 4, 17, 59, 59, tzinfo=ET)]),
    (date(2024, 1, 5), [datetime(2024, 1, 5, 17, 30, tzinfo=ET),
                        datetime(2024, 1, 6, 12, 0, tzinfo=ET),
                        datetime(2024, 1, 7, 17, 59, 59, tzinfo=ET)]),
], ids=["daily break", "weekend"])
def test_a_silent_connected_feed_outside_the_session_does_not_trip_the_stale_feed_breaker(
        world, make_live_loop, day, quiet):
    clock = Clock()
    ex, st = make_live_loop(clock)
    feed_session_edge(ex, clock, world, day, first=False)
    for when in quiet:
        clock.now = ns(when)
        ex.handle(Idle(waited_s=1.0, connected=True, reason="no data"))
    assert stale_trips(st.journal) == []
    assert ex.engines["production/ES"].mode is Mode.RUNNING
    # the session reopens at 18:00 ET: the clock starts there, and a feed silent since trips
    opens = quiet[-1].replace(hour=18, minute=0, second=5)
    for s in (0, 60, 125):
        clock.now = ns(opens) + s * 10**9
        ex.handle(Idle(waited_s=1.0, connected=True, reason="no data"))
    assert stale_trips(st.journal) == ["engage"]


# --- malformed feed messages -------------------------------------------------------------------

def bad(k: int) -> BadMessage:
    return BadMessage(f"17000000{k}-0", "not_a_number", "close='abc'", "ES")


def test_bad_feed_messages_in_a_row_trip_the_data_quality_breaker_and_nothing_is_ordered(
        world, make_executor):
    ex, st = make_executor()
    events = iter(es_bars(400, world.replay()))
    run_until(ex, events, lambda s: not s.position("production", "ES")
              and not s.pending("production", "ES"))  # flat: nothing to close at the trip
    seq = st.journal.last_seq
    limit = world.cfg.params.risk.data_fault_limit
    for k in range(limit):
        ex.handle(bad(k))
    trips = [r.payload["event"] for r in st.journal.read("risk_event", seq)
             if r.payload["event"]["cause"] == "breaker.data_quality"]
    assert [(t["action"], t["to"]) for t in trips] == [("engage", "HALTED")]
    assert "not_a_number" in trips[0]["why"]
    assert ex.phase == "HALTED"
    assert [r.payload["code"] for r in st.journal.read("alert", seq)] == [
        "data_not_a_number"] * limit
    for ev in events:
        ex.handle(ev)
    assert submits(st.journal, since_seq=seq) == []
    assert ex.stats.faults == limit


def test_bad_feed_messages_not_in_a_row_do_not_trip_the_data_quality_breaker(world,
                                                                            make_executor):
    ex, st = make_executor()
    events = iter(es_bars(50, world.replay()))
    for ev in islice(events, 2):
        ex.handle(ev)
    limit = world.cfg.params.risk.data_fault_limit
    for _ in range(3):
        for k in range(limit - 1):
            ex.handle(bad(k))
        for ev in islice(events, 2):  # a good bar between: the streak starts again
            ex.handle(ev)
    assert ex.stats.faults == 3 * (limit - 1)
    assert [c for c in causes(st.journal) if c[1] == "breaker.data_quality"] == []


def test_the_disconnected_feed_tests_use_bars_that_exist(world):
    # the stale-feed tests rely on the world's first and last bars of 01-04 and 01-05
    first = next(iter(world.replay(date(2024, 1, 4), date(2024, 1, 4))))
    assert datetime.fromtimestamp(first.ts_ns / 1e9, tz=UTC).astimezone(ET) == datetime(
        2024, 1, 3, 18, 1, tzinfo=ET)
    last = list(world.replay(date(2024, 1, 5), date(2024, 1, 5)))[-1]
    assert datetime.fromtimestamp(last.ts_ns / 1e9, tz=UTC).astimezone(ET) == datetime(
        2024, 1, 5, 17, 0, tzinfo=ET)


# --- the risk gate refuses a decision ----------------------------------------------------------

def test_a_refused_decision_is_alerted_once_and_the_loop_goes_on(world, make_executor,
                                                                 monkeypatch):
    from mia.risk import RiskEngine, RiskInputError

    def refuse(self, *args, **kwargs):
        raise RiskInputError("position 3 has no trade record")

    ex, st = make_executor()
    monkeypatch.setattr(RiskEngine, "decide", refuse)
    stats = ex.run(islice(world.replay(), 0, 200))
    assert stats.bars == 100
    alerts = [r.payload["message"] for r in st.journal.read("alert")
              if r.payload["code"] == "risk_input"]
    assert len(alerts) == 1
    assert "no trade record" in alerts[0]
    assert [r for r in st.journal.read("order") if r.payload["action"] == "submit"] == []


# --- a restart in the session: the backlog ----------------------------------------------------

def restarted_feed(clock: Clock, events: Iterable[Any], restart_ns: int) -> Iterator[Any]:
    """A live feed after a restart at ``restart_ns``: the bars published while the process was
    down arrive at once, then each new bar a second after its close."""
    for ev in events:
        if isinstance(ev, FeedItem):
            clock.now = max(restart_ns, ev.ts_ns + 1_000_000_000)
        yield ev


def test_a_restart_in_the_session_catches_up_on_the_backlog_without_trading_or_faults(
        world, make_live_loop):
    clock = Clock()
    ex, st = make_live_loop(clock)
    events = list(es_bars(80, world.replay()))
    es = [ev.ts_ns for ev in events if ev.bar.symbol == "ES"]
    restart = es[59]  # down for an hour: 60 bars published meanwhile
    stale_s = world.cfg.params.risk.stale_feed_seconds
    backlog = [ts for ts in es if restart - ts > stale_s * 1e9]
    ex.run(restarted_feed(clock, events, restart))
    assert ex.stats.faults == 0  # the backlog is no bad data: nothing for data_quality
    assert [c for c in causes(st.journal) if c[1] == "breaker.data_quality"] == []
    assert ex.stats.backlog == len(backlog) > 50
    assert st.journal.count("bar") == len(es)  # every bar journaled (and acked)
    # no decision on a backlog bar's price; the fresh ones trade
    decided = sorted({ts for ts, _, _ in ex.stats.decisions})
    assert decided
    assert decided[0] > backlog[-1]
    notes = [r.payload["message"] for r in st.journal.read("alert")
             if r.payload["code"] == "backlog"]
    assert len(notes) == 2
    assert notes[0].startswith("catching up on the bars published while the executor was down")
    assert notes[1].startswith(f"caught up: {len(backlog)} bars")


def test_a_stale_bar_after_the_catch_up_is_a_data_fault_again(world, make_live_loop):
    clock = Clock()
    ex, st = make_live_loop(clock)
    events = list(es_bars(30, world.replay()))  # 30 ES bars, each with its MNQ partner
    ex.run(live_bars(clock, events[:20]))  # 10 fresh bars: no catch-up to do
    late = int(world.cfg.params.risk.stale_feed_seconds * 10**9) + 10**9
    for ev in events[20:]:
        if isinstance(ev, FeedItem):
            clock.now = ev.ts_ns + late  # a publisher running behind
        ex.handle(ev)
    assert ex.stats.backlog == 0
    stale = [r for r in st.journal.read("alert") if r.payload["code"] == "data_stale"]
    assert len(stale) == 20  # each late ES bar is rejected as stale, as before the catch-up
    assert ex.stats.bars == 10
