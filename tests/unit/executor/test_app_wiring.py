"""The live process's wiring (executor.app.live, issue 7): recovery's alerts reach the alerter
and its REDUCING the risk engines, and so does the running loop's ``unknown_fill``; the gauges
the loop never sets (model versions, canary share, PSI, stage latencies) are set;
``memory_high`` fires; the feature log is written on a graceful stop; the webhook body carries
``alerts.webhook_fields``.

Live executors come from :func:`start_live`: ``make_live`` of conftest.py with its own MIA_HOME
(the world's data store linked in), so the feature log it writes is this test's alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from executor.alerts import Alert, Alerter
from executor.app import open_state, publish_models
from executor.broker import Order, PaperBroker, client_id
from executor.feature_log import PSI_MIN_BARS
from executor.feeds.base import FeedItem
from executor.journal import Journal, JournalError, to_ns
from executor.metrics import ExecutorMetrics
from executor.recovery import MISMATCH_HOLD, MismatchHold, recover
from executor.snapshots import SnapshotStore
from executor.state import LiveState, order_entry, position_entry, risk_entry
from mia.drift.live_log import read_live_features
from mia.drift.psi import bin_proportions, reference_quantiles
from mia.registry.bundle import MANIFEST, content_hash
from mia.risk import Mode, RiskEngine
from tests.unit.executor.conftest import FEATURES, SYMBOLS, TRADE_FROM, free_port
from tests.unit.executor.test_alerts import Webhook
from tests.unit.executor.test_metrics import samples
from tests.unit.executor.test_paper_broker import COSTS, T0, bar
from tests.unit.risk._rules import rules

MULT = {"ES": 50.0, "MNQ": 2.0}


def start_live(world: Any, tmp_path: Path, **keys: Any) -> tuple[Any, Any]:
    """``executor.app.live`` from an ``executor.yaml`` (local models, a replay feed from
    TRADE_FROM; ``keys`` override top-level settings) with MIA_HOME at ``tmp_path / "home"``."""
    from executor.app import live
    from executor.settings import load_settings

    home = tmp_path / "home"
    if not home.exists():
        home.mkdir()
        (home / "data").symlink_to(world.home / "data")  # the world's raw store, read only
    doc: dict[str, Any] = {
        "symbol": "ES", "cross_symbol": "MNQ", "state_dir": str(tmp_path / "live-state"),
        "feed": {"kind": "replay", "start": TRADE_FROM.isoformat(),
                 "end": TRADE_FROM.isoformat()},
        "models": {"source": "local", "production": str(world.production)},
        "kill_file": str(tmp_path / "KILL"), "admin_port": free_port(), **keys}
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump(doc))
    settings = load_settings(path)
    p = world.cfg.params
    cfg = dataclasses.replace(
        world.cfg, endpoints=dataclasses.replace(world.cfg.endpoints, mia_home=home),
        params=dataclasses.replace(p, executor=dataclasses.replace(
            p.executor, metrics_port=free_port())))
    return live(settings, cfg), settings


def _order(minute: int, quantity: int, book: str = "production",
           symbol: str = "ES") -> Order:
    ts = to_ns(T0) + minute * 60_000_000_000
    return Order(client_id(symbol, ts, book, 0), symbol, quantity, book, "policy", ts)


def _broker_holds_what_the_journal_lacks(state_dir: Path, params: Any) -> None:
    # a fill the broker confirmed but the journal never saw (a hand trade, an old backup)
    opened = open_state(state_dir, SYMBOLS, params)
    opened.broker.submit(_order(0, 2))
    opened.broker.on_bar(bar(1))
    opened.broker.poll_fills()
    opened.broker.poll_fills()
    opened.broker.close()
    opened.journal.close()


# --- recovery: its alerts and its REDUCING ---------------------------------------------------

@pytest.fixture
def parts(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    broker = PaperBroker(tmp_path / "paper.sqlite", COSTS, max_order_contracts=5)
    yield journal, broker, SnapshotStore(tmp_path / "snapshots", keep=3)
    broker.close()
    journal.close()


def test_recovery_sends_every_alert_it_journals_to_the_alert_sink(parts):
    journal, broker, store = parts
    state = LiveState(MULT)
    broker.submit(_order(0, 1))  # filled below, never journaled: unknown_fill
    broker.on_bar(bar(1))
    state.commit(journal, order_entry(_order(2, 9)))  # above the broker's limit: rejected
    broker.submit(_order(3, -1))  # working, unknown to the journal
    state.commit(journal, position_entry("canary", "MNQ", 3, "test"))  # the broker holds none
    sent: list[tuple[str, str, str]] = []
    recover(journal, broker, store, multipliers=MULT,
            alert=lambda level, code, message: sent.append((level, code, message)))
    journaled = [(r.payload["level"], r.payload["code"], r.payload["message"])
                 for r in journal.read("alert")]
    assert [code for _, code, _ in sent] == ["unknown_fill", "order_rejected", "unknown_order",
                                             "reconcile_mismatch"]
    assert sent == journaled
    assert {level for level, _, _ in sent} == {"critical"}


def _alerting(ex: Any) -> tuple[ExecutorMetrics, Webhook]:
    """Give a loop the live process's metrics and an alerter posting to a local webhook."""
    metrics, hook = ExecutorMetrics(), Webhook()
    ex.svc.metrics = metrics
    ex.svc.alerter = Alerter(hook.url, metrics=metrics)
    return metrics, hook


def test_a_fill_for_an_unknown_order_while_running_is_alerted_once_and_journaled_once(
        world, make_executor, caplog):
    ex, opened = make_executor()
    metrics, hook = _alerting(ex)
    events = list(islice(world.replay(), 6))
    first = next(e for e in events if isinstance(e, FeedItem) and e.bar.symbol == "ES")
    # traded at the broker by hand: an order the journal never saw, filled at the first bar
    opened.broker.submit(Order("manual-1", "ES", 1, "production", "by hand",
                               first.ts_ns - 60_000_000_000))
    try:
        with caplog.at_level(logging.INFO, logger="executor.alerts"):
            for event in events:
                ex.handle(event)
        assert ex.svc.alerter.flush(5)
        records = [r.payload for r in ex.svc.journal.read("alert")
                   if r.payload["code"] == "unknown_fill"]
        posted = [b for b in hook.bodies if b["code"] == "unknown_fill"]
        logged = [r for r in caplog.records if "code=unknown_fill" in r.getMessage()]
    finally:
        ex.svc.alerter.close()
        hook.close()
    assert ex.state.position("production", "ES") == 1  # booked to production
    assert [p["level"] for p in records] == ["critical"]  # one journal record
    assert [(b["level"], b["message"]) for b in posted] == [("critical",
                                                             records[0]["message"])]
    assert [r.levelno for r in logged] == [logging.ERROR]  # the alerter's line for critical
    s = samples(metrics)
    assert s[("mia_alerts_total", (("code", "unknown_fill"), ("level", "critical")))] == 1.0


def test_a_hand_fill_after_the_books_exist_is_refused_by_the_risk_gate_not_a_crash(
        world, make_executor):
    ex, opened = make_executor()
    events = list(islice(world.replay(), 40))
    for event in events[:20]:  # the production book's risk engine exists
        ex.handle(event)
    assert "production/ES" in ex.engines
    ex.engines["production/ES"].plan = None  # no decision waiting for its fill
    later = next(e for e in events[20:] if isinstance(e, FeedItem) and e.bar.symbol == "ES")
    opened.broker.submit(Order("manual-2", "ES", 1, "production", "by hand",
                               later.ts_ns - 60_000_000_000))
    for event in events[20:]:
        ex.handle(event)  # no RiskInputError out of the loop
    codes = [r.payload["code"] for r in ex.svc.journal.read("alert")]
    assert "unknown_fill" in codes
    assert "risk_input" in codes


def test_a_journal_that_cannot_be_written_stops_the_loop_with_an_emergency_alert(
        world, make_executor, monkeypatch):
    ex, _ = make_executor()
    metrics, hook = _alerting(ex)
    journal, real = ex.svc.journal, ex.svc.journal.append
    calls = {"n": 0}

    def filling_disk(kind: str, payload: Any, key: Any = None) -> bool:
        calls["n"] += 1
        if calls["n"] > 30:
            raise JournalError(f"journal {journal.path}: writing a {kind} record failed "
                               "(database or disk is full)")
        return real(kind, payload, key=key)

    monkeypatch.setattr(journal, "append", filling_disk)
    try:
        with pytest.raises(JournalError, match="disk is full"):
            ex.run(islice(world.replay(), 200))
        posted = [b for b in hook.bodies if b["code"] == "journal_error"]
    finally:
        ex.svc.alerter.close()
        hook.close()
    assert [b["level"] for b in posted] == ["emergency"]
    assert "the process exits" in posted[0]["message"]
    assert ex.state.trading_state == "HALTED"
    s = samples(metrics)
    assert s[("mia_trading_state", (("state", "HALTED"),))] == 1.0


def test_alerts_of_an_earlier_start_are_not_sent_again(parts):
    journal, broker, store = parts
    broker.submit(_order(3, -1))
    recover(journal, broker, store, multipliers=MULT)
    sent: list[tuple[str, str, str]] = []
    recover(journal, broker, store, multipliers=MULT, alert=lambda *a: sent.append(a))
    assert [code for _, code, _ in sent] == ["unknown_order"]  # raised again: still unknown
    assert journal.count("alert") == 2


def test_a_mismatch_latches_the_production_engine_in_reducing_once(parts):
    journal, broker, store = parts
    broker.submit(_order(0, 2))
    broker.on_bar(bar(1))
    broker.poll_fills()
    broker.poll_fills()
    hold = MismatchHold(rules={"ES": rules("ES")}, equity=250_000.0, now_ns=to_ns(T0) + 1)
    first = recover(journal, broker, store, multipliers=MULT, hold=hold)
    engine = first.state.restore_engines({"ES": rules("ES")})["production/ES"]
    assert engine.mode is Mode.REDUCING
    latch = engine.state.held(MISMATCH_HOLD)
    assert (latch.release, latch.by) == ("person", "recovery")
    assert "ES journal +0 broker +2" in latch.why
    assert engine.track.peak == 250_000.0  # a new engine, on the production book's capital
    records = [r.payload for r in journal.read("risk_event")]
    assert [(r["book"], r["event"]["cause"], r["event"]["to"]) for r in records] == [
        ("production", MISMATCH_HOLD, "REDUCING")]
    again = recover(journal, broker, store, multipliers=MULT, hold=hold)
    assert again.mismatches == ()
    assert journal.count("risk_event") == 1
    assert again.state.restore_engines({"ES": rules("ES")})["production/ES"].mode \
        is Mode.REDUCING


def test_the_latch_joins_the_holds_an_engine_already_has(parts):
    journal, broker, store = parts
    es = rules("ES")
    engine = RiskEngine(es, equity=100_000.0, trade_date=date(2024, 1, 2), now_ns=1)
    state = LiveState(MULT)
    entry = risk_entry("production", "ES", engine.kill(by="ops", why="test", now_ns=2), engine)
    entry.payload["engine"]["capital"] = 100_000.0  # what the loop keeps beside the engine
    state.commit(journal, entry)
    state.commit(journal, position_entry("canary", "MNQ", 3, "test"))  # not a traded symbol
    hold = MismatchHold(rules={"ES": es}, equity=250_000.0, now_ns=3)
    rec = recover(journal, broker, store, multipliers=MULT, hold=hold)
    restored = rec.state.restore_engines({"ES": es})["production/ES"]
    assert {h.cause for h in restored.state.holds} == {"kill_switch", MISMATCH_HOLD}
    assert restored.mode is Mode.HALTED  # the kill switch still dominates
    assert restored.track.peak == 100_000.0  # its own track, restored
    assert rec.state.risk["production/ES"]["capital"] == 100_000.0


def test_a_live_start_after_a_mismatch_alerts_the_webhook_and_trades_reducing(
        world, tmp_path, monkeypatch):
    _broker_holds_what_the_journal_lacks(tmp_path / "live-state", world.cfg.params)
    hook = Webhook()
    monkeypatch.setenv("MIA_ALERT_WEBHOOK", hook.url)
    try:
        ex, _ = start_live(world, tmp_path, alerts={"webhook_fields": {"chat_id": "-1001"}})
        assert ex.svc.alerter.flush(10.0)
        bodies = list(hook.bodies)
    finally:
        hook.close()
    mismatch = [b for b in bodies if b["code"] == "reconcile_mismatch"]
    assert len(mismatch) == 1
    assert mismatch[0]["chat_id"] == "-1001"
    assert mismatch[0]["level"] == "critical"
    s = samples(ex.svc.metrics)
    assert s[("mia_alerts_total", (("code", "reconcile_mismatch"), ("level", "critical")))] == 1
    engine = ex.engines["production/ES"]
    assert engine.state.held(MISMATCH_HOLD) is not None
    # no bar: the adopted +2 has no trade record in the engine, so the gate refuses the
    # book's first decision (RiskInputError, a gap of its own); the start is judged here
    ex.run(iter(()))
    moves = [(r.payload["from"], r.payload["to"]) for r in ex.svc.journal.read("state")]
    assert moves[-2:] == [("STARTING", "REDUCING"), ("REDUCING", "STOPPING")]
    assert "RUNNING" not in [to for _, to in moves]  # the loop started REDUCING


# --- gauges the loop does not set ---------------------------------------------------------------

def test_model_versions_and_the_canary_share_are_published_from_the_loop(make_executor):
    ex, _ = make_executor(canary=True, share=0.15)
    m = ExecutorMetrics()
    publish_models(ex, m)
    s = samples(m)
    assert s[("mia_model_version", (("slot", "production"),))] == 1.0
    assert s[("mia_model_version", (("slot", "canary"),))] == 2.0
    assert s[("mia_canary_share", ())] == 0.15
    ex.rollback("test")
    publish_models(ex, m)
    s = samples(m)
    assert s[("mia_model_version", (("slot", "canary"),))] == 0.0
    assert s[("mia_canary_share", ())] == 0.0


def test_a_live_start_sets_the_canary_share_and_stage_latencies(world, tmp_path):
    ex, _ = start_live(world, tmp_path, models={
        "source": "local", "production": str(world.production), "canary": str(world.canary),
        "canary_share": 0.2})
    m = ex.svc.metrics
    assert samples(m)[("mia_canary_share", ())] == 0.2  # the sampler's first sample
    m.observe_tick(0.0)  # the warm-up left no stage time behind for the first tick
    assert not [k for k in samples(m) if k[0] == "mia_stage_seconds_count"]
    ex.run(islice(world.replay(), 80))
    s = samples(m)
    ticks = s[("mia_tick_to_decision_seconds_count", ())] - 1
    assert ticks == ex.stats.bars > 0
    for stage in ("validate", "features", "risk", "journal", "broker"):  # one per tick
        assert s[("mia_stage_seconds_count", (("stage", stage),))] == ticks
    assert 0 < s[("mia_stage_seconds_count", (("stage", "decide"),))] <= ticks


def test_rss_above_the_threshold_raises_memory_high_once(world, tmp_path):
    ex, _ = start_live(world, tmp_path, alerts={"memory_high_mb": 1.0})
    s = samples(ex.svc.metrics)
    assert s[("mia_alerts_total", (("code", "memory_high"), ("level", "warning")))] == 1.0


# --- the feature log on stop, and the PSI from its rows --------------------------------------

def test_a_graceful_stop_writes_every_logged_row(world, tmp_path):
    ex, _ = start_live(world, tmp_path)
    stats = ex.run(islice(world.replay(), 120))
    frame = read_live_features(tmp_path / "home", "ES")
    assert len(frame) == stats.bars > 0
    assert set(frame["model_version"]) == {"local-production"}
    assert list(frame.columns[3:]) == list(FEATURES)


def _bundle_with_drift(world: Any, dst: Path) -> Path:
    """The production bundle with a drift reference of its features over the warm-up days."""
    import shutil

    shutil.copytree(world.production, dst)
    doc = json.loads((dst / MANIFEST).read_text())
    ready = np.isfinite(world.raw).all(axis=1)
    ref = world.raw[ready][:1500]
    edges = reference_quantiles(ref, 10)
    doc["drift"] = {"features": list(FEATURES)[::-1],  # the rank order, not the spec's
                    "edges": [[float(e) if np.isfinite(e) else None for e in row]
                              for row in edges[::-1]],
                    "expected": bin_proportions(ref, edges)[::-1].tolist(), "bars": len(ref)}
    doc["sha256"] = content_hash(doc)
    (dst / MANIFEST).write_text(json.dumps(doc))
    return dst


def test_psi_of_the_top_features_is_set_from_the_logged_rows(world, tmp_path):
    bundle = _bundle_with_drift(world, tmp_path / "bundle")
    ex, _ = start_live(world, tmp_path,
                       models={"source": "local", "production": str(bundle)})
    assert ex.run(islice(world.replay(), 900)).bars >= PSI_MIN_BARS  # ES and MNQ events
    psi = {k[1][0][1]: v for k, v in samples(ex.svc.metrics).items() if k[0] == "mia_psi"}
    assert set(psi) == set(FEATURES)
    assert all(np.isfinite(v) and v >= 0.0 for v in psi.values())


def test_alert_values_reach_the_webhook_body_with_the_configured_fields(world, tmp_path,
                                                                        monkeypatch):
    hook = Webhook()
    monkeypatch.setenv("MIA_ALERT_WEBHOOK", hook.url)
    try:
        ex, _ = start_live(world, tmp_path, alerts={
            "webhook_fields": {"chat_id": -1001, "disable_notification": True}})
        ex.svc.alerter.send(Alert(level="warning", code="x", message="y", ts_ns=1))
        assert ex.svc.alerter.flush(10.0)
        body = hook.bodies[-1]
    finally:
        hook.close()
    assert (body["chat_id"], body["disable_notification"], body["text"]) == (
        -1001, True, "[WARNING] x: y")
