"""State, snapshots and recovery: one fold over the journal, atomic snapshots, reconciliation."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, date, datetime, timedelta

import pytest

from executor.broker import Fill, Order, PaperBroker, client_id
from executor.journal import Journal, to_ns
from executor.recovery import recover
from executor.snapshots import Snapshot, SnapshotError, SnapshotStore
from executor.state import (
    Entry,
    LiveState,
    alert_entry,
    alias_entry,
    bar_entry,
    model_entry,
    order_entry,
    position_entry,
    risk_entry,
    state_entry,
)
from mia.errors import OperationalError
from mia.risk import Mode, RiskEngine
from tests.unit.executor.test_paper_broker import COSTS, bar
from tests.unit.risk._rules import rules

MULT = {"ES": 50.0, "MNQ": 2.0}
T0 = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "executor"


@pytest.fixture
def journal(home):
    j = Journal(home / "journal.sqlite")
    yield j
    j.close()


@pytest.fixture
def broker(home):
    b = PaperBroker(home / "paper.sqlite", COSTS, max_order_contracts=5)
    yield b
    b.close()


@pytest.fixture
def store(home):
    return SnapshotStore(home / "snapshots", keep=3)


def _order(i: int, q: int, book: str = "production", symbol: str = "ES") -> Order:
    ts = to_ns(T0 + timedelta(minutes=i))
    return Order(client_id(symbol, ts, book, 0), symbol, q, book, "policy", ts)


def _fill(o: Order, price: float, q: int | None = None, n: int = 0) -> Fill:
    return Fill(f"f-{o.client_id}-{n}", o.client_id, o.symbol, o.quantity if q is None else q,
                price, 2.25 * abs(o.quantity if q is None else q), o.created_ns + 60)


def _history(state: LiveState, journal: Journal) -> None:
    """A bit of everything the loop journals."""
    a, b, c = _order(0, 2), _order(0, -1, "canary"), _order(1, 3)
    for o in (a, b, c):
        state.commit(journal, order_entry(o))
    state.commit(journal, bar_entry("ES", a.created_ns, "ES:0"))
    state.commit(journal, Entry("decision", {"book": "production", "target": 0.5}, None))
    state.commit(journal, alert_entry("info", "x", "y"))
    state.commit_fill(journal, _fill(a, 4800.5))
    state.commit_fill(journal, _fill(b, 4801.0))
    state.commit_fill(journal, _fill(c, 4802.0, q=1, n=0))  # partly filled
    state.commit(journal, model_entry("production", "7"))
    state.commit(journal, alias_entry("canary", "8", canary_share=0.15, why="step up"))
    state.commit(journal, state_entry("STARTING", "RUNNING", "recovered"))
    state.commit(journal, bar_entry("ES", c.created_ns, "ES:1"))


def _replayed(journal: Journal) -> LiveState:
    s = LiveState(MULT)
    for rec in journal.read():
        s.replay(rec)
    return s


# --- the fold ------------------------------------------------------------------------------

def test_replaying_the_same_journal_twice_gives_the_live_state(journal):
    live = LiveState(MULT)
    _history(live, journal)
    once, twice = _replayed(journal), _replayed(journal)
    assert once.to_dict() == twice.to_dict() == live.to_dict()
    assert once.seq == live.seq == journal.last_seq


def test_fills_book_position_and_cash_per_book_and_close_their_orders(journal):
    s = LiveState(MULT)
    _history(s, journal)
    assert s.position("production", "ES") == 3
    assert s.position("canary", "ES") == -1
    assert s.net("ES") == 2
    assert s.books[("production", "ES")].cash == pytest.approx(
        -(2 * 4800.5 * 50 + 4.5) - (1 * 4802.0 * 50 + 2.25))
    assert list(s.open_orders) == [_order(1, 3).client_id]
    assert s.open_orders[_order(1, 3).client_id].filled == 1
    assert s.pending("production", "ES") == 2
    assert s.model_versions == {"production": "7"}
    assert s.canary_share == 0.15
    assert s.trading_state == "RUNNING"
    assert s.seen("ES", _order(1, 3).created_ns)
    assert not s.seen("ES", _order(2, 3).created_ns)


def test_a_fill_delivered_twice_is_booked_once(journal):
    s = LiveState(MULT)
    o = _order(0, 2)
    s.commit(journal, order_entry(o))
    assert s.commit_fill(journal, _fill(o, 4800.0)) is True
    before = s.to_dict()
    assert s.commit_fill(journal, _fill(o, 4800.0)) is False
    assert s.to_dict() == before
    assert journal.count("fill") == 1


def test_a_record_with_a_duplicate_key_is_ignored(journal):
    s = LiveState(MULT)
    assert s.commit(journal, bar_entry("ES", 5, "ES:5"))
    seq = s.seq
    assert not s.commit(journal, bar_entry("ES", 5, "redelivered"))
    assert (s.seq, journal.count("bar")) == (seq, 1)


def test_a_fill_for_an_unknown_order_alerts_and_books_to_production(journal):
    s = LiveState(MULT)
    s.commit_fill(journal, Fill("x", "manual-1", "ES", 1, 4800.0, 2.25, 1))
    assert s.position("production", "ES") == 1
    assert journal.last("alert").payload["code"] == "unknown_fill"


def test_an_unknown_fill_hands_its_journaled_alert_to_the_sink_once(journal):
    s, sent = LiveState(MULT), []

    def sink(level: str, code: str, message: str) -> None:
        sent.append((level, code, message))

    o = _order(0, 2)
    s.commit(journal, order_entry(o))
    s.commit_fill(journal, _fill(o, 4800.0), sink)  # a known order: no alert
    unknown = Fill("x", "manual-1", "ES", 1, 4800.0, 2.25, 1)
    s.commit_fill(journal, unknown, sink)
    s.commit_fill(journal, unknown, sink)  # delivered again: booked once, no second alert
    (record,) = journal.read("alert")
    assert sent == [(record.payload["level"], record.payload["code"],
                     record.payload["message"])]
    assert sent[0][:2] == ("critical", "unknown_fill")


def test_a_fill_without_a_multiplier_is_an_operational_error(journal):
    s = LiveState({"MNQ": 2.0})
    with pytest.raises(OperationalError, match="no multiplier"):
        s.commit_fill(journal, Fill("x", "c", "ES", 1, 4800.0, 2.25, 1))
    assert journal.count() == 0  # refused before anything reached the journal


# --- snapshots -----------------------------------------------------------------------------

def test_snapshot_then_replay_equals_replaying_the_whole_journal(journal, store):
    s = LiveState(MULT)
    s.commit(journal, order_entry(_order(0, 2)))
    store.write(s.snapshot(journal, taken_ns=1))
    _history(s, journal)
    loaded = store.latest(journal_id=journal.journal_id)
    resumed = LiveState.from_snapshot(loaded.snapshot, MULT)
    for rec in journal.read(since_seq=resumed.seq):
        resumed.replay(rec)
    assert resumed.to_dict() == _replayed(journal).to_dict() == s.to_dict()


def test_only_the_newest_snapshots_are_kept(journal, store):
    for i in range(6):
        store.write(Snapshot(journal_id="j", seq=i, taken_ns=100 + i, state={}))
    assert [store.load(p).seq for p in store.paths()] == [5, 4, 3]


def test_a_corrupt_or_truncated_snapshot_is_skipped_with_a_warning(store, caplog):
    for i in range(3):
        store.write(Snapshot(journal_id="j", seq=i, taken_ns=i, state={"i": i}))
    newest, middle, _ = store.paths()
    newest.write_bytes(newest.read_bytes()[:40])  # truncated by a full disk
    middle.write_text(middle.read_text().replace('"i": 1', '"i": 9'))  # altered
    with caplog.at_level(logging.WARNING, logger="executor.snapshots"):
        loaded = store.latest()
    assert loaded.snapshot.state == {"i": 0}
    assert len(loaded.skipped) == 2
    assert "truncated" in loaded.skipped[0]
    assert "checksum" in loaded.skipped[1]
    assert sum("falling back" in r.message for r in caplog.records) == 2
    with pytest.raises(SnapshotError, match="checksum"):
        store.load(middle)


def test_snapshots_of_another_journal_or_ahead_of_it_are_not_used(store):
    store.write(Snapshot(journal_id="old", seq=3, taken_ns=1, state={}))
    store.write(Snapshot(journal_id="j", seq=9, taken_ns=2, state={}))
    assert store.latest(journal_id="j", max_seq=5).snapshot is None
    assert store.latest(journal_id="j", max_seq=9).snapshot.seq == 9
    assert store.latest(max_seq=5).snapshot.journal_id == "old"


def test_a_temp_file_left_by_a_crash_is_never_loaded_and_is_removed(store):
    stale = store.directory / ".snapshot-123-4.tmp"
    stale.write_text("{half")
    assert store.latest().snapshot is None
    store.write(Snapshot(journal_id="j", seq=1, taken_ns=1, state={}))
    assert not stale.exists()


def test_snapshot_files_are_private_and_keep_at_least_one(store):
    path = store.write(Snapshot(journal_id="j", seq=1, taken_ns=1, state={}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    with pytest.raises(OperationalError, match="snapshots_kept"):
        SnapshotStore(store.directory, keep=0)


# --- recovery ------------------------------------------------------------------------------

def test_a_clean_start_is_a_recovery_from_nothing(journal, broker, store):
    rec = recover(journal, broker, store, multipliers=MULT)
    assert rec.loaded.path is None
    assert (rec.replayed, rec.drained, rec.resubmitted, rec.mismatches) == (0, 0, (), ())
    assert rec.state.to_dict() == LiveState(MULT).to_dict()


def test_recovery_books_a_fill_the_crash_kept_out_of_the_journal(journal, broker, store):
    s = LiveState(MULT)
    o = _order(0, 2)
    s.commit(journal, order_entry(o))
    broker.submit(o)
    broker.on_bar(bar(1))  # filled; the process dies before polling
    rec = recover(journal, broker, store, multipliers=MULT)
    assert rec.drained == 1
    assert rec.state.position("production", "ES") == 2
    assert rec.state.open_orders == {}
    assert rec.mismatches == ()


def test_recovery_sends_a_journaled_order_the_broker_never_got_once(journal, broker, store):
    s = LiveState(MULT)
    o = _order(0, -2, "canary")
    s.commit(journal, order_entry(o))  # the process dies before submit
    shadow = _order(0, 1, "shadow")
    s.commit(journal, order_entry(shadow))  # shadow orders never reach this broker
    rec = recover(journal, broker, store, multipliers=MULT)
    assert rec.resubmitted == (o.client_id,)
    again = recover(journal, broker, store, multipliers=MULT)
    assert again.resubmitted == ()  # it is working at the broker now
    broker.on_bar(bar(1))
    assert [(f.client_id, f.quantity) for f in broker.fills()] == [(o.client_id, -2)]


def test_recovery_finishes_a_journaled_cancel(journal, broker, store):
    s = LiveState(MULT)
    o = _order(0, 2)
    s.commit(journal, order_entry(o))
    broker.submit(o)
    s.commit(journal, order_entry(o, "cancel", "stop requested"))  # dies before cancel()
    rec = recover(journal, broker, store, multipliers=MULT)
    assert rec.unknown == ()
    broker.on_bar(bar(1))
    assert broker.fills() == []


def test_a_working_order_the_journal_does_not_know_raises_an_alert(journal, broker, store):
    broker.submit(_order(0, 1))
    rec = recover(journal, broker, store, multipliers=MULT)
    assert rec.unknown == (_order(0, 1).client_id,)
    assert journal.last("alert").payload["code"] == "unknown_order"


def test_reconcile_adopts_the_broker_position_and_reports_the_difference(journal, broker, store):
    s = LiveState(MULT)
    s.commit(journal, state_entry("STARTING", "RUNNING", "started"))
    o = _order(0, 2)
    s.commit(journal, order_entry(o))
    broker.submit(o)
    broker.on_bar(bar(1))
    broker.poll_fills()
    broker.poll_fills()  # a buggy loop confirmed the fill without journaling it
    rec = recover(journal, broker, store, multipliers=MULT)
    assert [tuple(m) for m in rec.mismatches] == [("ES", 0, 2)]
    assert rec.state.position("production", "ES") == 2
    assert rec.state.trading_state == "REDUCING"
    alert = journal.last("alert").payload
    assert alert["code"] == "reconcile_mismatch"
    assert "+0" in alert["message"]
    assert "+2" in alert["message"]
    # adopted durably: the next start agrees with the broker and stays REDUCING
    again = recover(journal, broker, store, multipliers=MULT)
    assert again.mismatches == ()
    assert again.state.trading_state == "REDUCING"
    assert journal.count("alert") == 1


def test_reconcile_never_lowers_a_halted_state(journal, broker, store):
    s = LiveState(MULT)
    s.commit(journal, state_entry("RUNNING", "HALTED", "kill switch"))
    s.commit(journal, position_entry("canary", "MNQ", 3, "test"))
    rec = recover(journal, broker, store, multipliers=MULT)
    assert [tuple(m) for m in rec.mismatches] == [("MNQ", 3, 0)]
    assert rec.state.net("MNQ") == 0
    assert rec.state.trading_state == "HALTED"


def test_a_kill_switch_journaled_after_the_last_snapshot_survives_a_crash(journal, broker,
                                                                          store):
    es = rules("ES")
    eng = RiskEngine(es, equity=100_000.0, trade_date=date(2024, 1, 2), now_ns=1)
    s = LiveState(MULT)
    s.commit(journal, bar_entry("ES", 1, "ES:1"))
    store.write(s.snapshot(journal, taken_ns=2, engines={"production/ES": eng}))
    event = eng.kill(by="ops", why="fat finger", now_ns=3)
    s.commit(journal, risk_entry("production", "ES", event, eng))
    rec = recover(journal, broker, store, multipliers=MULT)  # the process died before a snapshot
    assert rec.loaded.path is not None
    assert rec.replayed == 1
    restored = rec.state.restore_engines({"ES": es})["production/ES"]
    assert restored.mode is Mode.HALTED
    assert restored.state.held("kill_switch").by == "ops"
    with pytest.raises(OperationalError, match="no rules for ES"):
        rec.state.restore_engines({})


def test_recovery_twice_in_a_row_changes_nothing_the_second_time(journal, broker, store):
    live = LiveState(MULT)
    _history(live, journal)
    store.write(live.snapshot(journal, taken_ns=5))
    first = recover(journal, broker, store, multipliers=MULT)
    second = recover(journal, broker, store, multipliers=MULT)
    assert first.resubmitted == (_order(1, 3).client_id,)  # the broker never got it
    assert second.state.to_dict() == first.state.to_dict()
    assert (second.drained, second.resubmitted, second.unknown) == (0, (), ())
    assert second.mismatches == ()  # the first adopted the broker's positions durably


def test_the_state_modules_import_no_heavy_stack():
    import subprocess
    import sys

    heavy = ("torch", "mlflow", "airflow", "stable_baselines3", "sb3_contrib", "gymnasium",
             "sklearn", "great_expectations", "evidently", "shap", "dvc", "pandas")
    code = ("import sys, executor.journal, executor.snapshots, executor.state, "
            "executor.recovery, executor.broker; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
