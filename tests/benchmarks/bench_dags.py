"""DAG parse benchmarks (issue 6 item 9): how long Airflow's dag-processor spends per DAG file.

Each file is parsed by Airflow's own ``BundleDagBag`` in a fresh interpreter that has already
imported ``airflow.sdk``, ``pendulum`` and the plugins (what a dag-processor holds warm), so the
figure is the file's own top-level code: the DAG declaration, the plugin timetable, the assets.
Also recorded: the modules the parse added and whether any heavy one (mia.pipelines, torch,
mlflow, pandas, evidently, boto3…) was among them. Airflow's default
``dagbag_import_timeout`` is 30 s; best practice is well under a second.
Results: tests/benchmarks/results/dags.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mia.orchestration import airflow_env
from tests.benchmarks.common import measure, record

REPO = Path(__file__).resolve().parents[2]
FILES = ("mia_retrain.py", "mia_drift_watch.py", "mia_backup.py")
HEAVY = ("mia.pipelines", "torch", "mlflow", "pandas", "stable_baselines3", "evidently",
         "great_expectations", "shap", "boto3", "mia.data")

PARSE = """
import statistics, sys, time
from pathlib import Path
t0 = time.perf_counter()
import airflow.sdk, pendulum
from airflow import plugins_manager
from airflow.dag_processing.dagbag import BundleDagBag
plugins_manager.get_timetables_plugins()
warm = time.perf_counter() - t0
dags = Path({dags!r})
before = set(sys.modules)
times = []
for i in range(7):  # Airflow re-executes the file's top level on every parse
    t = time.perf_counter()
    bag = BundleDagBag(dag_folder=str(dags / {name!r}), bundle_path=dags, bundle_name="dags")
    times.append(time.perf_counter() - t)
    if bag.import_errors or len(bag.dags) != 1:
        raise SystemExit(f"parse failed: {{bag.import_errors}}")
new = sorted(set(sys.modules) - before)
heavy = [m for m in new if any(m == h or m.startswith(h + ".") for h in {heavy!r})]
RESULT = {{"first_parse_ms": round(times[0] * 1e3, 2),
          "reparse_median_ms": round(statistics.median(times[1:]) * 1e3, 2),
          "airflow_and_plugins_import_s": round(warm, 3),
          "modules_added": len(new), "heavy_modules": heavy[:10], "tasks": len(next(iter(
              bag.dags.values())).tasks)}}
"""


def main() -> None:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = airflow_env(Path(tmp) / "airflow")
        for name in FILES:
            code = PARSE.format(dags=str(REPO / "dags"), name=name, heavy=HEAVY)
            results[name] = measure(code, env=env)
    record("dags", results)


if __name__ == "__main__":
    main()
