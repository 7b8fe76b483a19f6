"""The model watcher against a real MLflow registry (SQLite store, file artifacts, in tmp):
alias moves load in the background and swap between ticks; a broken bundle never replaces the
running model; a removed canary alias empties the canary slot; a rollback clears the alias."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from executor.models import ModelWatcher
from executor.slot import ModelSlot

pytestmark = pytest.mark.slow  # MLflow's store and three logged bundles: ~15 s for the module

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def registry(world, tmp_path_factory):
    """``mia-ES`` with v1 (production bundle), v2 (canary bundle), v3 (v1's bundle, its stored
    policy.onnx then damaged: what a bad upload or a corrupted artifact store leaves)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    from mia.config import load_config
    from mia.registry.models import register
    from mia.registry.pyfunc import log_bundle
    from mia.registry.tracking import configure

    home = tmp_path_factory.mktemp("registry") / "home"
    cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)})
    cfg = dataclasses.replace(cfg, params=world.cfg.params)
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI",
                                                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    saved_uri = utils._tracking_uri
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        tracking = configure(cfg, experiment="executor-watcher")
        versions = []
        for bundle in (world.production, world.canary, world.production):
            with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
                info = log_bundle(bundle)
            versions.append(register(cfg, run.info.run_id, "bundle", "ES",
                                     metrics={"wf/sharpe": 1.0}))
        assert versions == ["1", "2", "3"]
        stored = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(
            home / "peek")))
        graph = next(p for p in _artifact_root(tracking.client, info).rglob("policy.onnx"))
        graph.write_bytes(graph.read_bytes()[:-1])  # v3's stored graph no longer matches
        assert next(stored.rglob("bundle.json"))
        yield SimpleNamespace(cfg=cfg, client=tracking.client)
    finally:
        mlflow.set_tracking_uri(saved_uri)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _artifact_root(client: Any, info: Any) -> Path:
    from urllib.parse import urlsplit

    location = client.get_logged_model(info.model_id).artifact_location
    return Path(urlsplit(location).path)


def aliases(reg: Any, *, production: str, canary: str | None = None,
            share: float = 0.5) -> None:
    """Move the aliases to the wanted state with mia's audited moves."""
    from mia.registry import aliases as moves
    from mia.registry.handle import ModelHandle

    current, _ = ModelHandle(reg.cfg, "ES", reg.client).read()
    if current["production"] != production:
        moves.set_canary(reg.cfg, "ES", production, reason="test setup", client=reg.client,
                         user="test")
        moves.promote(reg.cfg, "ES", reason="test setup", client=reg.client, user="test")
    if canary is None:
        moves.clear_canary(reg.cfg, "ES", reason="test setup", client=reg.client, user="test")
    else:
        moves.set_canary(reg.cfg, "ES", canary, share=share, reason="test setup",
                         client=reg.client, user="test")


class Alerts(list[tuple[str, str, str]]):
    def __call__(self, level: str, code: str, message: str) -> None:
        self.append((level, code, message))


def watched(reg: Any, make_executor: Any, *, canary: bool = False,
            poll_seconds: float = 60.0) -> tuple[Any, Any, ModelWatcher, Alerts]:
    """The loop as ``executor.app.live`` wires it: first models loaded from the registry, the
    watcher warming new slots on the loop's recent rows."""
    alerts = Alerts()
    first = ModelWatcher(reg.cfg, "ES", history=lambda: (0, np.empty((0, 23))), alert=alerts,
                         poll_seconds=poll_seconds)
    wanted = first.wanted()
    slots = {"production": first.load(wanted.production or ""),
             "canary": first.load(wanted.canary) if canary and wanted.canary else None}
    ex, st = make_executor(slots=slots, share=wanted.share)
    watcher = ModelWatcher(reg.cfg, "ES", history=ex.history, alert=alerts,
                           poll_seconds=poll_seconds)
    for name, slot in slots.items():
        watcher.running(name, None if slot is None else slot.version)
    watcher.share = wanted.share
    ex.svc.watcher = watcher
    return ex, st, watcher, alerts


def swaps(st: Any) -> list[dict[str, Any]]:
    return [r.payload for r in st.journal.read("model_swap")]


def test_an_alias_move_loads_in_the_background_and_swaps_between_ticks(registry, world,
                                                                     make_executor, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the downloads go
    aliases(registry, production="1")
    ex, st, watcher, alerts = watched(registry, make_executor, poll_seconds=0.05)
    assert ex.slots["production"].version == "1"
    aliases(registry, production="2")  # promote v2 while the loop runs
    versions: list[str] = []

    def ticking() -> Iterator[Any]:
        deadline = time.monotonic() + 60
        for ev in world.replay():
            yield ev
            if ev.bar.symbol != "MNQ":
                continue  # the ES bar waits for its MNQ partner: ticks happen on MNQ
            versions.append(ex.slots["production"].version)
            if versions.count("2") > 20 or time.monotonic() > deadline:
                return
            time.sleep(0.001)  # the loop keeps ticking while the watcher downloads and warms

    watcher.start()
    try:
        stats = ex.run(ticking())
    finally:
        watcher.stop()
    assert alerts == []
    assert versions[-1] == "2", "the swap never came"
    first = versions.index("2")  # one swap, between two ticks, never back
    assert versions == ["1"] * first + ["2"] * (len(versions) - first)
    assert swaps(st) == [{"slot": "production", "version": "2"}]
    # the new slot was warmed on the loop's recent rows and then fed the bars that arrived
    # meanwhile: its features are those of a slot that saw every bar
    history = int(np.sum(world.ts < min(t for t, _, _ in stats.decisions)))
    reference = ModelSlot.load(world.canary, "ref")
    for row in world.inputs[:history + stats.bars]:
        reference.update(np.ascontiguousarray(row))
    np.testing.assert_allclose(ex.slots["production"].raw_features(), reference.raw_features(),
                               rtol=1e-9, atol=1e-12)
    assert len([b for _, b, _ in stats.decisions if b == "production"]) == stats.bars
    assert list(tmp_path.glob("mia-ES-v*")) == []  # each download is removed once loaded


def test_a_broken_bundle_alerts_and_the_running_model_keeps_trading(registry, world,
                                                                  make_executor):
    aliases(registry, production="1")
    ex, st, watcher, alerts = watched(registry, make_executor)
    aliases(registry, production="3")  # v3's stored graph is damaged
    watcher.poll_once()
    assert watcher.take() == []
    assert [(level, code) for level, code, _ in alerts] == [("critical", "model_load_failed")]
    assert "production v3 of mia-ES could not be loaded" in alerts[0][2]
    assert "keeping v1" in alerts[0][2]
    stats = ex.run(islice(world.replay(), 400))
    assert ex.slots["production"].version == "1"
    assert any(t for _, b, t in stats.decisions if b == "production")
    watcher.poll_once()  # the next poll tries again, and says so again
    assert watcher.failures == 2
    assert swaps(st) == []


def test_a_removed_canary_alias_clears_the_canary_between_ticks(registry, world, make_executor):
    aliases(registry, production="1", canary="2", share=0.5)
    ex, st, watcher, _ = watched(registry, make_executor)
    assert ex.slots["canary"] is None  # started without; the first poll brings it
    watcher.poll_once()
    events = iter(world.replay())
    for ev in islice(events, 200):
        ex.handle(ev)
    assert ex.slots["canary"].version == "2"
    assert ex.routing.share == 0.5
    assert ex.svc.watcher.share == 0.5
    aliases(registry, production="1", canary=None)
    watcher.poll_once()
    for ev in islice(events, 200):
        ex.handle(ev)
    assert ex.slots["canary"] is None
    assert ex.routing.share == 0.0
    assert swaps(st) == [{"slot": "canary", "version": "2"}, {"slot": "canary", "version": "none"}]


def test_an_automatic_rollback_clears_the_canary_alias_in_the_registry_with_the_reason(
        registry, world, make_executor):
    from mia.registry.models import status

    aliases(registry, production="1", canary="2", share=0.5)
    ex, _, watcher, _ = watched(registry, make_executor, canary=True)
    ex.rollback("canary drawdown 4.00% > rollback.max_drawdown 3.00%")
    assert ex.slots["canary"] is None
    assert ex.routing.share == 0.0
    by = {a.alias: a for a in status(registry.cfg, "ES", client=registry.client).aliases}
    assert by["canary"].version == "2"  # the registry is told by the watcher's thread ...
    watcher.poll_once()
    by = {a.alias: a for a in status(registry.cfg, "ES", client=registry.client).aliases}
    assert by["canary"].version is None  # ... at its next poll
    tags = registry.client.get_model_version("mia-ES", "2").tags
    last = json.loads(tags["audit/history"])[-1]
    assert last["action"] == "clear_canary"
    assert last["by"] == "mia-executor"
    assert last["reason"] == "canary drawdown 4.00% > rollback.max_drawdown 3.00%"
    watcher.poll_once()
    assert ex.svc.watcher.take()[0].slot is None  # the watcher agrees: no canary


def test_an_unreachable_registry_alerts_and_the_loop_trades_on(world, make_executor, monkeypatch,
                                                               port):
    from mia.config import load_config

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # refuse fast, not in 2 minutes
    down = load_config(REPO / "params.yaml", env={"MIA_HOME": str(world.home),
                                                  "MLFLOW_TRACKING_URI":
                                                      f"http://127.0.0.1:{port}"})
    ex, _ = make_executor()
    alerts = Alerts()
    watcher = ModelWatcher(down, "ES", history=ex.history, alert=alerts, poll_seconds=60)
    watcher.running("production", "1")
    ex.svc.watcher = watcher
    watcher.poll_once()
    assert [(level, code) for level, code, _ in alerts] == [("warning", "registry_unreachable")]
    assert "keeping the running models" in alerts[0][2]
    stats = ex.run(islice(world.replay(), 400))
    assert ex.slots["production"].version == "1"
    assert stats.bars == 200


def test_the_live_loader_builds_timed_slots_whose_background_warm_up_is_not_timed(
        registry, world, make_executor):
    from executor.app import TimedSlot
    from executor.metrics import ExecutorMetrics

    aliases(registry, production="1", canary="2", share=0.5)
    metrics = ExecutorMetrics()
    ex, _ = make_executor()
    alerts = Alerts()
    watcher = ModelWatcher(registry.cfg, "ES", history=lambda: (0, np.empty((0, 23))),
                           alert=lambda *a: None, poll_seconds=60.0,
                           load_slot=TimedSlot.loader(metrics))
    watcher.attach(history=ex.history, alert=alerts)  # the loop it serves, after its start
    watcher.running("production", "1")
    watcher.poll_once()
    (swap,) = watcher.take()
    assert alerts == []
    assert swap.slot_name == "canary"
    assert isinstance(swap.slot, TimedSlot)
    assert swap.slot.ready  # warmed on the loop's rows, in this (the watcher's) thread
    assert swap.slot.metrics is metrics
    metrics.observe_tick(0.0)
    assert "stage=\"features\"" not in generate_latest(metrics.registry).decode()
