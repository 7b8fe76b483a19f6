"""`mia demo` when the retrain fails (issue 6, item 7): it exits non-zero naming the failed task,
its exception and its log, after showing the DAG's progress task by task.

The demo's success path costs what tests/e2e/test_dag_retrain.py already pays for (the same DAG
on the same sizes); this test runs the short failure path on the real stack instead: a vendor
file with one bad tick is ingested, and Great Expectations stops the run at validate_raw.
"""

from __future__ import annotations

import pytest
import yaml

from tests.integration.conftest import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_failed_dag_run_fails_the_demo_with_the_task_its_reason_and_its_log(tmp_path):
    lines = (REPO / "tests" / "data" / "es_sample.csv").read_text().splitlines()
    row = lines[20].split(",")
    row[2] = row[4] = f"{float(row[4]) * 1.2:.2f}"  # close +20 %, high along: a bad tick
    lines[20] = ",".join(row)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["data"].update(source="file", file=str(tmp_path / "bad.csv"), symbols=["ES"],
                     start="2024-01-02", end="2024-01-02")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    home = tmp_path / "home"
    out = run(["mia", "demo", "--full", "--params", str(params), "--home", str(home)],
              timeout=900)
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    assert "== [2/4] retrain: airflow dags test mia_retrain" in out.stdout
    assert "✓ [ 2] ingest" in out.stdout  # progress, task by task
    assert "✗ [ 3] validate_raw" in out.stdout
    task_log = home / "demo" / "logs" / "tasks" / "validate_raw.log"
    err = out.stderr
    assert "mia_retrain run manual__" in err
    assert "ended failed: 1 task(s) failed" in err
    assert "validate_raw: mia.errors.DataValidationError: ES raw bars: GX suite raw_bars failed" \
        in err
    assert "expect_column_values_to_be_between on abs_log_return" in err
    assert f"task log: {task_log}" in err
    assert "GX suite raw_bars failed 1 check(s)" in task_log.read_text()
    assert (home / "demo" / "logs" / "dags_test.log").is_file()
    assert "== [3/4]" not in out.stdout  # nothing after the failed run
