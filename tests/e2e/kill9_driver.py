"""A minimal executor loop over the real journal, snapshots, recovery and paper broker.

``tests/e2e/test_kill9.py`` runs it in a subprocess, SIGKILLs it at random points and starts it
again; every start goes through :func:`executor.recovery.recover`. It is as thin as a loop can be
so the test exercises the state code, not a strategy: seeded bars of ES and MNQ from a list, a
feed cursor that is advanced (``ack``) only after the bar is journaled, deterministic integer
targets per book, one order per book and bar to reach the target, fills booked as the broker
delivers them, a snapshot every few bars.

Usage: ``python -m tests.e2e.kill9_driver --dir DIR --bars N --seed S --snapshot-every K``.
Prints one JSON line when recovered and one when done (``done.json`` holds the final books).
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the imports: "ready" time includes the interpreter's work

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from executor.broker import Order, PaperBroker, client_id  # noqa: E402
from executor.journal import Journal, to_ns  # noqa: E402
from executor.recovery import recover  # noqa: E402
from executor.snapshots import SnapshotStore  # noqa: E402
from executor.state import bar_entry, order_entry  # noqa: E402
from mia.config import load_params  # noqa: E402
from mia.data.contracts import contract  # noqa: E402
from mia.envs.costs import CostModel  # noqa: E402
from mia.types import Bar  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = {"ES": 50.0, "MNQ": 2.0}
BOOKS = ("production", "canary")
MAX_TARGET = 3


def costs() -> dict[str, CostModel]:
    """:return: ES and MNQ costs from the repo's params.yaml (env section)."""
    env = load_params(REPO / "params.yaml", env={}).env
    return {s: CostModel.from_config(contract(s), env) for s in SYMBOLS}


def feed(n_bars: int, seed: int) -> list[tuple[Bar, dict[str, int]]]:
    """:return: per item, a bar and each book's target after it, interleaved by ts."""
    rng = np.random.default_rng(seed)
    price = {"ES": 4800.0, "MNQ": 16800.0}
    target = {b: {s: 0 for s in SYMBOLS} for b in BOOKS}
    t0 = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)
    items = []
    for i in range(n_bars):
        for sym in SYMBOLS:
            o = price[sym]
            c = round((o + float(rng.normal(0.0, 2.0))) * 4) / 4
            hi = max(o, c) + 0.25 * int(rng.integers(0, 5))
            lo = min(o, c) - 0.25 * int(rng.integers(0, 5))
            price[sym] = c
            for b in BOOKS:
                if rng.random() < 0.3:
                    target[b][sym] = int(rng.integers(-MAX_TARGET, MAX_TARGET + 1))
            bar = Bar(t0 + timedelta(minutes=i), sym, o, hi, lo, c, float(rng.integers(1, 900)))
            items.append((bar, {b: target[b][sym] for b in BOOKS}))
    return items


class Cursor:
    """The feed's committed position (a Redis consumer group's last ack, in a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next = int(path.read_text()) if path.exists() else 0

    def ack(self, index: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(index + 1))
        os.replace(tmp, self.path)
        self.next = index + 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--bars", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot-every", type=int, default=20)
    args = ap.parse_args()
    d: Path = args.dir
    journal = Journal(d / "journal.sqlite")
    broker = PaperBroker(d / "broker.sqlite", costs(), max_order_contracts=2 * MAX_TARGET)
    store = SnapshotStore(d / "snapshots", keep=3)
    t = time.perf_counter()
    rec = recover(journal, broker, store, multipliers=SYMBOLS, books=BOOKS)
    state = rec.state
    print(json.dumps({"event": "recovered", "recover_s": time.perf_counter() - t,
                      "ready_s": time.perf_counter() - START, "replayed": rec.replayed,
                      "snapshot": rec.loaded.path is not None,
                      "skipped": len(rec.loaded.skipped), "drained": rec.drained,
                      "resubmitted": len(rec.resubmitted), "unknown": len(rec.unknown),
                      "mismatches": len(rec.mismatches)}), flush=True)
    cursor = Cursor(d / "feed.cursor")
    items = feed(args.bars, args.seed)
    done = 0
    for i in range(cursor.next, len(items)):
        bar, targets = items[i]
        ts = to_ns(bar.ts)
        if state.seen(bar.symbol, ts):  # redelivered: journaled before the crash, not acked
            cursor.ack(i)
            continue
        broker.on_bar(bar)
        for fill in broker.poll_fills():
            state.commit_fill(journal, fill)
        for book in BOOKS:
            q = targets[book] - state.position(book, bar.symbol) - state.pending(book, bar.symbol)
            if q:
                order = Order(client_id(bar.symbol, ts, book, 0), bar.symbol, q, book, "policy",
                              ts)
                state.commit(journal, order_entry(order))  # journal first, then send
                broker.submit(order)
        state.commit(journal, bar_entry(bar.symbol, ts, f"{bar.symbol}:{ts}"))
        cursor.ack(i)  # only after the bar is durably journaled
        done += 1
        if done % args.snapshot_every == 0:
            store.write(state.snapshot(journal, taken_ns=ts))
    for fill in broker.poll_fills():  # confirm the last batch
        state.commit_fill(journal, fill)
    books = {f"{b}/{s}": [p.quantity, p.cash] for (b, s), p in sorted(state.books.items())}
    result = {"event": "done", "books": books, "positions": broker.positions(),
              "open_orders": sorted(state.open_orders)}
    tmp = d / "done.tmp"
    tmp.write_text(json.dumps(result, sort_keys=True))
    os.replace(tmp, d / "done.json")
    print(json.dumps(result), flush=True)
    journal.close()
    broker.close()


if __name__ == "__main__":
    main()
