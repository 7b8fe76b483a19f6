import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "mlflow",
    "airflow",
    "stable_baselines3",
    "sklearn",
    "great_expectations",
    "evidently",
    "shap",
    "numba",
)


@pytest.mark.parametrize(
    "modules",
    [
        "mia, mia.cli, mia.config, mia.clock, mia.errors, mia.types",  # import mia, mia --help
        "mia.data.store, mia.data.ingest, mia.data.calendar",  # the data layer
        "mia.agents",  # the agent registry: builders import torch only when called
        # what the live executor reuses: the cost model, the accounting, the normaliser
        "mia.envs.costs, mia.envs.market, mia.features.normalize, mia.backtest.simulate",
    ],
)
def test_light_modules_import_no_heavy_stack(modules):
    code = f"import sys, {modules}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_numba_cache_directory_is_keyed_on_every_kernel_source():
    # a cached caller must never keep inlined machine code of a changed callee
    code = (
        "import numba, mia.features.online, mia._jit as j; "
        "print(numba.config.CACHE_DIR == str(j.CACHE_DIR), j.CACHE_DIR.name == j._digest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_kernel_digest_changes_with_any_kernel_source(monkeypatch, tmp_path):
    import shutil

    import mia._jit as jit

    before = jit._digest()
    copy = tmp_path / "mia"
    shutil.copytree(jit._ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(jit, "_ROOT", copy)
    assert jit._digest() == before
    (copy / "regime" / "filter.py").write_text((copy / "regime" / "filter.py").read_text() + "\n")
    assert jit._digest() != before
