"""Reading `airflow dags test` output (real Airflow 3.3 output, trimmed: tests/data/airflow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mia.commands.demo_dag import DagProgress, run_dag
from tests.integration.conftest import REPO

DATA = REPO / "tests" / "data" / "airflow"


def _read(name: str) -> tuple[DagProgress, list[tuple[str, str]]]:
    progress, events = DagProgress(), []
    for i, line in enumerate((DATA / name).read_text().splitlines()):
        event = progress.feed(line, float(i))
        if event is not None:
            events.append((event[0], event[1].task_id))
    return progress, events


def test_a_successful_run_yields_each_task_with_its_state_name_and_xcom():
    progress, events = _read("dags_test_success.log")
    assert progress.run_id == "manual__2026-12-02T07:30:09.108740+00:00"
    assert progress.state == "success"
    assert events[:2] == [("start", "plan_run"), ("end", "plan_run")]
    by_id = {t.task_id: t for t in progress.tasks}
    assert [t.state for t in progress.tasks] == ["success"] * 4
    assert by_id["plan_run"].returned == ["ES"]
    assert by_id["plan_run"].try_number == 1
    assert by_id["plan_run"].label == "plan_run"  # not mapped: no index, no symbol
    assert by_id["train"].label == "train ES sac fold 1"
    assert by_id["train"].note == "validation Sharpe 40.72"
    reg = by_id["package_register"]
    assert reg.note == "mia-ES v1 PASSED the gate"
    assert progress.returned("package_register") == [reg.returned]
    assert reg.returned["model_version"] == {"name": "mia-ES", "version": "1"}
    assert progress.failed() == []


def test_a_failed_task_keeps_its_exception_with_the_detail_lines():
    progress, _ = _read("dags_test_failure.log")
    assert progress.state == "failed"
    (failed,) = progress.failed()
    assert failed.task_id == "validate_raw"
    assert failed.error[0] == ("mia.errors.DataValidationError: ES raw bars: GX suite raw_bars "
                               "failed 1 check(s) (59 expectations)")
    assert failed.error[1].startswith("  - expect_column_values_to_be_between on abs_log_return")
    assert failed.error[-1].startswith("Nothing downstream may use it")
    assert not any("File " in line for line in failed.error)  # frames are not the message


def test_a_chained_exception_reports_the_last_one():
    progress = DagProgress()
    lines = ["2026-12-02T07:46:33.456937Z [info     ] [DAG TEST] starting task_id=ingest "
             "map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1501",
             "2026-12-02T07:46:43.572656Z [error    ] Task failed with exception     [task]",
             "Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "ConnectionError: refused", "",
             "The above exception was the direct cause of the following exception:", "",
             "Traceback (most recent call last):", '  File "y.py", line 2, in run',
             "mia.errors.TemporaryError: MLflow at http://x:5000 is unreachable",
             "2026-12-02T07:46:43.610036Z [info     ] Task instance state updated    [airflow] "
             "new_state=failed rows_affected=1"]
    for line in lines:
        progress.feed(line, 0.0)
    (task,) = progress.failed()
    assert task.error == ["mia.errors.TemporaryError: MLflow at http://x:5000 is unreachable"]


def test_a_return_value_that_is_not_a_literal_is_left_unread():
    progress = DagProgress()
    progress.feed("[DAG TEST] starting task_id=t map_index=2 [airflow.sdk] loc=dag.py:1", 0.0)
    progress.feed("2026 [info ] Done. Returned value was: <object at 0x1> [airflow.task] "
                  "loc=python.py:233", 0.0)
    (task,) = progress.tasks
    assert task.returned is None
    assert task.label == "t [2]"


def _fake_airflow(tmp_path: Path, log: str, code: int) -> list[str]:
    script = tmp_path / "fake_airflow.py"
    script.write_text(f"import sys\nsys.stdout.write(open({str(DATA / log)!r}).read())\n"
                      f"sys.exit({code})\n")
    return [sys.executable, str(script)]


def test_run_dag_writes_the_whole_log_and_one_file_per_task(tmp_path):
    shown = []
    run = run_dag({}, {}, tmp_path, show=lambda e, t: shown.append((e, t.label)),
                  airflow_logs=tmp_path / "airflow_logs",
                  command=_fake_airflow(tmp_path, "dags_test_success.log", 0))
    assert run.ok
    assert run.log.read_text() == (DATA / "dags_test_success.log").read_text()
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [
        "package_register.0.log", "plan_run.log", "start_walk_forward.0.log", "train.5.log"]
    section = (tmp_path / "tasks" / "train.5.log").read_text()
    assert section.splitlines()[0].endswith("starting task_id=train map_index=5 "
                                            "[airflow.sdk.definitions.dag] loc=dag.py:1501")
    assert "'agent': 'sac', 'fold': 1" in section
    assert ("end", "train ES sac fold 1") in shown
    # where the api-server reads task logs (Airflow's default log_filename_template)
    run_dir = (tmp_path / "airflow_logs" / "dag_id=mia_retrain"
               / "run_id=manual__2026-12-02T07:30:09.108740+00:00")
    assert (run_dir / "task_id=train" / "map_index=5" / "attempt=1.log").read_text() == section
    assert (run_dir / "task_id=plan_run" / "attempt=1.log").is_file()


def test_a_failed_run_names_the_task_its_reason_and_its_log(tmp_path):
    run = run_dag({}, {}, tmp_path, show=lambda e, t: None,
                  command=_fake_airflow(tmp_path, "dags_test_failure.log", 1))
    assert not run.ok
    text = run.failure()
    assert "mia_retrain run manual__2026-12-02T07:46:16.569881+00:00 ended failed" in text
    assert "validate_raw: mia.errors.DataValidationError: ES raw bars" in text
    assert f"task log: {tmp_path / 'tasks' / 'validate_raw.log'}" in text
    assert str(tmp_path / "dags_test.log") in text


def test_a_run_that_dies_before_any_task_shows_the_end_of_its_output(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import sys\nprint('Error: Failed to load all files: dags/mia_retrain.py')\n"
                      "sys.exit(1)\n")
    run = run_dag({}, {}, tmp_path, show=lambda e, t: None, command=[sys.executable, str(script)])
    assert not run.ok
    assert "(airflow exit 1) before any task failed" in run.failure()
    assert "Failed to load all files" in run.failure()


@pytest.mark.parametrize("name", ["dags_test_success.log", "dags_test_failure.log"])
def test_every_started_task_ends(name):
    _, events = _read(name)
    starts = [t for e, t in events if e == "start"]
    assert starts == [t for e, t in events if e == "end"]
    assert starts
