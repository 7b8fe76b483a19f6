"""The offline data pipeline through the CLI, as a new user runs it: on generated data and on
an ingested OHLCV-only file (issue 3, "Done when")."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest
import yaml

from mia.data.synthetic import generate_market
from mia.features.registry import registry
from mia.types import REQUIRED_COLUMNS
from tests.integration.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _params(tmp_path, **data):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update({"start": "2024-01-02", "end": "2024-01-16", **data})
    params["selection"].update(n_selected=20, folds=2)
    params["drift"]["reference_bars"] = 1500
    # two weeks of bars: a walk-forward sized to them (selection reads only the rows before its
    # first validation window)
    params["walk_forward"].update(train_bars=3000, validation_bars=1500, folds=2,
                                  holdout_bars=1000)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return str(path)


def _ok(out):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_pipeline_on_generated_es_and_mnq(mia, tmp_path):
    p = ["--params", _params(tmp_path, end="2024-01-17")]  # room for a 3-fold walk-forward
    _ok(mia("data", "generate", *p))
    assert "GX suite raw_bars passed" in _ok(mia("validate", "raw", *p))
    assert "ES: trend" in _ok(mia("regimes", "fit", *p))
    built = _ok(mia("features", "build", *p))
    assert "built 354 features" in built  # every group, cross and regime included
    assert "GX suite features passed" in _ok(mia("validate", "features", *p))
    selected = _ok(mia("features", "select", *p))
    assert "fold stability" in selected
    spec = json.loads((mia.home / "models/selection/ES/spec.json").read_text())
    assert len(spec["features"]) == 20
    assert (mia.home / "models/selection/ES/ranking.png").stat().st_size > 10_000
    drift = _ok(mia("drift", *p))
    assert "features drifted" in drift
    assert (mia.home / "reports/drift/MNQ/drift.html").is_file()
    listed = _ok(mia("features", "list", "--stored", "ES", *p))
    assert "354 features" in listed
    _check_training(mia, p)


def _check_training(mia, p):
    """`mia train` on the selected features: the table, the files and the MLflow runs."""
    from mlflow.tracking import MlflowClient

    out = _ok(mia("train", "--agent", "ppo", "--folds", "3", "--timesteps", "2048", *p))
    assert "ES walk-forward, 3 folds, out of sample after costs" in out
    for name in ("ppo", "buy_and_hold", "sma_crossover", "logistic_regression", "flat"):
        assert name in out
    wf = mia.home / "models" / "walk_forward" / "ES"
    assert (wf / "equity.png").stat().st_size > 10_000
    assert (wf / "ppo" / "fold_2" / "model.zip").is_file()
    client = MlflowClient(f"sqlite:///{mia.home}/mlflow.db")
    exp = client.get_experiment_by_name("mia-ES")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("mia.kind") == "walk_forward"]
    children = [r for r in runs if r.data.tags.get("mia.kind") == "fold"]
    assert len(parent) == 1
    assert len(children) == 3
    pid = parent[0].info.run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {pid}
    assert "wf/sharpe/ppo" in parent[0].data.metrics
    child = children[0]
    assert {"wf/sharpe", "wf/deflated_sharpe", "wf/max_drawdown"} <= set(child.data.metrics)
    assert any(k.startswith("train/") for k in child.data.metrics)  # SB3's training curves
    assert child.data.params["agent.learning_rate"] == "0.0002"
    assert {"mia.git_sha", "mia.data_hash", "mia.spec_hash", "pkg/torch"} <= set(child.data.tags)
    arts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"equity.png", "trades.csv", "model.zip", "normalizer.json"} <= arts
    # all five agents, two worker processes
    out = _ok(mia("train", "--folds", "2", "--timesteps", "2048", "--workers", "2", *p))
    for name in ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn"):
        assert f"{name} " in out
    report = json.loads((mia.home / "reports" / "train.json").read_text())
    assert report["ES"]["best_agent"] in ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn")


def test_pipeline_on_an_ingested_ohlcv_only_file(mia, tmp_path):
    bars = generate_market(["ES"], date(2024, 1, 2), date(2024, 1, 16), 4).bars["ES"]
    csv = tmp_path / "es_ohlcv.csv"
    plain = bars[list(REQUIRED_COLUMNS)].drop(columns="symbol")
    plain.assign(ts=plain["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv, index=False)
    p = ["--params", _params(tmp_path, symbols=["ES"])]
    assert "OHLCV only" in _ok(mia("data", "ingest", str(csv), "--symbol", "ES", *p))
    _ok(mia("validate", "raw", *p))
    _ok(mia("regimes", "fit", *p))
    built = _ok(mia("features", "build", *p))
    count = Counter(g for d in registry().values() for g in d.groups)
    assert f"not built: {count['orderflow']} orderflow features (columns bid_volume" in built
    assert f"not built: {count['cross']} cross features (no second symbol given)" in built
    ohlcv = sum(1 for d in registry().values() if not d.groups) + count["regime"]
    assert f"built {ohlcv} features" in built
    _ok(mia("validate", "features", *p))
    _ok(mia("features", "select", *p))
    _ok(mia("drift", *p))


def test_validate_raw_names_the_failed_expectation_and_exits_2(mia, tmp_path):
    bars = generate_market(["ES"], date(2024, 1, 2), date(2024, 1, 3), 4).bars["ES"]
    plain = bars[list(REQUIRED_COLUMNS)].drop(columns="symbol").copy()
    jump = plain.index[500:]
    plain.loc[jump, ["open", "high", "low", "close"]] *= 1.2  # a 20 % gap: valid bars, odd data
    csv = tmp_path / "jump.csv"
    plain.assign(ts=plain["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv, index=False)
    p = ["--params", _params(tmp_path, symbols=["ES"], end="2024-01-03")]
    _ok(mia("data", "ingest", str(csv), "--symbol", "ES", *p))
    out = mia("validate", "raw", *p)
    assert out.returncode == 2
    assert "abs_log_return" in out.stderr
    assert "Traceback" not in out.stderr
