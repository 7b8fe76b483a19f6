"""The retrain path as a user runs it (issue 5, "Done when"): walk-forward -> `mia ensemble fit`
-> `mia registry register` -> the gate gives the new version `canary` -> `promote` ->
`rollback` refused with nothing to roll back to; all visible in MLflow.

Planted-alpha data (three and a half weeks of ES and MNQ) so the candidate has a real edge; a
one-bar label horizon to match the signal; CI-sized walk-forward and agents
(tests/integration/walk_forward_data.py explains the sizes).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _params(tmp_path):
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["data"].update(start="2024-01-02", end="2024-01-26", planted_alpha=0.5)
    # the planted signal pays one bar ahead: so does the selection's label (a 15-bar label
    # dilutes it ~4x and ranks it out of a 20-feature selection)
    p["features"]["label_horizon"] = 1
    p["selection"].update(n_selected=20, folds=2)
    p["drift"]["reference_bars"] = 1500
    p["walk_forward"].update(train_bars=4000, validation_bars=2000, folds=2, holdout_bars=2000)
    for name, a in p["agents"].items():
        for key in [k for k in a if k.endswith("arch")]:
            a[key] = [64, 64]
        a["gamma"] = 0.5
        if name.startswith("ppo"):
            a["n_steps"] = 1024
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return ["--params", str(path)]


def _ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_retrain_registers_a_canary_that_promotes_and_is_audited(mia, tmp_path):
    from mlflow.tracking import MlflowClient

    p = _params(tmp_path)
    for stage in (("data", "generate"), ("validate", "raw"), ("regimes", "fit"),
                  ("features", "build"), ("validate", "features"), ("features", "select")):
        _ok(mia(*stage, *p))
    _ok(mia("train", "--timesteps", "6000", "--workers", "2", *p))
    fitted = _ok(mia("ensemble", "fit", *p))
    assert "ES ensemble" in fitted
    out = _ok(mia("registry", "register", *p))
    assert "mia-ES version 1 PASSED the gate" in out, out
    assert "canary -> v1" in out
    report = json.loads((mia.home / "reports" / "register" / "ES" / "report.json").read_text())
    assert report["gate"]["passed"]
    assert set(report["baselines"]) == {"flat", "buy_and_hold", "sma_crossover",
                                        "logistic_regression"}
    assert "solo sac" in report["holdout"]
    # a rerun of the same walk-forward registers nothing new
    assert "version 1 PASSED" in _ok(mia("registry", "register", *p))
    status = _ok(mia("registry", "status", *p))
    assert "canary               v1 share 0.05" in status
    _ok(mia("registry", "promote", "--reason", "canary review passed", *p))
    status = _ok(mia("registry", "status", *p))
    assert "production           v1" in status
    # a rerun after the promotion keeps the verdict v1 was promoted on (not judged against itself)
    rerun = _ok(mia("registry", "register", *p))
    assert "version 1 PASSED" in rerun, rerun
    assert "it already is production" in rerun
    refused = mia("registry", "rollback", "--reason", "test", *p)
    assert refused.returncode == 2
    assert "previous-production" in refused.stderr
    client = MlflowClient(f"sqlite:///{mia.home}/mlflow.db")
    v1 = client.get_model_version("mia-ES", "1")
    assert v1.tags["gate/passed"] == "true"
    assert "promote" in v1.tags["audit/history"]
    assert float(v1.tags["holdout/sharpe"]) > 0
    assert str(client.get_model_version_by_alias("mia-ES", "production").version) == "1"
