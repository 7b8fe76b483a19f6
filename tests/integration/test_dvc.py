"""`dvc repro` runs the pipeline stages from params.yaml, offline, reproducibly."""

import json
import shutil

import pytest
import yaml

from tests.integration.conftest import REPO, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _workspace(tmp_path, **data):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "great_expectations", work / "great_expectations",
                    ignore=shutil.ignore_patterns("uncommitted"))
    shutil.copytree(REPO / "mia", work / "mia", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(symbols=["ES"], start="2024-01-02", end="2024-01-04")
    params["data"].update(data)
    params["selection"].update(n_selected=20, folds=2)
    params["drift"]["reference_bars"] = 1500
    # two weeks of bars: a walk-forward sized to them (selection reads only the rows before its
    # first validation window)
    params["walk_forward"].update(train_bars=3000, validation_bars=1500, folds=2,
                                  holdout_bars=1000)
    # the train stage on a CI budget: tiny nets, a few hundred steps per (agent, fold)
    for name, agent in params["agents"].items():
        for key in [k for k in agent if k.endswith("arch")]:
            agent[key] = [16]
        agent["total_timesteps"] = 256 if name.startswith("ppo") else 300
        agent["batch_size"] = 32
        if name.startswith("ppo"):
            agent["n_steps"] = 256
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text(".mia/\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(cmd, cwd=work).returncode == 0
    shutil.copy(REPO / ".dvcignore", work / ".dvcignore")
    return work


def test_dvc_repro_builds_the_raw_store_and_then_is_up_to_date(tmp_path):
    work = _workspace(tmp_path)
    first = run(["dvc", "repro", "ingest"], cwd=work)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((work / ".mia" / "reports" / "ingest.json").read_text())
    assert report["rows"] == {"ES": 3 * 1380}
    second = run(["dvc", "repro", "ingest"], cwd=work)
    assert second.returncode == 0, second.stderr
    assert "didn't change" in second.stdout or "up to date" in second.stdout, second.stdout

    # the same params through the CLI give the same content hash: one code path, two callers
    home = tmp_path / "cli-home"
    cli = run(["mia", "data", "generate", "--params", str(work / "params.yaml")],
              env={"MIA_HOME": str(home)})
    assert cli.returncode == 0, cli.stderr
    assert report["sha256"]["ES"][:12] in cli.stdout


def test_changing_a_data_param_makes_the_stage_stale(tmp_path):
    work = _workspace(tmp_path)
    assert run(["dvc", "repro", "ingest"], cwd=work).returncode == 0
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["seed"] = 8
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], cwd=work)
    assert "data.seed" in status.stdout, status.stdout


def test_full_dvc_repro_runs_every_stage_then_is_up_to_date(tmp_path):
    work = _workspace(tmp_path, end="2024-01-16")  # 10 sessions: past the longest warm-up
    first = run(["dvc", "repro"], cwd=work, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("validate_raw", "regimes", "features", "validate_features", "select", "drift",
                  "train", "ensemble", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = run(["dvc", "metrics", "show", "--json"], cwd=work)
    assert metrics.returncode == 0, metrics.stderr
    shown = json.loads(metrics.stdout)
    train = next(iter(shown.values()))["data"][".mia/reports/train.json"]["data"]["ES"]
    assert set(train) >= {"best_agent", "ppo", "sac", "buy_and_hold", "logistic_regression"}
    register = next(iter(shown.values()))["data"][".mia/reports/register.json"]["data"]["ES"]
    assert register["version"] == "1"
    assert isinstance(register["gate_passed"], bool)
    assert {"bundle", "solo ppo", "baseline buy_and_hold"} <= set(register), register
    assert (work / ".mia" / "reports" / "holdout" / "ES_holdout.png").is_file()
    spec = json.loads((work / ".mia" / "models" / "selection" / "ES" / "spec.json").read_text())
    assert len(spec["features"]) == 20
    assert (work / ".mia" / "reports" / "drift" / "ES" / "drift.html").is_file()
    status = run(["dvc", "status"], cwd=work)
    assert "up to date" in status.stdout, status.stdout

    # the same params and seed train the same agents: a forced rerun changes no metric
    before = (work / ".mia" / "reports" / "train.json").read_text()
    again = run(["dvc", "repro", "--force", "--single-item", "train"], cwd=work, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (work / ".mia" / "reports" / "train.json").read_text() == before
