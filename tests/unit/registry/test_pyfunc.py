"""The bundle as an MLflow pyfunc model: logged from code (no pickle), served on feature frames by
``mlflow.pyfunc`` and by the ``mlflow models predict`` CLI, equal to the bundle's Policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from mia.errors import OperationalError
from mia.registry.policy import Policy
from tests.unit.registry.test_bundle import AGENT_NAMES, REPO, spec_market, write


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A SQLite tracking store and artifact root under tmp (never ./mlruns), a bundle logged."""
    from mia.registry.pyfunc import log_bundle

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI",
                                            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("bundle", artifact_location=str(root / "artifacts"))
        bundle = write(root / "es")
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log_bundle(bundle.path)
        yield {"uri": uri, "root": root, "bundle": bundle, "info": info, "run": run.info.run_id}
    finally:
        mlflow.set_tracking_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def feature_frame(n: int = 12) -> pd.DataFrame:
    spec, _, _, raw = spec_market()
    frame = pd.DataFrame(raw[:n], columns=list(spec.names))
    frame["position"] = np.resize(np.array([0, 2, -5, 5, -1], dtype=np.int64), n)
    return frame


def expected(bundle: Any, frame: pd.DataFrame) -> dict[str, Any]:
    spec = bundle.spec
    return Policy(bundle).act_batch(frame[list(spec.names)].to_numpy(),
                                    frame["position"].to_numpy())


def test_logged_bundle_predicts_a_feature_frame_like_the_policy(tracking: dict[str, Any]) -> None:
    model = mlflow.pyfunc.load_model(f"runs:/{tracking['run']}/bundle")
    frame = feature_frame()
    out = model.predict(frame)
    want = expected(tracking["bundle"], frame)
    assert list(out.columns) == [*AGENT_NAMES, *(f"{n}_target" for n in AGENT_NAMES)]
    for name in AGENT_NAMES:
        np.testing.assert_array_equal(out[name].to_numpy(), want[name].fraction)
        np.testing.assert_array_equal(out[f"{name}_target"].to_numpy(), want[name].target)


def test_signature_is_the_spec_features_then_position_and_per_agent_actions(
        tracking: dict[str, Any]) -> None:
    model = mlflow.pyfunc.load_model(tracking["info"].model_uri)
    inputs = model.metadata.get_input_schema()
    assert inputs.input_names() == [*spec_market()[0].names, "position"]
    assert {str(t) for t in inputs.input_types()[:-1]} == {"DataType.double"}
    assert str(inputs.input_types()[-1]) == "DataType.long"
    outputs = model.metadata.get_output_schema().input_names()
    assert outputs == [*AGENT_NAMES, *(f"{n}_target" for n in AGENT_NAMES)]
    assert model.metadata.metadata["mia.bundle_sha256"] == tracking["bundle"].sha256


def test_logged_model_is_code_plus_the_bundle_without_pickle(tracking: dict[str, Any]) -> None:
    local = Path(mlflow.artifacts.download_artifacts(tracking["info"].model_uri,
                                                     dst_path=str(tracking["root"] / "dl")))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".zip"))]
    assert "pyfunc.py" in files
    assert "MLmodel" in files
    bundle_files = {Path(f).name for f in files if f.startswith("artifacts/")}
    assert bundle_files == {"bundle.json", "policy.onnx", *(f"{n}.onnx" for n in AGENT_NAMES)}


def test_logging_tags_the_run_with_the_bundles_lineage(tracking: dict[str, Any]) -> None:
    tags = mlflow.get_run(tracking["run"]).data.tags
    bundle = tracking["bundle"]
    assert tags["mia.data_hash"] == bundle.data_hash
    assert tags["mia.git_sha"] == bundle.git_sha
    assert tags["mia.bundle_sha256"] == bundle.sha256


def test_log_bundle_refuses_a_run_of_other_data(tracking: dict[str, Any]) -> None:
    from mia.registry.pyfunc import log_bundle

    experiment = mlflow.get_run(tracking["run"]).info.experiment_id
    with mlflow.start_run(experiment_id=experiment, tags={"mia.data_hash": "other"}), \
            pytest.raises(OperationalError, match="mia.data_hash=other"):
        log_bundle(tracking["bundle"].path)


def test_model_refuses_a_frame_without_the_spec_columns(tracking: dict[str, Any]) -> None:
    model = mlflow.pyfunc.load_model(tracking["info"].model_uri)
    frame = feature_frame().drop(columns=[spec_market()[0].names[3]])
    with pytest.raises(mlflow.exceptions.MlflowException, match=spec_market()[0].names[3]):
        model.predict(frame)


def test_log_bundle_refuses_a_tampered_bundle(tracking: dict[str, Any], tmp_path: Path) -> None:
    from mia.registry.pyfunc import log_bundle

    broken = Path(shutil.copytree(tracking["bundle"].path, tmp_path / "es"))
    (broken / "sac.onnx").write_bytes((broken / "sac.onnx").read_bytes()[:-1])
    with pytest.raises(OperationalError, match="'sac.onnx' does not match"):
        log_bundle(broken)


@pytest.mark.slow
def test_mlflow_models_predict_cli_serves_a_feature_csv(tracking: dict[str, Any]) -> None:
    frame = feature_frame(6)
    csv, out = tracking["root"] / "input.csv", tracking["root"] / "predictions.json"
    frame.to_csv(csv, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking["uri"],
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cli = Path(sys.executable).with_name("mlflow")
    run = subprocess.run([str(cli), "models", "predict", "-m", f"runs:/{tracking['run']}/bundle",
                          "-i", str(csv), "-t", "csv", "-o", str(out), "--env-manager", "local"],
                         capture_output=True, text=True, env=env, cwd=REPO, check=False,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())["predictions"]
    want = expected(tracking["bundle"], frame)
    assert [r["qrdqn_target"] for r in rows] == want["qrdqn"].target.tolist()
    np.testing.assert_allclose([r["sac"] for r in rows], want["sac"].fraction, rtol=0, atol=1e-12)
