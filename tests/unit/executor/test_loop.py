"""The live loop on real parts: the paper broker, the SQLite journal, real bundles over stored bars.

Every executor here comes from the ``make_executor`` fixture (conftest.py): replay mode (a bar's
ts is "now"), warmed on 01-02 .. 01-03, trading ES with MNQ as the cross symbol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import pytest

from executor.broker.base import OrderRejected
from executor.feeds.base import BadMessage, FeedItem
from executor.journal import Journal
from executor.recovery import recover
from executor.settings import RollbackSettings
from executor.slot import ModelSlot
from mia.risk import Mode

# rules that never roll the canary back: tests of routing alone
LOOSE = RollbackSettings(max_drawdown=1.0, min_trades=10**6, underperformance=1e9,
                         max_error_rate=1.0, max_latency_ms=1e6)


def es_bars(n: int, events: Iterable[Any]) -> Iterator[Any]:
    """The first ``n`` ES bars of a replay, each followed by its MNQ partner."""
    return islice(events, 2 * n)


def es_ts(world: Any, n: int) -> list[int]:
    """:return: the ts of the first ``n`` ES bars traded."""
    return [ev.ts_ns for ev in es_bars(n, world.replay()) if ev.bar.symbol == "ES"]


def submits(journal: Journal, since_seq: int = 0) -> list[dict[str, Any]]:
    return [r.payload for r in journal.read("order", since_seq) if r.payload["action"] == "submit"]


def until_holding(ex: Any, events: Iterator[Any], book: str) -> int:
    """Feed ``events`` until ``book`` holds a filled position with nothing pending (the rest
    stay in the iterator); :return: that position (0 if it never came)."""
    for ev in events:
        ex.handle(ev)
        if ev.bar.symbol == "MNQ" and ex.state.position(book, "ES") != 0 \
                and not ex.state.pending(book, "ES"):
            break
    return int(ex.state.position(book, "ES"))


def production_targets(stats: Any, book: str = "production") -> dict[int, int]:
    return {ts: target for ts, b, target in stats.decisions if b == book}


def replace_es_bar(events: Iterable[Any], k: int,
                   bad: Callable[[FeedItem], FeedItem | None]) -> Iterator[Any]:
    """The events with the ``k``-th ES bar replaced by ``bad(item)`` (``None``: dropped)."""
    n = 0
    for ev in events:
        if isinstance(ev, FeedItem) and ev.bar.symbol == "ES":
            n += 1
            if n == k:
                ev = bad(ev)
                if ev is None:
                    continue
        yield ev


def nan_close(item: FeedItem) -> FeedItem:
    return item._replace(bar=item.bar._replace(close=math.nan))


def zero_open(item: FeedItem) -> FeedItem:
    return item._replace(bar=item.bar._replace(open=0.0))


def tenfold(item: FeedItem) -> FeedItem:
    b = item.bar  # a consistent bar (high >= open, close >= low), ten times the price
    return item._replace(bar=b._replace(open=10 * b.open, high=10 * b.high, low=10 * b.low,
                                        close=10 * b.close))


BAD_BARS = {"non_finite": nan_close, "bad_price": zero_open, "jump": tenfold}


# --- bad bars ------------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(BAD_BARS))
def test_a_bad_bar_places_no_order_counts_a_fault_and_changes_no_later_decision(
        world, make_executor, tmp_path, code):
    k = 300
    ex, st = make_executor(state_dir=tmp_path / "bad")
    got = ex.run(replace_es_bar(es_bars(400, world.replay()), k, BAD_BARS[code]))
    clean, _ = make_executor(state_dir=tmp_path / "clean")
    want = clean.run(replace_es_bar(es_bars(400, world.replay()), k, lambda _: None))
    bad_ts = es_ts(world, 400)[k - 1]
    assert got.faults == 1
    assert bad_ts not in production_targets(got)  # no decision on it ...
    assert not [o for o in submits(st.journal) if o["created_ns"] == bad_ts]  # ... no order
    alerts = [r.payload for r in st.journal.read("alert")]
    assert [a["code"] for a in alerts] == [f"data_{code}"]
    assert st.journal.get("bar", f"ES:{bad_ts}") is not None  # journaled: never redone
    # the bar never reached the features, the broker or the risk state: the run decides, bar
    # for bar, what a run that never saw it decides
    assert production_targets(got) == production_targets(want)
    assert any(production_targets(got).values()), "the window must trade to prove anything"
    assert ex.engines["production/ES"].mode is Mode.RUNNING  # one fault trips nothing


def test_an_out_of_order_bar_places_no_order_and_changes_no_decision(world, make_executor,
                                                                   tmp_path):
    ex, st = make_executor(state_dir=tmp_path / "ooo")
    got = ex.run(out_of_order(es_bars(400, world.replay()), at=300, back=5))
    clean, _ = make_executor(state_dir=tmp_path / "clean")
    want = clean.run(es_bars(400, world.replay()))
    assert production_targets(got) == production_targets(want)
    assert len(submits(st.journal)) == want.orders


def out_of_order(events: Iterable[Any], *, at: int, back: int) -> Iterator[Any]:
    """After the ``at``-th ES bar (and its MNQ partner), the ES bar ``back`` bars earlier again,
    its close moved: a late bar, not a redelivery."""
    seen: list[FeedItem] = []
    for ev in events:
        yield ev
        if isinstance(ev, FeedItem) and ev.bar.symbol == "ES":
            seen.append(ev)
        elif isinstance(ev, FeedItem) and len(seen) == at:
            old = seen[-1 - back]
            yield old._replace(bar=old.bar._replace(close=old.bar.close + 0.25,
                                                    high=max(old.bar.high,
                                                             old.bar.close + 0.25)),
                               source_id="late")
            seen.append(old)


def test_an_out_of_order_bar_counts_a_fault(world, make_executor, tmp_path):
    ex, st = make_executor()
    stats = ex.run(out_of_order(es_bars(400, world.replay()), at=300, back=5))
    assert stats.faults == 1
    assert [r.payload["code"] for r in st.journal.read("alert")] == ["data_non_monotonic"]


def test_a_bar_delivered_again_is_acked_and_skipped_silently(world, make_executor):
    ex, st = make_executor()
    events = list(es_bars(300, world.replay()))
    for ev in events:
        ex.handle(ev)
    before = (ex.stats.bars, ex.stats.faults, ex.stats.orders, st.journal.last_seq)
    acked: list[tuple[str, int]] = []
    # the last three minutes again (journaled, their acks lost in a crash): older than the
    # newest bar, but the same messages
    for ev in events[-6:]:
        ex.handle(ev._replace(ack=lambda ev=ev: acked.append((ev.bar.symbol, ev.ts_ns))))
    assert acked == [(ev.bar.symbol, ev.ts_ns) for ev in events[-6:]]
    assert (ex.stats.bars, ex.stats.faults, ex.stats.orders, st.journal.last_seq) == before


def test_after_a_restart_a_bar_older_than_the_journaled_ones_counts_a_fault(world, make_executor,
                                                                           tmp_path):
    k = 290
    ex, st = make_executor(state_dir=tmp_path / "s")
    dropped: list[FeedItem] = []

    def drop(item: FeedItem) -> None:
        dropped.append(item)

    events = list(es_bars(300, world.replay()))
    for ev in replace_es_bar(events, k, drop):
        ex.handle(ev)
    st.journal.close()
    st.broker.close()
    again, st = make_executor(state_dir=tmp_path / "s")
    late = dropped[0]  # never journaled, ten bars older than the newest: it arrives now
    partner = next(ev for ev in events if ev.bar.symbol == "MNQ" and ev.ts_ns == late.ts_ns)
    again.handle(late)
    again.handle(partner)
    assert again.stats.faults == 1
    assert again.stats.bars == 0
    assert [r.payload["code"] for r in st.journal.read("alert")] == ["data_non_monotonic"]


def test_a_bad_feed_message_counts_a_fault(world, make_executor):
    ex, _ = make_executor()
    ex.handle(BadMessage("1-0", "not_a_number", "close='abc'", "ES"))
    assert ex.stats.faults == 1
    assert ex.stats.orders == 0


def holding_bar(probe: Any, events: list[Any]) -> int:
    """:return: the 1-based index of the first ES bar after which production is exposed (a
    position and no order pending that closes it), found by running ``probe`` on ``events``."""
    k = 0
    for ev in events:
        probe.handle(ev)
        k += ev.bar.symbol == "ES"
        st = probe.state
        if ev.bar.symbol == "MNQ" and st.position("production", "ES") + st.pending(
                "production", "ES") != 0:
            assert k + 5 <= len(events) // 2, "no exposure early enough in the window"
            return k
    raise AssertionError("production never held a position in the window")


def test_three_bad_bars_in_a_row_trip_the_data_quality_breaker_and_flatten(world, make_executor,
                                                                           tmp_path):
    ex, st = make_executor(state_dir=tmp_path / "run")
    events = list(es_bars(600, world.replay()))
    held = holding_bar(make_executor(state_dir=tmp_path / "probe")[0], events)
    bad: Iterable[Any] = events
    for k in (held + 1, held + 2, held + 3):
        bad = replace_es_bar(bad, k, nan_close)
    stats = ex.run(bad)
    assert stats.faults == 3
    assert ex.engines["production/ES"].mode is Mode.HALTED
    trips = [r for r in st.journal.read("risk_event")
             if r.payload["event"]["cause"] == "breaker.data_quality"]
    assert [r.payload["event"]["to"] for r in trips] == ["HALTED"]
    assert "nan" in trips[0].payload["event"]["why"] or "non_finite" in trips[0].payload[
        "event"]["why"]
    after = submits(st.journal, since_seq=trips[0].seq)
    assert after
    assert all(o["reason"] == "flatten" for o in after)
    assert ex.state.position("production", "ES") == 0
    assert st.broker.positions() == {}


def test_the_trading_state_reads_halted_as_soon_as_the_data_quality_breaker_trips(
        world, make_executor, tmp_path):
    events = list(es_bars(600, world.replay()))
    held = holding_bar(make_executor(state_dir=tmp_path / "probe")[0], events)
    ex, st = make_executor(state_dir=tmp_path / "run")
    bad: Iterable[Any] = events
    for k in (held + 1, held + 2, held + 3):
        bad = replace_es_bar(bad, k, nan_close)
    n = 0
    for ev in bad:
        ex.handle(ev)
        n += ev.bar.symbol == "MNQ"
        if n == held + 3:  # the third bad bar and its partner: nothing good after them yet
            break
    assert ex.engines["production/ES"].mode is Mode.HALTED
    assert ex.phase == "HALTED"
    assert st.journal.last("state").payload["to"] == "HALTED"


# --- kill switch ---------------------------------------------------------------------------

def kill_when_holding(events: Iterable[Any], ex: Any, kill: Any) -> Iterator[Any]:
    for ev in events:
        yield ev
        if not kill.exists() and ex.state.position("production", "ES") != 0:
            kill.write_text("test")


def test_kill_file_halts_flattens_and_no_order_follows(world, make_executor, tmp_path):
    kill = tmp_path / "KILL"
    ex, st = make_executor(kill_file=kill)
    ex.run(kill_when_holding(es_bars(900, world.replay()), ex, kill))
    events = [r for r in st.journal.read("risk_event")
              if r.payload["event"]["cause"] == "kill_switch"]
    assert len(events) == 1  # latched once, not re-engaged on every tick
    assert events[0].payload["event"]["to"] == "HALTED"
    assert f"{kill} exists" in events[0].payload["event"]["why"]
    after = submits(st.journal, since_seq=events[0].seq)
    assert after, "the kill came while holding a position: a flatten must follow"
    assert all(o["reason"] == "flatten" or o["reason"].startswith(("stop", "take_profit"))
               for o in after)
    assert ex.state.position("production", "ES") == 0
    assert st.broker.positions() == {}
    states = [r.payload["to"] for r in st.journal.read("state")]
    assert "HALTED" in states
    held_ts = {ts for ts, target in production_targets(ex.stats).items()
               if ts > after[-1]["created_ns"]}
    assert held_ts
    assert all(production_targets(ex.stats)[t] == 0 for t in held_ts)


def test_kill_switch_survives_a_restart_until_a_person_releases_it(world, make_executor,
                                                                 tmp_path):
    kill = tmp_path / "KILL"
    ex, st = make_executor(kill_file=kill, state_dir=tmp_path / "state")
    ex.run(kill_when_holding(es_bars(900, world.replay()), ex, kill))
    kill.unlink()  # removing the file does not resume: the hold is latched in the journal
    st.journal.close()
    st.broker.close()
    again, _ = make_executor(state_dir=tmp_path / "state", warm=False)
    assert again.engines["production/ES"].mode is Mode.HALTED
    holds = [h.cause for h in again.engines["production/ES"].state.holds]
    assert "kill_switch" in holds


# --- durability ------------------------------------------------------------------------------

def with_acks(events: Iterable[Any], path: Any, log: list[tuple[str, int, bool, int]]
              ) -> Iterator[Any]:
    """Every bar carries an ack that records, from another connection, what the journal held
    at the moment of the ack: the traded (ES) bar of its minute, and that bar's orders."""
    reader = Journal(path, readonly=True)

    def ack_of(item: FeedItem) -> Callable[[], None]:
        def ack() -> None:
            bar = reader.get("bar", f"ES:{item.ts_ns}") is not None
            orders = sum(1 for r in reader.read("order") if r.payload["created_ns"] == item.ts_ns)
            log.append((item.bar.symbol, item.ts_ns, bar, orders))
        return ack

    for ev in events:
        yield ev._replace(ack=ack_of(ev)) if isinstance(ev, FeedItem) else ev
    reader.close()


def test_a_bar_is_acked_once_and_only_after_it_and_its_orders_are_journaled(world,
                                                                          make_executor):
    ex, st = make_executor()
    log: list[tuple[str, int, bool, int]] = []
    stats = ex.run(with_acks(es_bars(500, world.replay()), st.journal.path, log))
    es = [entry for entry in log if entry[0] == "ES"]
    assert [ts for _, ts, _, _ in es] == sorted(production_targets(stats))
    assert all(bar for _, _, bar, _ in es)
    orders_by_bar: dict[int, int] = {}
    for o in submits(st.journal):
        orders_by_bar[o["created_ns"]] = orders_by_bar.get(o["created_ns"], 0) + 1
    assert {ts: n for _, ts, _, n in es if n} == orders_by_bar
    assert stats.orders > 10


def test_a_cross_symbol_bar_is_acked_only_after_the_bar_it_completes_is_journaled(
        world, make_executor):
    ex, st = make_executor()
    log: list[tuple[str, int, bool, int]] = []
    ex.run(with_acks(es_bars(50, world.replay()), st.journal.path, log))
    mnq = [entry for entry in log if entry[0] == "MNQ"]
    assert len(mnq) == 50
    assert all(es_journaled for _, _, es_journaled, _ in mnq)


def test_a_cross_symbol_bar_without_its_traded_bar_is_acked_after_the_next_one_is_journaled(
        world, make_executor):
    ex, st = make_executor()
    log: list[tuple[str, int, int]] = []
    reader = Journal(st.journal.path, readonly=True)

    def ack_of(item: FeedItem) -> Callable[[], None]:
        def ack() -> None:
            newest = reader.last("bar")
            log.append((item.bar.symbol, item.ts_ns, -1 if newest is None else
                        int(newest.payload["ts_ns"])))
        return ack

    events = [ev._replace(ack=ack_of(ev))
              for ev in replace_es_bar(es_bars(50, world.replay()), 20, lambda _: None)]
    lone = [ev for ev in events if ev.bar.symbol == "MNQ"][19]  # its ES bar never came
    ex.run(events)
    reader.close()
    mnq = [(ts, newest) for sym, ts, newest in log if sym == "MNQ"]
    assert [ts for ts, _ in mnq] == [ev.ts_ns for ev in events if ev.bar.symbol == "MNQ"]
    assert all(newest >= ts for ts, newest in mnq)  # never before a traded bar at or after it
    assert dict(mnq)[lone.ts_ns] > lone.ts_ns


def test_graceful_stop_cancels_working_orders_and_takes_a_final_snapshot(world, make_executor):
    ex, st = make_executor()
    events = es_bars(900, world.replay())

    def stop_while_working() -> Iterator[Any]:
        for ev in events:
            yield ev
            if ev.bar.symbol == "MNQ" and st.broker.working():
                ex.request_stop()
                return

    stats = ex.run(stop_while_working())
    assert stats.bars < 900  # stopped early
    assert st.broker.working() == []
    cancels = [r.payload for r in st.journal.read("order") if r.payload["action"] == "cancel"]
    assert cancels
    assert all(c["why"] == "executor stopping" for c in cancels)
    assert ex.state.open_orders == {}
    assert ex.phase == "STOPPING"
    assert st.snapshots.paths(), "a graceful stop leaves a final snapshot"
    assert st.snapshots.load(st.snapshots.paths()[0]).seq == st.journal.last_seq


def test_shutdown_with_flatten_sends_the_order_that_closes_each_book(world, make_executor):
    ex, st = make_executor()
    for ev in es_bars(900, world.replay()):
        ex.handle(ev)
        if ev.bar.symbol == "MNQ" and ex.state.position("production", "ES") != 0 \
                and st.broker.working():
            break
    held = ex.state.position("production", "ES")
    assert held != 0
    ex.shutdown(flatten=True)
    working = st.broker.working()
    assert [(o.quantity, o.reason, o.book) for o in working] == [(-held, "flatten on stop",
                                                                  "production")]
    # the flatten fills at the next bar's open: a restart trades it, so nothing is lost
    assert ex.state.pending("production", "ES") == -held


# --- canary ----------------------------------------------------------------------------------

def test_canary_rollback_clears_the_canary_and_production_trades_on(world, make_executor,
                                                                    tmp_path):
    trip = RollbackSettings(max_drawdown=1e-9, min_trades=10**6, underperformance=1e9,
                            max_error_rate=1.0, max_latency_ms=1e6)
    ex, st = make_executor(canary=True, share=0.5, rollback=trip, state_dir=tmp_path / "a")
    stats = ex.run(es_bars(900, world.replay()))
    changes = [r for r in st.journal.read("alias_change")]
    assert len(changes) == 1
    p = changes[0].payload
    assert (p["alias"], p["version"], p["canary_share"]) == ("canary", None, 0.0)
    assert "rollback.max_drawdown" in p["why"]
    assert [r.payload["code"] for r in st.journal.read("alert")
            if r.payload["level"] == "critical"] == ["canary_rollback"]
    assert ex.slots["canary"] is None
    assert ex.routing.share == 0.0
    # judged after its bar was journaled: the canary decided up to that bar, never after
    rolled_at = max(r.payload["ts_ns"] for r in st.journal.read("bar") if r.seq < changes[0].seq)
    assert max(t for t, b, _ in stats.decisions if b == "canary") == rolled_at
    assert rolled_at < max(production_targets(stats))
    assert not [o for o in submits(st.journal, since_seq=changes[0].seq)
                if o["book"] == "canary"]  # the only canary order a rollback sends precedes it
    # production: every bar decided, none of its orders touched by the rollback, and the same
    # decisions as production alone (its size cap is max_contracts at either capital)
    alone, _ = make_executor(state_dir=tmp_path / "alone")
    want = alone.run(es_bars(900, world.replay()))
    assert production_targets(stats) == production_targets(want)
    assert not [o for o in submits(st.journal) if o["book"] == "production"
                and o["reason"] == "canary rollback"]


def test_a_rollback_closes_the_canary_position_with_one_order_and_the_canary_stops(
        world, make_executor):
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE)
    events = iter(es_bars(900, world.replay()))
    held = until_holding(ex, events, "canary")
    assert held != 0
    production = ex.state.position("production", "ES")
    seq = st.journal.last_seq
    ex.rollback("operator: post-mortem of v2")
    for ev in events:
        ex.handle(ev)
    canary = [o for o in submits(st.journal, since_seq=seq) if o["book"] == "canary"]
    assert [(o["quantity"], o["reason"]) for o in canary] == [(-held, "canary rollback")]
    assert ex.state.position("canary", "ES") == 0
    assert ex.state.position("production", "ES") != production or any(
        o["book"] == "production" for o in submits(st.journal, since_seq=seq))


def test_a_rollback_while_a_canary_entry_is_working_leaves_the_canary_book_flat(
        world, make_executor):
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE)
    events = iter(es_bars(900, world.replay()))
    for ev in events:
        ex.handle(ev)
        if ev.bar.symbol == "MNQ" and ex.state.pending("canary", "ES") != 0:
            break
    assert ex.state.pending("canary", "ES") != 0
    ex.rollback("operator: post-mortem of v2")
    for ev in events:
        ex.handle(ev)
    assert ex.state.position("canary", "ES") + ex.state.pending("canary", "ES") == 0


def test_a_canary_fill_that_arrives_after_the_rollback_is_closed(world, make_executor,
                                                                 monkeypatch):
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE)
    events = iter(es_bars(900, world.replay()))
    for ev in events:
        ex.handle(ev)
        if ev.bar.symbol == "MNQ" and ex.state.pending("canary", "ES") != 0:
            break
    working = ex.state.pending("canary", "ES")
    assert working != 0
    entries = {cid for cid, o in ex.state.open_orders.items() if o.order.book == "canary"}

    def too_late(cid: str) -> None:  # the broker filled it while the cancel was on its way
        raise OrderRejected(f"order {cid} is filled already")

    with monkeypatch.context() as m:
        m.setattr(st.broker, "cancel", too_late)
        ex.rollback("operator: post-mortem of v2")
    assert "cancel_rejected" in [r.payload["code"] for r in st.journal.read("alert")]
    seq = st.journal.last_seq
    for ev in events:
        ex.handle(ev)
    late = [r.payload for r in st.journal.read("fill", seq) if r.payload["client_id"] in entries]
    assert sum(f["quantity"] for f in late) == working  # filled after the rollback ...
    assert {f["book"] for f in late} == {"canary"}
    closes = [o for o in submits(st.journal, seq) if o["book"] == "canary"]
    assert [(o["quantity"], o["reason"]) for o in closes] == [
        (-working, "flatten: no canary trades this book")]  # ... and was closed at once
    assert ex.state.position("canary", "ES") == ex.state.pending("canary", "ES") == 0


@pytest.mark.slow
def test_split_routing_trades_the_canary_book_as_an_account_of_its_share(world, make_executor,
                                                                         tmp_path):
    share = 0.2
    ex, st = make_executor(canary=True, share=share, rollback=LOOSE, state_dir=tmp_path / "a")
    split = ex.run(es_bars(900, world.replay()))
    capital = world.cfg.params.env.initial_equity
    track = ex.engines["canary/ES"].track
    assert track.peak >= capital * share - 1e-6
    assert track.day_start == pytest.approx(
        capital * share, rel=0.01)
    # the canary bundle trading alone with the canary's capital decides exactly the same
    solo = {"production": ModelSlot.load(world.canary, "2"), "canary": None}
    small, _ = make_executor(slots=solo, capital=capital * share, state_dir=tmp_path / "b")
    want = small.run(es_bars(900, world.replay()))
    assert production_targets(split, "canary") == production_targets(want)
    assert any(production_targets(want).values()), "the canary must trade to prove anything"
    # ... and not what it decides with the whole account (the share really sizes it)
    whole = {"production": ModelSlot.load(world.canary, "2"), "canary": None}
    big, _ = make_executor(slots=whole, state_dir=tmp_path / "c")
    assert production_targets(split, "canary") != production_targets(
        big.run(es_bars(900, world.replay())))
    # fills are booked per book and netted at the broker
    net = ex.state.position("production", "ES") + ex.state.position("canary", "ES")
    assert st.broker.positions().get("ES", 0) == net


def test_recovery_after_a_run_rebuilds_the_books_the_loop_had(world, make_executor, tmp_path):
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE, state_dir=tmp_path / "s")
    ex.run(es_bars(700, world.replay()))
    books = dict(ex.state.books)
    st.journal.close()
    st.broker.close()
    _, again = make_executor(state_dir=tmp_path / "s", warm=False)
    assert again.recovered.state.books == books
    assert again.recovered.mismatches == ()


def test_recover_is_the_same_path_for_a_fresh_directory(world, make_executor, tmp_path):
    _, st = make_executor(warm=False, state_dir=tmp_path / "fresh")
    again = recover(st.journal, st.broker, st.snapshots, multipliers={"ES": 50.0, "MNQ": 2.0})
    assert again.state.books == {}
    assert again.replayed == 0


# --- the live wiring (executor.app.live, from executor.yaml) ---------------------------------

def test_a_live_start_warms_the_features_from_history_before_the_first_bar(make_live):
    ex, settings = make_live(warmup_days=2)
    assert settings.warmup_days == 2
    assert ex.slots["production"].ready


def test_a_live_executor_on_the_replay_feed_trades_the_stored_bars(world, make_live):
    ex, _ = make_live()
    assert ex.replay  # judged by their own ts: a wall clock would call every stored bar stale
    stats = ex.run(es_bars(400, world.replay()))
    assert stats.faults == 0
    assert stats.orders > 0


def test_a_graceful_stop_with_flatten_on_stop_closes_the_positions(world, make_live):
    ex, settings = make_live(flatten_on_stop=True)
    assert settings.flatten_on_stop

    def stop_when_exposed() -> Iterator[Any]:
        for ev in es_bars(900, world.replay()):
            yield ev
            if ev.bar.symbol == "MNQ" and ex.state.position("production", "ES") != 0 \
                    and not ex.state.pending("production", "ES"):
                ex.request_stop()

    ex.run(stop_when_exposed())
    held = ex.state.position("production", "ES")
    assert held != 0, "the stop came while holding a position"
    assert ex.state.pending("production", "ES") == -held
