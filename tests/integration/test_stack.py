"""The pinned stack installs into one virtualenv and imports together (requirements.lock)."""

import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.integration.conftest import REPO


@pytest.mark.parametrize(("dist", "prefix"), [
    ("apache-airflow", "3.3."), ("mlflow", "3."), ("great-expectations", "1."),
    ("evidently", "0.7."), ("torch", "2.13.0"),
])
def test_pinned_major_versions(dist, prefix):
    assert version(dist).startswith(prefix)


def test_pandas_stays_below_3_for_evidently():
    assert int(version("pandas").split(".")[0]) < 3


def test_installed_versions_match_the_lock():
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[name.lower().replace("_", "-")] = pinned
    wrong = {n: (p, version(n)) for n, p in pins.items() if version(n) != p}
    assert wrong == {}


def test_pip_check_is_clean():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_whole_stack_imports_in_one_interpreter():
    modules = ["airflow.sdk", "mlflow", "great_expectations", "evidently", "dvc.repo",
               "stable_baselines3", "sb3_contrib", "torch", "hmmlearn", "shap", "onnx",
               "onnxruntime", "numba", "boto3", "lightgbm", "prometheus_client", "psutil",
               "gymnasium", "sklearn"]
    code = f"import importlib; [importlib.import_module(m) for m in {modules!r}]; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]
