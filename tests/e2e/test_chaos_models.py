"""MLflow down during an alias move: the running model trades on, alerts, and the move is picked
up once the registry is back (issue 8, item 3).

A real tracking server (``chaos_support.start_mlflow``: MLflow's REST app on an SQLite store in
a temporary directory) holds ``mia-ES`` v1 and v2 (two one-agent bundles that decide
differently). The executor's :class:`executor.models.ModelWatcher` reaches it through a
:class:`chaos_support.TcpProxy` that the test cuts; the operator moves the aliases with mia's
audited moves straight on the store, as from another machine. Two outages:

1. the link is down when production moves v1 -> v2: every poll meanwhile alerts
   ``registry_unreachable`` and v1 keeps trading; back up, the next poll loads v2 and the loop
   swaps it in between two bars (a ``model_swap`` record);
2. the link dies between the poll that sees production move back to v1 and the download of
   v1's bundle: ``model_load_failed``, v2 keeps trading; the next poll loads v1.

``tests/unit/executor/test_models.py`` covers a move with the registry up, a broken bundle and an
unreachable registry; the recovery after the outage is what this adds. Figures:
``tests/benchmarks/results/chaos.json``, case ``mlflow_down``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from executor.models import ModelWatcher
from tests.e2e import chaos_support as cs

pytestmark = pytest.mark.slow  # a tracking server and two logged bundles: ~20 s


class Alerts(list[tuple[str, str, str]]):
    def __call__(self, level: str, code: str, message: str) -> None:
        self.append((level, code, message))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """``mia-ES`` v1 (production) and v2 on an SQLite store; its server; a proxy to it."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    from mia.config import load_config
    from mia.registry import aliases as moves
    from mia.registry.models import register
    from mia.registry.pyfunc import log_bundle
    from mia.registry.tracking import configure

    root = tmp_path_factory.mktemp("chaos-mlflow")
    db = f"sqlite:///{root / 'mlflow.db'}"
    p = cs.params()
    base = {"MIA_HOME": str(root / "home"), "MIA_ARTIFACT_ROOT": str(root / "artifacts")}
    direct = load_config(cs.REPO / "params.yaml", env={**base, "MLFLOW_TRACKING_URI": db})
    direct = dataclasses.replace(direct, params=p)
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI",
                                                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
                                                "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                                "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    saved_uri = utils._tracking_uri
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # the watcher must see an outage in seconds, as the executor's poll does (tracking.py)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    server = proxy = None
    try:
        tracking = configure(direct, experiment="chaos")
        bundles = {"1": cs.tiny_bundle(root / "v1", p, gain=3.0, label="v1"),
                   "2": cs.tiny_bundle(root / "v2", p, gain=-3.0, label="v2")}
        for version, path in bundles.items():
            with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
                log_bundle(path)
            assert register(direct, run.info.run_id, "bundle", "ES",
                            metrics={"wf/sharpe": 1.0}) == version
        moves.set_canary(direct, "ES", "1", reason="chaos setup", client=tracking.client,
                         user="test")
        moves.promote(direct, "ES", reason="chaos setup", client=tracking.client, user="test")
        server, port = cs.start_mlflow(db, root / "server.log")
        proxy = cs.TcpProxy(("127.0.0.1", port))
        watched = dataclasses.replace(load_config(cs.REPO / "params.yaml", env={
            **base, "MLFLOW_TRACKING_URI": f"http://{proxy.address}"}), params=p)
        yield SimpleNamespace(direct=direct, client=tracking.client, watched=watched,
                              proxy=proxy, bundles=bundles, moves=moves)
    finally:
        if proxy is not None:
            proxy.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        mlflow.set_tracking_uri(saved_uri)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _move(reg: SimpleNamespace, version: str) -> None:
    # the operator promotes ``version``: canary first, then promote (audited, on the store)
    reg.moves.set_canary(reg.direct, "ES", version, reason="chaos", client=reg.client,
                         user="operator")
    reg.moves.promote(reg.direct, "ES", reason="chaos", client=reg.client, user="operator")


def _trade(rig: cs.Rig, items: Iterator[Any], n: int) -> list[str]:
    # n bars through the loop; the production version that decided each
    out = []
    for _ in range(n):
        rig.executor.handle(next(items))
        out.append(rig.executor.slots["production"].version)
    return out


def test_mlflow_down_during_an_alias_move_keeps_the_running_model_alerts_and_picks_it_up(
        registry, tmp_path):
    reg = registry
    p = cs.params()
    bars = cs.market(cs.WARM_BARS + 600, seed=61)
    rig = cs.build_rig(tmp_path / "state", p, reg.bundles["1"], bars)
    alerts = Alerts()
    watcher = ModelWatcher(reg.watched, "ES", history=rig.executor.history, alert=alerts,
                           poll_seconds=60)
    watcher.running("production", "1")
    rig.executor.svc.watcher = watcher
    items = iter(cs.rest(rig, bars))
    try:
        watcher.poll_once()
        assert alerts == []
        assert watcher.take() == []
        versions = _trade(rig, items, 100)

        # 1. the link to MLflow is down while production moves to v2
        before = rig.executor.stats.orders
        reg.proxy.down()
        _move(reg, "2")
        for _ in range(3):
            watcher.poll_once()
            versions += _trade(rig, items, 50)
        down_orders = rig.executor.stats.orders - before
        assert [(lv, code) for lv, code, _ in alerts] == [("warning", "registry_unreachable")] * 3
        assert "keeping the running models" in alerts[0][2]
        assert set(versions) == {"1"}  # v1 traded through the outage
        reg.proxy.up()
        watcher.poll_once()
        versions += _trade(rig, items, 50)
        assert len(alerts) == 3
        assert versions[-1] == "2"
        first = versions.index("2")
        assert versions[first:] == ["2"] * (len(versions) - first)  # one swap, between bars

        # 2. the link dies between seeing the move back to v1 and downloading its bundle
        _move(reg, "1")
        load = watcher.load

        def cut_then_load(version: str) -> Any:
            reg.proxy.down()
            return load(version)

        watcher.load = cut_then_load  # type: ignore[method-assign]
        watcher.poll_once()
        watcher.load = load  # type: ignore[method-assign]
        assert [(lv, code) for lv, code, _ in alerts[3:]] == [("critical", "model_load_failed")]
        assert "keeping v2" in alerts[3][2]
        versions += _trade(rig, items, 50)
        assert versions[-1] == "2"
        reg.proxy.up()
        watcher.poll_once()
        versions += _trade(rig, items, 50)
        assert versions[-1] == "1"
        assert len(alerts) == 4
    finally:
        rig.close()
    a = cs.audit(tmp_path / "state")
    swaps = _swaps(tmp_path / "state")
    assert swaps == ["2", "1"]  # journaled, once each
    assert cs.inconsistencies(a) == []
    bars_by = {v: int(np.sum(np.asarray(versions) == v)) for v in ("1", "2")}
    cs.record_case("mlflow_down", {
        "bars": len(versions), "polls_while_down": 3, "registry_unreachable_alerts": 3,
        "model_load_failed_alerts": 1, "orders_while_down": down_orders,
        "bars_by_version": bars_by, "swaps": len(swaps), "orders": len(a["orders"]),
        "lost": 0, "duplicated": len(a["bars"]) - len(set(a["bars"]))})


def _swaps(state: Path) -> list[str]:
    from executor.journal import Journal

    with Journal(state / "journal.sqlite", readonly=True) as j:
        return [str(r.payload["version"]) for r in j.read("model_swap")]
