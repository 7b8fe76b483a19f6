"""An Airflow task killed mid-write, then rerun: the output equals a clean run (issue 8, item 3).

The task is ``build_features`` of ``dags/mia_retrain.py``, whose body is
``mia.pipelines.features.run``: it writes the feature store (``data/features/symbol=…``:
Parquet partitions and ``spec.json``, built in a temporary folder swapped into place) and the
report ``reports/features.json``. Airflow runs the task in a subprocess; here that subprocess
(``python -m mia.pipelines.features``, two trade days of ES and MNQ) is SIGKILLed at four points
of its writes, then the task is rerun as Airflow's retry would:

- ``partition``: the second Parquet partition of ES is written but not yet renamed into the
  temporary folder (the build half done);
- ``swap``: a previous build exists; the new one is complete, and the kill lands just before it
  is swapped into place;
- ``swapped``: the swap is done; the kill lands before the previous build (now in the temporary
  folder) is deleted;
- ``report``: the store is written; the report is written to its temporary file, not renamed.

The rerun's store and report equal a clean run's, no temporary of the killed process is left
after the rerun, and a reader between the kill and the rerun always finds a whole build. The
writers are ``mia/data/feature_store.py`` (``FeatureStore.write``), ``mia/data/store.py``
(``atomic_write_parquet``) and ``mia/data/files.py`` (the swap and the sweep of dead writers'
temporaries). Figures: ``tests/benchmarks/results/chaos.json``, case ``airflow_kill``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.e2e import chaos_support as cs

POINTS = ("partition", "swap", "swapped", "report")

# the task's process, SIGKILLed by itself at one write: os.replace / the folder exchange are the
# moments a written file or folder becomes visible, so "just before" is the worst place to die
KILLED_TASK = r"""
import os, signal, sys
from pathlib import Path
point, argv = sys.argv[1], sys.argv[2:]
replace = os.replace
seen = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def killing_replace(src, dst, *a, **k):
    dst = Path(dst)
    if point == "partition" and dst.parent.name.startswith(".symbol=ES.tmp-"):
        seen.append(dst)
        if len(seen) == 2:
            die()
    if point == "report" and dst.name == "features.json":
        die()
    return replace(src, dst, *a, **k)

def killing_exchange(a, b):
    es = Path(a).name.startswith(".symbol=ES.tmp-") and Path(b).name == "symbol=ES"
    if point == "swap" and es:
        die()
    done = exchange(a, b)
    assert done, "this file system has no exchange rename: the swap points cannot be tested"
    if point == "swapped" and es:
        die()
    return done

import mia.data.files as files
exchange = files.exchange
os.replace = killing_replace
files.exchange = killing_exchange
from mia.pipelines.features import main
raise SystemExit(main(argv))
"""


def _task(home: Path, params: Path, point: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["--params", str(params), "--home", str(home)]
    cmd = [sys.executable, "-c", KILLED_TASK, point, *args] if point else \
        [sys.executable, "-m", "mia.pipelines.features", *args]
    return subprocess.run(cmd, cwd=cs.REPO, env={**os.environ, "PYTHONPATH": str(cs.REPO)},
                          capture_output=True, text=True, timeout=600, check=False)


def _outputs(home: Path) -> dict[str, Any]:
    store = home / "data" / "features"
    out: dict[str, Any] = {}
    for folder in sorted(store.glob("symbol=*")):
        out[f"{folder.name}/spec.json"] = (folder / "spec.json").read_text()
        for part in sorted(folder.glob("date=*.parquet")):
            out[f"{folder.name}/{part.name}"] = pd.read_parquet(part)
    report = home / "reports" / "features.json"
    if report.exists():  # the report's timings differ run to run; the rest must not
        out["features.json"] = re.sub(r" in [0-9.]+ s", " in <t> s", report.read_text())
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diff = sorted(set(a) ^ set(b))
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        equal = x.equals(y) if isinstance(x, pd.DataFrame) else x == y
        if not equal:
            diff.append(k)
    return diff


def _leftovers(home: Path) -> list[str]:
    roots = [home / "data" / "features", home / "reports"]
    return sorted(str(p.relative_to(home)) for r in roots if r.exists() for p in r.rglob("*")
                  if ".tmp" in p.name or ".old" in p.name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A clean run, and per kill point: the killed task, what a reader saw, the rerun."""
    from mia.config import load_config
    from mia.pipelines import ingest

    root = tmp_path_factory.mktemp("chaos-airflow")
    doc = yaml.safe_load((cs.REPO / "params.yaml").read_text())
    doc["data"].update(start="2024-01-02", end="2024-01-03")  # two trade days
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(doc))
    raw = root / "raw-home"
    ingest.run(load_config(params, env={"MIA_HOME": str(raw)}))

    def home(name: str) -> Path:
        h = root / name
        shutil.copytree(raw / "data" / "raw", h / "data" / "raw")
        return h

    clean = home("clean")
    done = _task(clean, params)
    assert done.returncode == 0, done.stderr[-2000:]
    out = SimpleNamespace(clean=_outputs(clean), points={})
    for point in POINTS:
        h = home(point)
        if point in ("swap", "swapped"):  # a previous build to replace
            assert _task(h, params).returncode == 0
        killed = _task(h, params, point)
        from mia.data.feature_store import FeatureStore
        from mia.errors import StoreError

        try:  # what a reader (the next task) sees between the kill and the rerun
            FeatureStore(h / "data" / "features").read("ES")
            seen = "the features"
        except StoreError as exc:
            seen = f"StoreError: {exc}"
        after_kill = _leftovers(h)
        rerun = _task(h, params)
        out.points[point] = SimpleNamespace(
            killed_rc=killed.returncode, reader=seen, after_kill=after_kill,
            rerun_rc=rerun.returncode, rerun_err=rerun.stderr[-2000:], outputs=_outputs(h),
            leftovers=_leftovers(h))
    cs.record_case("airflow_kill", {
        "task": "mia_retrain.build_features (mia.pipelines.features.run)",
        "kills": len(POINTS),
        **{p: {"killed_exit": r.killed_rc, "rerun_exit": r.rerun_rc,
               "rerun_equals_clean_run": _same(out.clean, r.outputs) == [],
               "reader_between_kill_and_rerun": r.reader.split(":")[0],
               "left_after_rerun": [re.sub(r"(tmp|old)-\d+", r"\1-<pid>", x)
                                    for x in r.leftovers]}
           for p, r in out.points.items()}})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_feature_task_killed_mid_write_and_rerun_equals_a_clean_run(runs, point):
    r = runs.points[point]
    assert r.killed_rc == -9  # the kill landed where the test says
    assert r.rerun_rc == 0, r.rerun_err
    assert _same(runs.clean, r.outputs) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_feature_task_killed_mid_write_leaves_no_partial_file_after_the_rerun(runs, point):
    assert runs.points[point].after_kill  # the kill left something behind for the rerun
    assert runs.points[point].leftovers == []


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_reader_between_the_kill_and_the_rerun_finds_a_whole_build(runs, point):
    seen = runs.points[point].reader
    if point in ("swap", "swapped"):  # a previous build existed: it or the new one is there
        assert seen == "the features"
    else:  # the first build was killed: nothing to read yet, said clearly
        assert seen == "the features" or seen.startswith("StoreError")


@pytest.mark.slow
def test_the_clean_run_wrote_the_store_and_the_report(runs):
    assert "symbol=ES/spec.json" in runs.clean
    assert "symbol=MNQ/spec.json" in runs.clean
    assert sum(k.endswith(".parquet") for k in runs.clean) == 4
    assert json.loads(runs.clean["features.json"])["built"] == {"ES": 350, "MNQ": 350}
