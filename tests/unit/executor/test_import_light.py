"""The executor stays light (design.md section 3, rule 3): a fresh interpreter that imports every
executor module, or runs a whole replay, never loads the training, orchestration or validation
stack; MLflow only comes with a registry poll (executor/models.py, lazily)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FORBIDDEN = ("airflow", "great_expectations", "evidently", "shap", "dvc", "stable_baselines3",
             "sb3_contrib", "torch", "gymnasium", "sklearn", "mlflow")
REPORT = f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"


def loaded(code: str) -> list[str]:
    """:return: the forbidden modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}\n{REPORT}"],
                         capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_entry_points_loads_no_heavy_stack():
    assert loaded("import executor.app, executor.loop, executor.__main__, executor.admin, "
                  "executor.models") == []


def test_importing_every_executor_module_loads_no_heavy_stack():
    code = ("import importlib, pkgutil, executor\n"
            "names = [m.name for m in pkgutil.walk_packages(executor.__path__, 'executor.')]\n"
            "assert len(names) > 20, names\n"
            "for name in names:\n"
            "    importlib.import_module(name)")
    assert loaded(code) == []


@pytest.mark.slow
def test_a_whole_replay_loads_no_heavy_stack(world, tmp_path):
    # the live path imports lazily inside functions: run it, then look
    args = ["--replay", "--bundle", str(world.production), "--symbol", "ES", "--cross", "MNQ",
            "--start", "2024-01-04", "--end", "2024-01-04", "--warm-start", "2024-01-02",
            "--home", str(world.home), "--params", str(REPO / "params.yaml"),
            "--out", str(tmp_path / "decisions.csv")]
    assert loaded(f"from executor.__main__ import main\nassert main({args!r}) == 0") == []
    lines = (tmp_path / "decisions.csv").read_text().splitlines()
    assert lines[0] == "ts_ns,book,target"
    assert len(lines) == 1 + 1380


def test_python_dash_m_executor_help_describes_both_modes():
    out = subprocess.run([sys.executable, "-m", "executor", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m executor")
    for flag in ("--config", "--replay", "--bundle", "--canary-share"):
        assert flag in out.stdout


def test_python_dash_m_executor_without_a_mode_says_what_to_pass():
    out = subprocess.run([sys.executable, "-m", "executor"], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=False)
    assert out.returncode == 2
    assert "pass --config executor.yaml, or --replay" in out.stderr
