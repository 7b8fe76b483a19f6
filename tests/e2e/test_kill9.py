"""kill -9 at random points, 50 times: no fill lost, no order or fill duplicated, same positions.

A driver process (tests/e2e/kill9_driver.py: seeded bars -> deterministic targets -> orders ->
PaperBroker -> fills -> journal, snapshots every few bars, feed acked after the journal) is
SIGKILLed after seeded random delays, which land anywhere: in the interpreter's start, in
recovery, between a fill and its journal record, between an order's record and its submit,
mid-snapshot (the figures count how often recovery booked a missed fill or resent an order).
Each restart recovers through ``executor.recovery.recover``. At the end the
journal and the broker's own state file must agree with each other and with an uninterrupted
reference run of the same bars, order for order and fill for fill. Figures go to
tests/benchmarks/results/chaos_kill9.json.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from executor.broker import PaperBroker
from executor.journal import Journal
from executor.state import LiveState
from tests.benchmarks.common import record
from tests.e2e.kill9_driver import SYMBOLS, costs

REPO = Path(__file__).resolve().parents[2]
KILLS = 50
BARS = 4000  # per symbol; an uninterrupted run takes several seconds, longer than 50 kills need
SEED = 7


def _start(state_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.kill9_driver", "--dir", str(state_dir),
             "--bars", str(BARS), "--seed", str(SEED), "--snapshot-every", "25"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the line the kill cut short
    return out


def _run_to_end(state_dir: Path, log: Path) -> None:
    proc = _start(state_dir, log)
    rc = proc.wait(timeout=600)
    assert rc == 0, log.read_text()[-3000:]


def _books(state_dir: Path) -> dict[str, object]:
    """Everything both sides recorded: the broker's orders and fills, the journal's."""
    broker = PaperBroker(state_dir / "broker.sqlite", costs(), max_order_contracts=6)
    journal = Journal(state_dir / "journal.sqlite", readonly=True)
    try:
        state = LiveState(SYMBOLS)
        for rec in journal.read():
            state.replay(rec)
        return {
            "broker_orders": [(o.client_id, o.symbol, o.quantity, o.book) for o in broker.orders()],
            "broker_fills": [tuple(f) for f in broker.fills()],
            "positions": broker.positions(),
            "journal_orders": [(r.payload["client_id"], r.payload["symbol"],
                                r.payload["quantity"], r.payload["book"])
                               for r in journal.read("order")
                               if r.payload["action"] == "submit"],
            "journal_fills": [tuple(r.payload[k] for k in ("fill_id", "client_id", "symbol",
                                                           "quantity", "price", "fee", "ts_ns"))
                              for r in journal.read("fill")],
            "books": {f"{b}/{s}": p for (b, s), p in sorted(state.books.items())},
            "bars": journal.count("bar"),
            "alerts": [r.payload for r in journal.read("alert")],
        }
    finally:
        broker.close()
        journal.close()


@pytest.mark.slow
def test_kill9_fifty_times_loses_no_fill_duplicates_nothing_and_ends_as_the_reference(tmp_path):
    ref_dir, crash_dir = tmp_path / "reference", tmp_path / "crashed"
    t = time.perf_counter()
    _run_to_end(ref_dir, tmp_path / "reference.log")
    reference_seconds = time.perf_counter() - t

    rng = np.random.default_rng(SEED)
    logs: list[Path] = []
    kills = 0
    while kills < KILLS:
        log = tmp_path / f"run-{len(logs):03d}.log"
        logs.append(log)
        proc = _start(crash_dir, log)
        try:
            proc.wait(timeout=float(rng.uniform(0.0, 0.8)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            pytest.fail(f"the driver finished after {kills} kills; raise BARS so that "
                        f"{KILLS} kills land while it runs ({log.read_text()[-2000:]})")
    with Journal(crash_dir / "journal.sqlite", readonly=True) as j:
        bars_under_fire = j.count("bar")
    final = tmp_path / "final.log"
    _run_to_end(crash_dir, final)
    logs.append(final)

    ref, got = _books(ref_dir), _books(crash_dir)
    # nothing lost: every fill the broker made is in the journal, and the reverse
    assert got["journal_fills"] == got["broker_fills"]
    assert got["journal_orders"] == got["broker_orders"]
    # nothing duplicated: one order per client id, at most one fill per order
    assert max(Counter(o[0] for o in got["broker_orders"]).values()) == 1
    assert max(Counter(f[1] for f in got["broker_fills"]).values()) == 1
    assert len({f[0] for f in got["journal_fills"]}) == len(got["journal_fills"])
    # the same history as the run nobody killed: orders, fill prices, positions, cash
    assert got["broker_orders"] == ref["broker_orders"]
    assert got["broker_fills"] == ref["broker_fills"]
    assert got["books"] == ref["books"]
    assert got["positions"] == ref["positions"] != {}
    assert got["bars"] == ref["bars"] == BARS * len(SYMBOLS)
    assert got["alerts"] == []
    assert ref["alerts"] == []
    done_ref = json.loads((ref_dir / "done.json").read_text())
    done_got = json.loads((crash_dir / "done.json").read_text())
    assert done_got == done_ref

    starts = [e for log in logs for e in _events(log) if e.get("event") == "recovered"]
    assert all(e["mismatches"] == 0 and e["unknown"] == 0 for e in starts)
    recover_s = sorted(float(str(e["recover_s"])) for e in starts)
    ready_s = sorted(float(str(e["ready_s"])) for e in starts)
    record("chaos_kill9", {
        "kills": kills, "starts": len(logs), "recoveries_completed": len(starts),
        "killed_before_recovery_finished": len(logs) - len(starts),
        "bars": BARS * len(SYMBOLS), "bars_processed_while_killing": bars_under_fire,
        "orders": len(got["broker_orders"]),
        "fills": len(got["broker_fills"]),
        "lost_fills": len(set(got["broker_fills"]) - set(got["journal_fills"])),
        "duplicate_orders": len(got["broker_orders"]) - len(ref["broker_orders"]),
        "duplicate_fills": len(got["broker_fills"]) - len(ref["broker_fills"]),
        "starts_from_snapshot": sum(bool(e["snapshot"]) for e in starts),
        "fills_drained_at_recovery": sum(int(str(e["drained"])) for e in starts),
        "orders_resubmitted_at_recovery": sum(int(str(e["resubmitted"])) for e in starts),
        "records_replayed_max": max(int(str(e["replayed"])) for e in starts),
        "recover_seconds_p50": round(statistics.median(recover_s), 6),
        "recover_seconds_max": round(recover_s[-1], 6),
        "restart_to_ready_seconds_p50": round(statistics.median(ready_s), 4),
        "restart_to_ready_seconds_max": round(ready_s[-1], 4),
        "reference_run_seconds": round(reference_seconds, 2),
    })
