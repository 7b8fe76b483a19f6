"""The DAG files as Airflow sees them: a DagBag with no import errors, the graph of each DAG,
its schedule through Airflow's serialization (the plugin's timetable), the task defaults, and
each file's parse time (recorded, not asserted) and imports (nothing heavy at parse time)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from mia.orchestration import airflow_env
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

DAG_FILES = ("mia_retrain.py", "mia_drift_watch.py", "mia_backup.py", "mia_canary_review.py")
OURS = ("mia_retrain", "mia_drift_watch", "mia_backup", "mia_canary_review")
# a DAG file's parse must not pull these in: imports are top-level code (Airflow best practices)
HEAVY = ("mia.pipelines", "torch", "mlflow", "pandas", "stable_baselines3", "evidently",
         "great_expectations", "shap", "boto3", "mia.data")

PROBE = r'''
import json, sys, time
from pathlib import Path
import airflow.sdk, pendulum  # warm: every DAG file imports them, the first would pay alone
from airflow import plugins_manager
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.serialization.encoders import coerce_to_core_timetable

dags, files = Path(sys.argv[1]), sys.argv[2:]
plugins_manager.get_timetables_plugins()  # plugins load once per process, before any parse
out = {"files": {}, "dags": {},
       "timetables": sorted(plugins_manager.get_timetables_plugins()),
       "links": sorted(l.name for l in plugins_manager.get_global_operator_extra_links())}
for name in files:
    before = set(sys.modules)
    t = time.perf_counter()
    bag = BundleDagBag(dag_folder=str(dags / name), bundle_path=dags, bundle_name="dags-folder")
    seconds = time.perf_counter() - t
    out["files"][name] = {"seconds": seconds, "errors": {str(k): str(v) for k, v in
                                                         bag.import_errors.items()},
                          "dags": sorted(bag.dags),
                          "new_modules": sorted(set(sys.modules) - before)}
    for dag in bag.dags.values():
        back = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        tt = coerce_to_core_timetable(dag.timetable)
        inner = getattr(back.timetable, "timetable", None)
        assets = [a.uri for _, a in back.timetable.asset_condition.iter_assets()]
        tasks = {}
        for t in dag.tasks:
            policy = t.retry_policy.serialize() if t.retry_policy else None
            tasks[t.task_id] = {
                "upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                "doc_md": bool(t.doc_md and t.doc_md.strip()),
                "mapped": "Mapped" in type(t).__name__,
                "multiple_outputs": bool(getattr(t, "multiple_outputs", False)),
                "outlets": [getattr(o, "uri", str(o)) for o in t.outlets], "policy": policy}
        out["dags"][dag.dag_id] = {
            "catchup": dag.catchup, "tags": sorted(dag.tags), "doc_md": len(dag.doc_md or ""),
            "timetable": type(back.timetable).__name__,
            "inner": None if inner is None else [type(inner).__name__, inner.serialize()],
            "same_after_serialization": inner == getattr(dag.timetable, "timetable", None)
                                        if inner is not None else True,
            "summary": back.timetable.summary, "assets": assets,
            "max_active_runs": dag.max_active_runs, "params": sorted(dag.params), "tasks": tasks}
print("PROBE" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    env = airflow_env(tmp_path_factory.mktemp("airflow"))
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "dags"), *DAG_FILES],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def test_dagbag_parses_every_dag_file_without_import_errors(probe, record_property):
    for name in DAG_FILES:
        f = probe["files"][name]
        assert f["errors"] == {}, f["errors"]
        assert f["dags"] == [name.removesuffix(".py")]
        record_property(f"parse_seconds_{name}", round(f["seconds"], 4))
        print(f"{name}: parsed in {f['seconds'] * 1000:.0f} ms")  # figures: bench_dags.py


def test_parsing_a_dag_file_imports_no_pipeline_or_heavy_library(probe):
    for name in DAG_FILES:
        heavy = [m for m in probe["files"][name]["new_modules"]
                 if any(m == h or m.startswith(h + ".") for h in HEAVY)]
        assert heavy == [], f"{name} imports at parse time: {heavy[:10]}"


def test_dag_files_import_only_airflow_sdk_pendulum_stdlib_and_the_timetable_at_top_level():
    # _retry: the shared retry policy, itself held to the same rule
    allowed = set(sys.stdlib_module_names) | {"__future__", "airflow", "pendulum", "cme_timetable",
                                              "_retry"}
    for name in [*DAG_FILES, "_retry.py"]:
        tree = ast.parse((REPO / "dags" / name).read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] in allowed, f"{name}: top-level import {mod}"
                if mod.startswith("airflow"):
                    assert mod == "airflow.sdk", f"{name}: import from airflow.sdk, not {mod}"


def test_plugin_registers_the_timetable_and_the_mlflow_links(probe):
    assert probe["timetables"] == ["cme_timetable.CMECloseTimetable"]
    assert probe["links"] == ["MLflow model version", "MLflow run"]


def test_retrain_runs_the_stages_in_order_with_training_mapped_over_agent_and_fold(probe):
    tasks = probe["dags"]["mia_retrain"]["tasks"]
    chain = ["plan_run", "ingest", "validate_raw", "regimes", "build_features",
             "validate_features", "select_features", "drift_report", "start_walk_forward",
             "training_jobs", "train", "evaluate_walk_forward", "fit_ensemble",
             "package_register"]
    assert set(tasks) == set(chain)
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in tasks[after]["upstream"], f"{before} must run before {after}"
    # regime probabilities are features: the HMM is fitted before the feature build
    assert tasks["build_features"]["upstream"] == ["regimes"]
    for mapped in ("start_walk_forward", "train", "evaluate_walk_forward", "fit_ensemble",
                   "package_register"):
        assert tasks[mapped]["mapped"], mapped
    assert not tasks["ingest"]["mapped"]


def test_retrain_is_scheduled_by_the_cme_close_or_the_drift_asset(probe):
    d = probe["dags"]["mia_retrain"]
    assert d["timetable"] == "AssetOrTimeSchedule"
    assert d["inner"] == ["CMECloseTimetable", {"settle_minutes": 15}]
    assert d["same_after_serialization"]
    assert d["assets"] == ["mia_feature_drift"]
    assert d["max_active_runs"] == 1
    assert d["params"] == ["symbols", "timesteps"]
    signal = probe["dags"]["mia_drift_watch"]["tasks"]["signal_drift"]
    assert signal["outlets"] == d["assets"]  # the watch emits exactly what the retrain awaits


def test_drift_watch_is_hourly_and_backup_daily(probe):
    watch, backup = probe["dags"]["mia_drift_watch"], probe["dags"]["mia_backup"]
    assert watch["timetable"] == "CronTriggerTimetable"
    assert "0 * * * *" in watch["summary"]
    assert backup["timetable"] == "CronTriggerTimetable"
    assert "30 0 * * *" in backup["summary"]
    assert list(watch["tasks"]["signal_drift"]["upstream"]) == ["check_drift", "drifted"]
    assert backup["tasks"]["apply_retention"]["upstream"] == ["upload"]


def test_canary_review_runs_after_each_cme_close_with_one_mapped_review_per_symbol(probe):
    d = probe["dags"]["mia_canary_review"]
    assert d["timetable"] == "CMECloseTimetable"
    assert d["summary"] == "CME close +30m"
    assert d["max_active_runs"] == 1  # two reviews at once could both step a share
    tasks = d["tasks"]
    assert set(tasks) == {"symbols", "review", "alert_rollbacks"}
    assert tasks["review"]["mapped"]
    assert tasks["review"]["upstream"] == ["symbols"]
    assert tasks["alert_rollbacks"]["upstream"] == ["review"]


def test_every_dag_and_task_has_docs_tags_no_catchup_and_retries_only_transient_errors(probe):
    for dag_id in OURS:
        d = probe["dags"][dag_id]
        assert d["catchup"] is False, dag_id
        assert "mia" in d["tags"], dag_id
        assert d["doc_md"] > 200, dag_id
        for task_id, t in d["tasks"].items():
            assert t["retries"] >= 2, f"{dag_id}.{task_id}"
            assert t["doc_md"], f"{dag_id}.{task_id}"
            # one XCom per task (ids and URIs), not one per key of its dict
            assert not t["multiple_outputs"], f"{dag_id}.{task_id}"
            rules = {r["exception"] if isinstance(r["exception"], str) else r["exception"][0]:
                     r["action"] for r in t["policy"]["rules"]}
            assert rules == {"mia.errors.TemporaryError": "retry", "mia.errors.MiaError": "fail"}
            assert t["policy"]["default"] == "fail"
