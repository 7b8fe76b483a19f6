"""`dvc repro` runs the pipeline stages from params.yaml, offline, reproducibly."""

import json
import shutil

import pytest
import yaml

from tests.integration.conftest import REPO, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _workspace(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "mia", work / "mia", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(symbols=["ES"], start="2024-01-02", end="2024-01-04")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text(".mia/\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(cmd, cwd=work).returncode == 0
    return work


def test_dvc_repro_builds_the_raw_store_and_then_is_up_to_date(tmp_path):
    work = _workspace(tmp_path)
    first = run(["dvc", "repro"], cwd=work)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((work / ".mia" / "reports" / "ingest.json").read_text())
    assert report["rows"] == {"ES": 3 * 1380}
    second = run(["dvc", "repro"], cwd=work)
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
    assert run(["dvc", "repro"], cwd=work).returncode == 0
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["seed"] = 8
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], cwd=work)
    assert "data.seed" in status.stdout, status.stdout
