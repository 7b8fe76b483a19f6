"""The retrain DAG as `make demo` runs it: `airflow dags test mia_retrain` on SQLite, then the
drift watch on a live feature log (issue 6, items 1, 2, 5 and 9).

One Airflow home and one MIA home for the module: the retrain (tiny, planted-alpha data, CI-sized
agents) registers a version that passes the gate and gets `canary`; rerunning tasks with
`airflow tasks test` overwrites their outputs and adds nothing; the plugin links the tasks to
MLflow; after a promotion the drift watch stays quiet on live rows drawn from the training
reference and emits the drift asset event, with an alert line, on shifted rows.

Sizes: three and a half weeks of ES and MNQ, the walk-forward of test_retrain_to_canary.py
(4,000 train / 2,000 validation bars, 2 folds, 6,000 steps, widths 64), and
`features.label_horizon: 1` (purge stays 15): the planted signal pays off one bar ahead, so the
SHAP selection scores features on the horizon the signal has — with the default 15 bars the
one-bar imbalance ranks ~200th of 354 and is not selected, and no candidate can pass.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from mia.orchestration import airflow_env
from tests.integration.conftest import BIN, REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

UI = "http://mlflow.test:5000"


def tiny_params(path: Path) -> Path:
    """:return: ``path``, holding params.yaml with the sizes of the module docstring."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["data"].update(start="2024-01-02", end="2024-01-26", planted_alpha=0.5)
    p["features"]["label_horizon"] = 1
    p["selection"].update(n_selected=20, folds=2)
    p["drift"]["reference_bars"] = 1500
    p["walk_forward"].update(train_bars=4000, validation_bars=2000, folds=2, holdout_bars=2000)
    for name, a in p["agents"].items():
        for key in [k for k in a if k.endswith("arch")]:
            a[key] = [64, 64]
        a["gamma"] = 0.5
        if name.startswith("ppo"):
            a["n_steps"] = 1024
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


class Stack:
    """An Airflow home + MIA home and the commands a user runs against them."""

    def __init__(self, root: Path) -> None:
        self.home = root / "mia"
        self.airflow_home = root / "airflow"
        self.params = tiny_params(root / "params.yaml")
        self.env = airflow_env(self.airflow_home, mia_home=self.home, params=self.params)
        self.env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{self.home}/mlflow.db",
                         "MIA_MLFLOW_UI_URL": UI, "PATH": f"{BIN}:{self.env.get('PATH', '')}",
                         "MIA_TORCH_THREADS": "1"})

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                             timeout=timeout, check=False, cwd=self.home.parent)
        assert out.returncode == 0, f"{args}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        return out

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "airflow"), *args)

    def db(self, query: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.airflow_home / "airflow.db") as c:
            return c.execute(query, params).fetchall()

    def xcom(self, run_id: str, task_id: str, map_index: int = -1) -> dict:
        rows = self.db("select value from xcom where run_id=? and task_id=? and map_index=? "
                       "and key='return_value'", run_id, task_id, map_index)
        assert len(rows) == 1, (task_id, map_index, rows)
        return json.loads(rows[0][0])

    def mlflow(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.env["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("dag_retrain"))
    s.airflow("db", "migrate")
    out = s.airflow("dags", "test", "mia_retrain", "-c",
                    json.dumps({"symbols": ["ES"], "timesteps": 6000}))
    s.retrain_log = out.stdout + out.stderr  # type: ignore[attr-defined]
    (s.run_id,), = s.db("select run_id from dag_run where dag_id='mia_retrain'")  # type: ignore[attr-defined]
    return s


def _active_runs(client, experiment_id: str) -> dict[str, dict[str, str]]:
    return {r.info.run_id: dict(r.data.tags) for r in client.search_runs([experiment_id],
                                                                         max_results=1000)}


def test_retrain_dag_registers_a_canary_with_its_reports(stack):
    from mia.data.calendar import is_trading_day

    tis = stack.db("select task_id, map_index, state from task_instance where run_id=?",
                   stack.run_id)
    assert {state for _, _, state in tis} == {"success"}, tis
    assert len([t for t in tis if t[0] == "train"]) == 10  # 5 agents x 2 folds
    # every task hands over one XCom: ids and URIs, no data
    keys = stack.db("select distinct key from xcom where run_id=?", stack.run_id)
    assert keys == [("return_value",)]
    reg = stack.xcom(stack.run_id, "package_register", 0)
    assert reg["passed"] is True, reg["reasons"]
    assert reg["model_version"] == {"name": "mia-ES", "version": "1"}
    client = stack.mlflow()
    assert str(client.get_model_version_by_alias("mia-ES", "canary").version) == "1"
    start = stack.xcom(stack.run_id, "start_walk_forward", 0)
    parent = start["mlflow_run"]["run_id"]
    attached = {a.path for a in client.list_artifacts(parent, "reports")} | \
        {a.path for a in client.list_artifacts(parent, "reports/drift")}
    assert {"reports/ingest.json", "reports/validation_raw.json",
            "reports/drift/drift.html"} <= attached
    tags = client.get_run(parent).data.tags
    assert tags["mia.airflow_run_id"] == stack.run_id
    # the manual run covers the last closed CME session (17:00 ET = 21:00 or 22:00 UTC) and is
    # keyed by its trade date
    (end,), = stack.db("select data_interval_end from dag_run where run_id=?", stack.run_id)
    close = datetime.fromisoformat(end).replace(tzinfo=UTC)
    assert close.hour in (21, 22)
    assert close.minute == 0
    assert tags["mia.partition"] == close.date().isoformat()
    assert is_trading_day(close.date())


def test_plugin_links_tasks_and_the_dag_run_to_mlflow(stack):
    probe = r'''
import json, os, sys
sys.path.insert(0, os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"])
from airflow.models.taskinstancekey import TaskInstanceKey
import mia_plugin
run_id = sys.argv[1]
def link(cls, task, index):
    key = TaskInstanceKey(dag_id="mia_retrain", task_id=task, run_id=run_id, map_index=index)
    return cls().get_link(None, ti_key=key)
print("PROBE" + json.dumps({
    "start": link(mia_plugin.MLflowRunLink, "start_walk_forward", 0),
    "train": link(mia_plugin.MLflowRunLink, "train", 3),
    "version": link(mia_plugin.MLflowModelVersionLink, "package_register", 0),
    "ingest": link(mia_plugin.MLflowRunLink, "ingest", -1),
    "page": mia_plugin.mlflow_page("mia_retrain", run_id)}))
'''
    out = stack.run(sys.executable, "-c", probe, stack.run_id)
    got = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))[5:])
    start = stack.xcom(stack.run_id, "start_walk_forward", 0)["mlflow_run"]
    train = stack.xcom(stack.run_id, "train", 3)["mlflow_run"]
    assert got["start"] == f"{UI}/#/experiments/{start['experiment_id']}/runs/{start['run_id']}"
    assert got["train"].endswith(f"/runs/{train['run_id']}")
    assert train != start
    assert got["version"] == f"{UI}/#/models/mia-ES/versions/1"
    assert got["ingest"] == ""  # no MLflow run: the button is disabled
    # parent (start, evaluate), 10 folds, ensemble, register run and model version
    assert got["page"].count("<li>") == 15
    assert "MLflow model version" in got["page"]


def test_rerunning_tasks_overwrites_their_outputs_and_duplicates_nothing(stack):
    client = stack.mlflow()
    start = stack.xcom(stack.run_id, "start_walk_forward", 0)
    exp = start["mlflow_run"]["experiment_id"]
    before = _active_runs(client, exp)
    ingest = stack.xcom(stack.run_id, "ingest")
    job = 1  # fold-major jobs: index 1 is ppo on fold 0 (a fast agent)
    old_child = stack.xcom(stack.run_id, "train", job)["mlflow_run"]["run_id"]
    for task, index in (("ingest", -1), ("start_walk_forward", 0), ("train", job),
                        ("fit_ensemble", 0), ("package_register", 0)):
        out = stack.airflow("tasks", "test", "mia_retrain", task, stack.run_id,
                            "--map-index", str(index))
        assert "Returned value was" in out.stdout + out.stderr
    after = _active_runs(client, exp)
    assert len(after) == len(before)  # one active run per task key, as before
    assert start["mlflow_run"]["run_id"] in after  # the walk-forward's parent was reused
    assert old_child not in after  # the retrained fold replaced its run ...
    new = [r for r, t in after.items() if t.get("mia.agent") == "ppo" and t.get("mia.fold") == "0"]
    assert len(new) == 1
    assert new[0] not in before
    assert client.get_run(old_child).info.lifecycle_stage == "deleted"
    assert json.loads((stack.home / "reports" / "ingest.json").read_text())["sha256"] == \
        ingest["sha256"]
    assert [str(v.version) for v in client.search_model_versions("name='mia-ES'")] == ["1"]
    assert str(client.get_model_version_by_alias("mia-ES", "canary").version) == "1"


def _write_live_log(stack, end: datetime, shift: float) -> None:
    """Rows of the bundle's features in the executor's layout: the training reference window's
    values (the distribution the bundle's PSI reference was built on), moved by ``shift``
    standard deviations, stamped as the last 1,380 minutes before ``end``."""
    import pandas as pd

    from mia.config import load_config
    from mia.drift.live_log import day_dir
    from mia.pipelines.features import feature_store
    from mia.registry.bundle import read_bundle

    cfg = load_config(stack.params, env={**stack.env})
    bundle_dir = next((stack.home / "models" / "bundles" / "ES").glob("*/bundle.json")).parent
    spec = read_bundle(bundle_dir).spec
    names, warm = list(spec.names), spec.warmup  # the drift stage's reference starts there
    store = feature_store(cfg)
    frame = store.read("ES", cfg.params.data.start, cfg.params.data.end)
    values = frame.iloc[warm: warm + 1380][names].to_numpy(np.float64)
    values = values + shift * np.nanstd(values, axis=0)
    ts = pd.date_range(end=end, periods=len(values), freq="1min", tz="UTC")
    live = pd.DataFrame(values, columns=names)
    live.insert(0, "model_version", "1")
    live.insert(0, "symbol", "ES")
    live.insert(0, "ts", ts)
    for day, rows in live.groupby(live["ts"].dt.date):
        folder = day_dir(stack.home, "ES", day)
        folder.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(folder / f"part-{int(rows['ts'].iloc[0].value)}-1-0.parquet",
                        index=False)


def test_drift_watch_alerts_and_triggers_the_retrain_asset_only_on_drift(stack):
    stack.run(str(BIN / "mia"), "registry", "promote", "--reason", "e2e: canary review passed",
              "--params", str(stack.params))
    calm_end = datetime(2024, 3, 4, 12, tzinfo=UTC)
    drift_end = calm_end + timedelta(days=3)
    _write_live_log(stack, calm_end, shift=0.0)
    _write_live_log(stack, drift_end, shift=3.0)
    calm = stack.airflow("dags", "test", "mia_drift_watch", calm_end.isoformat())
    assert "ALERT drift" not in calm.stdout + calm.stderr
    events = "select e.extra from asset_event e join asset a on a.id = e.asset_id " \
             "where a.name = 'mia_feature_drift'"
    assert stack.db(events) == []
    (calm_run,), = stack.db("select run_id from dag_run where dag_id='mia_drift_watch'")
    verdict = stack.xcom(calm_run, "check_drift")
    assert verdict["drifted"] == []
    assert verdict["symbols"]["ES"]["version"] == "1"
    assert verdict["symbols"]["ES"]["rows"] == 1380
    states = dict(stack.db("select task_id, state from task_instance where run_id=?", calm_run))
    assert states == {"check_drift": "success", "drifted": "success", "signal_drift": "skipped"}
    assert Path(verdict["symbols"]["ES"]["html"].removeprefix("file://")).is_file()

    stack.airflow("dags", "unpause", "mia_retrain")  # a paused DAG is not queued by assets
    drifted = stack.airflow("dags", "test", "mia_drift_watch", drift_end.isoformat())
    alerts = [line for line in (drifted.stdout + drifted.stderr).splitlines()
              if "[error" in line and "] ALERT drift ES:" in line]  # the logged alert line
    assert len(alerts) == 1, alerts
    (extra,), = stack.db(events)
    assert json.loads(extra)["symbols"] == ["ES"]
    # the event is what mia_retrain's schedule waits for
    assert stack.db("select target_dag_id from asset_dag_run_queue") == [("mia_retrain",)]


def test_a_failed_validation_stops_the_run_at_that_task_without_retrying(tmp_path):
    # a vendor file with one bad tick (close +20 %, high along): ingest takes it, GX refuses it
    lines = (REPO / "tests" / "data" / "es_sample.csv").read_text().splitlines()
    row = lines[20].split(",")
    row[2] = row[4] = f"{float(row[4]) * 1.2:.2f}"
    lines[20] = ",".join(row)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    s = Stack(tmp_path)
    p = yaml.safe_load(s.params.read_text())
    p["data"].update(source="file", file=str(tmp_path / "bad.csv"), symbols=["ES"],
                     start="2024-01-02", end="2024-01-02")
    s.params.write_text(yaml.safe_dump(p, sort_keys=False))
    s.airflow("db", "migrate")
    out = subprocess.run([str(BIN / "airflow"), "dags", "test", "mia_retrain"], env=s.env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode != 0
    log = out.stdout + out.stderr
    assert "GX suite raw_bars failed 1 check(s)" in log
    assert "expect_column_values_to_be_between on abs_log_return: 2 unexpected" in log
    tis = {t: (state, tries) for t, state, tries in
           s.db("select task_id, state, try_number from task_instance")}
    assert tis["ingest"][0] == "success"
    assert tis["validate_raw"] == ("failed", 1)  # the retry policy: bad data is not retried
    assert tis["regimes"][0] == "upstream_failed"
    assert tis["package_register"][0] == "upstream_failed"
