"""Journal disk full -> trading halts, nothing is corrupt, a restart recovers (issue 8, item 3).

The loop (``tests/e2e/chaos_support.py``) runs until a journal write fails, either on a real
disk budget (``Journal(max_bytes=...)``: SQLite's ``max_page_count``, which fails exactly as a
full disk does, "database or disk is full") or with that error injected into the first write of
a chosen record kind after 150 bars (an order's, a fill's, a bar's). Then, as
``python -m executor`` would (``mia.exits.run_guarded``): exit 2 with the one-line reason, no
order sent after the failure nor any order sent that the journal lacks, the state latched
HALTED; a restart recovers (SQLite's integrity_check ok, journal positions = the fills = the
broker's) and trades the rest of the session, every bar journaled once.

Found here and fixed in ``executor/state.py``: after a restart the risk engine's trade record
lacked the fills journaled after its last risk state, so the gate refused every decision of the
book and no stop guarded it (``risk_input``); and an order working at the crash that opened or
flipped a trade lost its entry plan, so its fill stopped the loop (RiskInputError).
Figures: ``tests/benchmarks/results/chaos.json``, case ``journal_disk_full``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from executor.journal import JournalError
from executor.rows import ts_ns
from executor.state import alert_entry
from mia.exits import run_guarded
from tests.e2e import chaos_support as cs

BARS = 700
FAIL_AFTER = 150  # bars journaled before the disk fills
FULL = "database or disk is full"  # SQLite's SQLITE_FULL message


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cs.tiny_bundle(tmp_path_factory.mktemp("chaos-journal") / "bundle", cs.params())


@pytest.fixture(scope="module")
def bars() -> list[Any]:
    return cs.market(cs.WARM_BARS + BARS, seed=21)


class FullDisk:
    """The journal's SQLite connection, whose first insert of ``kind`` after ``after`` bars
    fails as on a full disk (every later write too: the disk stays full)."""

    def __init__(self, db: sqlite3.Connection, kind: str, after: int) -> None:
        self._db, self.kind, self.after = db, kind, after
        self.bars = 0
        self.full = False
        self.failed: list[str] = []

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        if sql.startswith("INSERT OR IGNORE INTO records"):
            kind = args[0]
            if not self.full and self.bars >= self.after and kind == self.kind:
                self.full = True
            if self.full:
                self.failed.append(kind)
                raise sqlite3.OperationalError(FULL)
            if kind == "bar":
                self.bars += 1
        return self._db.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _engines_hold_their_books(rig: cs.Rig) -> list[str]:
    out = []
    for key, engine in rig.executor.engines.items():
        book, sym = key.split("/")
        held = engine.trade.side * engine.trade.qty if engine.trade is not None else 0
        if held != rig.executor.state.position(book, sym):
            out.append(f"{key}: trade record {held:+d}, book "
                       f"{rig.executor.state.position(book, sym):+d}")
    return out


def _fill_up(tmp: Path, bundle: Path, bars: list[Any], how: str, capsys: Any) -> dict[str, Any]:
    """Run until the disk is full, check the stop, restart, finish. :return: the figures."""
    p = cs.params()
    state = tmp / "state"
    if how == "budget":
        probe = cs.build_rig(state, p, bundle, bars)  # the empty journal's size, then a budget
        probe.close()
        rig = cs.build_rig(state, p, bundle, bars, max_bytes=(state / "journal.sqlite")
                           .stat().st_size + 40 * 4096)
        disk = None
    else:
        rig = cs.build_rig(state, p, bundle, bars)
        disk = FullDisk(rig.journal._db, how, FAIL_AFTER)
        rig.journal._db = disk  # type: ignore[assignment]
    capsys.readouterr()
    rc = run_guarded(lambda: (rig.executor.run(cs.rest(rig, bars)), 0)[1])
    err = capsys.readouterr().err
    assert rc == 2  # "something to fix" (docs/executor.md, exit codes): systemd retries 5 times
    assert FULL in err
    assert "Trading halts" in err
    assert len(err.strip().splitlines()) == 1
    if disk is not None:
        assert disk.failed[0] == how
    st = rig.executor.state
    assert st.trading_state == "HALTED"
    assert st.journal_failed is not None
    assert FULL in st.journal_failed
    with pytest.raises(JournalError, match="a journal write failed before"):
        st.commit(rig.journal, alert_entry("info", "probe", "nothing is written any more"))
    broker_orders = [o.client_id for o in rig.broker.orders()]
    broker_fills = len(rig.broker.fills())
    halted_at = st.last_bar_ns["ES"]
    rig.close()  # the process is gone: no graceful stop, no final snapshot

    a = cs.audit(state)
    assert a["integrity"] == "ok"
    # every order sent is journaled, and none was sent after the failure (journal first)
    assert [o["client_id"] for o in a["orders"]] == broker_orders
    missing_fills = broker_fills - len(a["fills"])
    assert missing_fills == (1 if how == "fill" else 0)  # the fill whose record failed

    again = cs.build_rig(state, p, bundle, bars)
    assert again.recovered.mismatches == ()
    assert again.recovered.drained == missing_fills
    assert cs.inconsistencies(cs.audit(state)) == []
    assert _engines_hold_their_books(again) == []
    got = again.executor.run(cs.rest(again, bars))
    again.close()
    a = cs.audit(state)
    assert cs.inconsistencies(a) == []
    assert a["bars"] == [f"ES:{ts_ns(b)}" for b in bars[cs.WARM_BARS:]]
    assert [r for r in a["alerts"] if r["code"] == "risk_input"] == []
    assert got.bars > 0
    assert got.orders > 0
    return {"bars": BARS, "bars_before_full": sum(1 for k in a["bars"]
                                                  if int(k.split(":")[1]) <= halted_at),
            "failed_record": disk.failed[0] if disk is not None else "budget",
            "exit_code": rc, "orders_before": len(broker_orders),
            "fills_recovered_from_broker": missing_fills,
            "orders": len(a["orders"]), "fills": len(a["fills"]), "lost": 0,
            "duplicated": len(a["bars"]) - len(set(a["bars"])),
            "integrity": a["integrity"]}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["budget", "order", "fill", "bar"])
def test_a_full_journal_disk_halts_sends_nothing_more_and_a_restart_recovers(
        how, bundle, bars, tmp_path, capsys):
    figures = _fill_up(tmp_path, bundle, bars, how, capsys)
    cs.record_case(f"journal_disk_full_{how}", figures)


def test_a_restart_after_a_crash_gives_the_risk_engine_the_fills_after_its_last_state(
        bundle, bars, tmp_path):
    p = cs.params()
    state = tmp_path / "state"
    rig = cs.build_rig(state, p, bundle, bars, snapshot_ns=10**18)  # no snapshot before the crash
    items = cs.rest(rig, bars)
    for item in items[:300]:
        rig.executor.handle(item)
    assert any(rig.executor.state.books.values())
    live_engines = {k: (e.trade.side * e.trade.qty if e.trade else 0)
                    for k, e in rig.executor.engines.items()}
    rig.close()  # kill -9: no stop, no snapshot
    again = cs.build_rig(state, p, bundle, bars)
    assert _engines_hold_their_books(again) == []
    assert {k: (e.trade.side * e.trade.qty if e.trade else 0)
            for k, e in again.executor.engines.items()} == live_engines
    got = again.executor.run(cs.rest(again, bars))
    again.close()
    a = cs.audit(state)
    assert [r for r in a["alerts"] if r["code"] == "risk_input"] == []
    assert got.orders > 0
    assert cs.inconsistencies(a) == []
