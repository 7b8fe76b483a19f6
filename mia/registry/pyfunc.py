"""The policy bundle as an MLflow pyfunc model, so ``mlflow models predict`` runs it on features.

:func:`log_bundle` logs a verified bundle directory as the model's artifact ``bundle``. The model
is logged *from code* (MLflow 3's models-from-code): MLflow stores this file and runs it when the
model loads, and the last lines set :class:`BundleModel` as the model. Nothing is pickled: the
model directory holds this file, ``MLmodel``, the requirements and the bundle (JSON + ONNX).

- **Input**: a frame with the FeatureSpec's raw feature columns (spec order, doubles) and
  ``position`` (signed whole contracts held at each row, long); extra columns are ignored.
  MLflow's schema check refuses an int64 column where a double is declared (int64 -> float64 is
  not lossless), so a CSV's feature values need a decimal point (``1.0``).
- **Output**: one row per input row; per agent ``<agent>`` = target fraction of
  ``max_contracts`` in [-1, 1] and ``<agent>_target`` = target contracts
  (:class:`mia.registry.bundle.AgentBatch`).

The model runs where MIA is installed (``--env-manager local``): it imports
:mod:`mia.registry.bundle` at load time; the pinned requirements list the rest.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Final, cast

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, set_model
from mlflow.models.model import ModelInfo
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema

from mia.errors import OperationalError
from mia.features.normalize import POSITION_NAME
from mia.registry.bundle import Bundle, read_bundle
from mia.registry.policy import Policy

ARTIFACT: Final[str] = "bundle"
REQUIREMENTS: Final[tuple[str, ...]] = ("mlflow", "onnxruntime", "numpy", "pandas")


def signature(bundle: Bundle) -> ModelSignature:
    """The model's signature.

    :param bundle: a verified bundle.
    :return: inputs = the spec's features (double) then ``position`` (long, contracts);
        outputs = per agent its fraction (double) and target contracts (long).
    """
    inputs = [ColSpec("double", n) for n in bundle.spec.names] + [ColSpec("long", POSITION_NAME)]
    outputs = [ColSpec("double", a.name) for a in bundle.agents]
    outputs += [ColSpec("long", f"{a.name}_target") for a in bundle.agents]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))  # type: ignore[arg-type]


class BundleModel(PythonModel):  # type: ignore[misc]
    """Runs the bundle artifact's :class:`~mia.registry.policy.Policy` on feature frames."""

    _policy: Policy

    def load_context(self, context: PythonModelContext) -> None:
        """Read and verify the bundle (a tampered artifact is refused here).

        :param context: MLflow's context; ``artifacts["bundle"]`` is the bundle directory.
        """
        self._policy = Policy.load(context.artifacts[ARTIFACT])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Every agent's decision on every row.

        :param context: MLflow's context (unused: the policy is loaded).
        :param model_input: raw features in spec columns plus ``position``.
        :param params: not supported; must be empty.
        :return: ``<agent>`` fractions and ``<agent>_target`` contracts, the input's index.
        :raises OperationalError: missing columns, parameters, or what ``act_batch`` refuses.
        """
        if params:
            raise OperationalError(f"bundle model takes no params, got {sorted(params)}")
        names = [*self._policy.bundle.spec.names, POSITION_NAME]
        missing = [n for n in names if n not in model_input.columns]
        if missing:
            raise OperationalError(f"bundle model: input lacks columns {missing[:10]} "
                                   f"({len(missing)} missing); pass the spec's features and "
                                   f"{POSITION_NAME!r}")
        rows = model_input[names[:-1]].to_numpy(dtype=np.float64)
        out = self._policy.act_batch(rows, model_input[POSITION_NAME].to_numpy(np.float64))
        frame = {a.name: a.fraction for a in out.values()}
        frame.update({f"{a.name}_target": a.target for a in out.values()})
        return pd.DataFrame(frame, index=model_input.index)


def log_bundle(bundle_dir: str | Path, name: str = ARTIFACT) -> ModelInfo:
    """Log a bundle as a pyfunc model in the active MLflow run (one is started if none is).

    The run gets the bundle's lineage tags ``mia.data_hash``, ``mia.git_sha`` and
    ``mia.bundle_sha256`` (what :func:`mia.registry.models.register` reads). Register the model
    with that function, not here: it also writes the version's metrics and gate tags.

    :param bundle_dir: the bundle directory; verified first, a broken one is never logged.
    :param name: the model's name in the run (``runs:/<run_id>/<name>``).
    :return: MLflow's model info (``model_uri``, ``run_id``...).
    :raises OperationalError: the bundle is incomplete or tampered, or the run already carries
        another data hash or git sha than the bundle's.
    """
    bundle = read_bundle(bundle_dir)
    lineage = {"mia.data_hash": bundle.data_hash, "mia.git_sha": bundle.git_sha,
               "mia.bundle_sha256": bundle.sha256}
    run = mlflow.active_run()
    held = {} if run is None else mlflow.get_run(run.info.run_id).data.tags
    clash = [f"{k}={held[k]} (bundle: {v})" for k, v in lineage.items() if held.get(k, v) != v]
    if clash:
        raise OperationalError(f"bundle {bundle.path}: run {run.info.run_id if run else '?'} "
                               f"has {', '.join(clash)}; log it in the run that trained it")
    # the training medians, flat: a representative row MLflow runs once at logging
    example = pd.DataFrame([bundle.normalizer.center], columns=list(bundle.spec.names))
    example[POSITION_NAME] = np.zeros(1, dtype=np.int64)
    info = mlflow.pyfunc.log_model(
        name=name, python_model=Path(__file__), artifacts={ARTIFACT: str(bundle.path)},
        signature=signature(bundle), input_example=example,
        # pinned to what runs here; `mia` itself is not on PyPI (--env-manager local)
        pip_requirements=[f"{p}=={metadata.version(p)}" for p in REQUIREMENTS],
        metadata={"mia.bundle_sha256": bundle.sha256, "mia.symbol": bundle.symbol,
                  "mia.feature_spec_sha256": bundle.spec.sha256,
                  "mia.agents": [a.name for a in bundle.agents]})
    for key, value in lineage.items():
        mlflow.MlflowClient().set_tag(info.run_id, key, value)
    return cast(ModelInfo, info)


# Models from code: MLflow executes this file under a generated module name at log and load
# time and takes the model set here; importing mia.registry.pyfunc sets nothing.
if not __name__.startswith("mia."):
    set_model(BundleModel())
