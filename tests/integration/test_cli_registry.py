"""`mia registry …` as an operator runs it, against a real MLflow SQLite store in a tmp dir."""

from __future__ import annotations

import json
import os
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest

from mia.cli import main
from mia.config import load_config
from mia.registry.models import register
from mia.registry.tracking import FAIL_FAST_ENV, configure
from tests.integration.conftest import run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
METRICS = {"holdout/sharpe": 1.4, "holdout/deflated_sharpe": 0.97,
           "holdout/max_drawdown": 0.05, "holdout/cvar_95": 0.01}


@contextmanager
def mlflow_uri_restored():
    """mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI to os.environ (so subprocesses
    inherit it): put both the module global and the variable back for the tests that follow."""
    from mlflow.tracking._tracking_service import utils

    env, global_uri = os.environ.get("MLFLOW_TRACKING_URI"), utils._tracking_uri
    try:
        yield
    finally:
        mlflow.set_tracking_uri(global_uri)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return model_input


def registered(home: Path, n: int):
    """Log ``n`` real pyfunc models in runs and register them as mia-ES v1..vn."""
    cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)})
    with mlflow_uri_restored():
        t = configure(cfg, experiment="cli-registry")
        for i in range(n):
            with warnings.catch_warnings(), mlflow.start_run(experiment_id=t.experiment_id) as r:
                warnings.simplefilter("ignore")
                mlflow.pyfunc.log_model(name="bundle", python_model=Echo(), pip_requirements=[])
            register(cfg, r.info.run_id, "bundle", "ES", metrics=METRICS, data_hash=f"d{i}",
                     git_sha="abc", client=t.client)
    return t.client


@pytest.fixture
def cli(mia, monkeypatch, capsys):
    """`mia …` in this process (the parser, run_guarded and exit codes, without the ~3 s of
    importing MLflow per call); returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("MIA_PARAMS", str(REPO / "params.yaml"))
    monkeypatch.setenv("MIA_HOME", str(mia.home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mia.home}/mlflow.db")
    monkeypatch.setenv("MIA_USER", "carol")
    for key in FAIL_FAST_ENV:  # the CLI sets them with setdefault; keep them test-local
        monkeypatch.setenv(key, FAIL_FAST_ENV[key])

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what the setup printed
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    with mlflow_uri_restored():
        yield call


@pytest.mark.slow
def test_operator_moves_aliases_from_the_cli_with_audit_and_clear_refusals(mia, cli):
    client = registered(mia.home, 2)
    assert cli("registry", "set-canary", "1", "--reason", "first bundle", "--user", "bob") == \
        (0, "mia-ES: canary -> v1 at share 0.05\n", "")
    assert cli("registry", "promote", "--reason", "canary held", "--symbol", "ES") == \
        (0, "mia-ES: promoted v1 to production; canary cleared\n", "")
    code, out, _ = cli("registry", "promote", "--reason", "canary held")
    assert code == 0
    assert out.startswith("mia-ES: nothing to do: v1 is production since ")
    assert cli("registry", "set-canary", "2", "--share", "0.15", "--reason", "retrain")[0] == 0
    assert cli("registry", "set-share", "0.5", "--reason", "step up")[1] == \
        "mia-ES: canary v2 share 0.15 -> 0.5\n"

    code, out, _ = cli("registry", "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"mia-ES at sqlite:///{mia.home}/mlflow.db"
    assert lines[1:] == [
        "  production           v1 share 0.5",
        "                       holdout sharpe 1.4 dsr 0.97 mdd 0.05 cvar95 0.01",
        lines[3],
        "  canary               v2 share 0.5",
        "                       holdout sharpe 1.4 dsr 0.97 mdd 0.05 cvar95 0.01",
        lines[6],
        "  previous-production  unset"]
    assert lines[3].endswith(" carol promote -canary +production: canary held")
    assert lines[6].endswith(" carol set_share share 0.15 -> 0.5: step up")

    code, _, err = cli("registry", "rollback", "--reason", "x")
    assert code == 2
    assert "mia-ES has no previous-production alias: nothing to roll back to" in err
    code, _, err = cli("registry", "set-canary", "9", "--reason", "x")
    assert (code, err) == (2, "error: mia-ES has no version 9; `mia registry status` shows the "
                              "aliases, the MLflow UI every version\n")
    assert cli("registry", "clear-canary", "--reason", "stop")[:2] == \
        (0, "mia-ES: cleared canary (was v2)\n")
    assert cli("registry", "clear-canary", "--reason", "stop")[:2] == \
        (0, "mia-ES: nothing to do: no canary alias\n")

    history = json.loads(client.get_model_version("mia-ES", "1").tags["audit/history"])
    assert [(e["action"], e["by"], e["reason"]) for e in history] == [
        ("set_canary", "bob", "first bundle"), ("promote", "carol", "canary held")]

    # the console script an operator types reads the same store the same way
    code, status_now, _ = cli("registry", "status")
    script = mia("registry", "status", env={"MLFLOW_TRACKING_URI": f"sqlite:///{mia.home}/mlflow.db"})
    assert (script.returncode, script.stdout) == (0, status_now), script.stderr


def test_a_move_without_a_reason_is_refused_by_the_parser(mia):
    out = mia("registry", "promote")
    assert out.returncode == 2
    assert "the following arguments are required: --reason" in out.stderr


def test_unreachable_mlflow_exits_75_with_the_uri_and_what_to_do_in_seconds(mia):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    # MLflow's default retries take minutes against a dead server (~250 s measured here); the
    # CLI turns them down, so a hang shows up as a timeout failure, not a slow pass
    out = run(["mia", "registry", "status"], timeout=60,
              env={"MIA_HOME": str(mia.home), "MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 75
    assert f"error: MLflow at {uri} is unreachable (Connection refused)" in out.stderr
    assert "point MLFLOW_TRACKING_URI at a running one" in out.stderr
    assert "Traceback" not in out.stderr
