import os
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



def _jit_state(value: str | None) -> subprocess.CompletedProcess[str]:
    code = ("import mia.regime.filter as f, mia._jit as j; "
            "print(j.JIT_CACHE, type(f.filter_step._cache).__name__)")
    env = {k: v for k, v in os.environ.items() if k != "MIA_JIT_CACHE"}
    if value is not None:
        env["MIA_JIT_CACHE"] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=False)


@pytest.mark.parametrize(("value", "expected"), [(None, ["True", "FunctionCache"]),
                                                 ("on", ["True", "FunctionCache"]),
                                                 ("off", ["False", "NullCache"]),
                                                 ("0", ["False", "NullCache"])])
def test_mia_jit_cache_switches_numbas_on_disk_cache(value, expected):
    # off: the kernels compile in memory and never read numba's pickled cache (the live path)
    out = _jit_state(value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected


def test_a_wrong_mia_jit_cache_value_says_which_values_work():
    out = _jit_state("maybe")
    assert out.returncode != 0
    assert "MIA_JIT_CACHE='maybe'" in out.stderr
    assert "'off'" in out.stderr


def test_the_live_start_turns_the_cache_off_unless_the_operator_keeps_it(monkeypatch):
    from executor.__main__ import _no_jit_cache

    monkeypatch.delenv("MIA_JIT_CACHE", raising=False)
    _no_jit_cache()
    assert os.environ["MIA_JIT_CACHE"] == "off"
    monkeypatch.setenv("MIA_JIT_CACHE", "on")
    _no_jit_cache()
    assert os.environ["MIA_JIT_CACHE"] == "on"
