"""The live wiring over history: live() warms from the data store, a restart warms up to where
the journal stopped, and ``python -m executor --config`` trades a replay feed to a clean stop.

Executors come from ``make_live`` (conftest.py): ``executor.app.live`` from an
``executor.yaml`` with local models and a replay feed from 2024-01-04.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.journal import Journal
from executor.slot import ModelSlot
from executor.snapshots import SnapshotStore
from executor.state import LiveState
from mia.features.ops import INPUTS
from tests.unit.executor.conftest import REPO, SYMBOLS, TRADE_FROM, free_port

TS_MINUTES = INPUTS.index("ts_minutes")
NS_PER_MINUTE = 60_000_000_000


def test_a_model_swap_warms_on_the_history_a_live_start_loaded(world, make_live):
    ex, _ = make_live(warmup_days=2)
    seq, rows = ex.history()  # what the model watcher hands a new slot
    first_traded = next(iter(world.replay())).ts_ns
    assert seq == len(rows) > ex.slots["production"].warmup
    assert rows[-1, TS_MINUTES] < first_traded // NS_PER_MINUTE  # history only: no look-ahead
    new = ModelSlot.load(world.canary, "2")
    new.warm(rows)
    assert new.ready


def test_a_live_restart_warms_up_to_the_newest_journaled_bar(world, make_live):
    ex, _ = make_live()
    ex.run(islice(world.replay(), 400))
    last = ex.state.last_bar_ns["ES"]
    ex.svc.journal.close()
    ex.svc.broker.close()
    again, _ = make_live()  # the same state directory: a restart
    _, rows = again.history()
    assert rows[-1, TS_MINUTES] == last // NS_PER_MINUTE  # the feed resumes right after it
    assert again.slots["production"].ready
    stats = again.run(islice(world.replay(start_after=dict.fromkeys(SYMBOLS, last)), 400))
    assert stats.faults == 0
    assert stats.bars > 0


def _params(tmp_path: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["env"]["initial_equity"] = 5_000_000.0  # the world's account (conftest.py)
    doc["executor"]["metrics_port"] = free_port()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_python_m_executor_with_a_replay_feed_trades_and_stops_flat(world, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "executor.yaml"
    config.write_text(yaml.safe_dump({
        "symbol": "ES", "cross_symbol": "MNQ", "state_dir": str(state),
        "feed": {"kind": "replay", "start": TRADE_FROM.isoformat(),
                 "end": TRADE_FROM.isoformat()},
        "models": {"source": "local", "production": str(world.production)},
        "flatten_on_stop": True, "warmup_days": 2, "admin_port": free_port()}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MIA_ADMIN_TOKEN", "MIA_ALERT_WEBHOOK", "NOTIFY_SOCKET")}
    out = subprocess.run(
        [sys.executable, "-m", "executor", "--config", str(config), "--params",
         str(_params(tmp_path)), "--home", str(world.home)],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    # what an operator reads in journalctl: the start and the stop, with what it holds
    assert re.search(r"ready: ES, models {'production': '[^']+', 'canary': None}", out.stderr)
    assert "recovered " in out.stderr
    assert "no snapshot (a clean start), then 0 journal records" in out.stderr
    assert re.search(r"stopped: \d+ bars this run \(\d+ caught up on after the start\), "
                     r"\d+ orders, \d+ fills; positions ", out.stderr)
    es = sum(ev.bar.symbol == "ES" for ev in world.replay(TRADE_FROM, TRADE_FROM))
    with Journal(state / "journal.sqlite", readonly=True) as journal:
        assert journal.count("bar") == es  # every stored bar traded: none judged stale
        assert not [r for r in journal.read("alert")
                    if r.payload["code"].startswith(("data_", "warmup"))]
        orders = [r.payload for r in journal.read("order") if r.payload["action"] == "submit"]
        assert len(orders) > 1
        replayed = LiveState({"ES": 50.0, "MNQ": 2.0})
        for record in journal.read():
            replayed.replay(record)
        # the stop sent what closes the book (it fills at the next open: a restart trades it)
        assert replayed.position("production", "ES") + replayed.pending("production", "ES") == 0
        assert replayed.trading_state == "STOPPING"
        last_seq = journal.last_seq
    snapshots = SnapshotStore(state / "snapshots", keep=5)
    assert snapshots.load(snapshots.paths()[0]).seq == last_seq  # the final snapshot
