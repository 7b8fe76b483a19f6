"""MLflow logging of a walk-forward: lineage tags, SB3's training log, equity/drawdown plots.

A walk-forward is one *parent* run; each (agent, fold) is a *child* run (``parent_run_id``) with
the agent's hyper-parameters, ``train/…`` curves from SB3's logger, ``wf/…`` out-of-sample
metrics, and artifacts (equity + drawdown plot, trade list, model, normaliser). Every run carries
the lineage reference.md asks for: git sha, data hash, FeatureSpec hash, package versions, seed.
"""

from __future__ import annotations

import importlib.metadata as md
import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("mia", "numpy", "torch", "stable_baselines3", "sb3_contrib", "gymnasium", "mlflow",
            "numba", "onnxruntime")
_REPO = Path(__file__).resolve().parents[2]


def git_sha() -> str:
    """:return: the commit of the running code (``+dirty`` when the tree has changes); outside a
    git checkout (an image) ``$MIA_GIT_SHA`` as its build recorded it, else ``unknown``."""
    import os

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True,  # noqa: S607
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
                               cwd=_REPO, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("MIA_GIT_SHA") or "unknown"
    return f"{sha}+dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """:return: ``pkg/<name>`` -> installed version, for the packages that shape a result."""
    out = {}
    for name in PACKAGES:
        try:
            out[f"pkg/{name}"] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            out[f"pkg/{name}"] = "absent"
    return out


def lineage_tags(*, data_hash: str, spec_hash: str, seed: int, symbol: str) -> dict[str, str]:
    """:return: the tags every walk-forward run carries."""
    return {"mia.git_sha": git_sha(), "mia.data_hash": data_hash, "mia.spec_hash": spec_hash,
            "mia.seed": str(seed), "mia.symbol": symbol, **package_versions()}


def flat_params(prefix: str, config: object) -> dict[str, str]:
    """Flatten a frozen config dataclass into MLflow params (``prefix.field``).

    :param prefix: e.g. ``agent`` or ``walk_forward``.
    :param config: a dataclass instance (``mia.config`` sections).
    """
    from dataclasses import asdict

    return {f"{prefix}.{k}": str(v) for k, v in asdict(config).items()}  # type: ignore[call-overload]


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """:return: the metrics MLflow can store: NaN kept out (MLflow rejects it), +/-inf capped."""
    out = {}
    for k, v in metrics.items():
        x = float(v)
        if math.isnan(x):
            continue
        out[k] = max(min(x, 1e300), -1e300)
    return out


def sb3_mlflow_writer(run_id: str) -> Any:
    """An SB3 ``KVWriter`` that sends SB3's log (``train/…``, ``rollout/…``, ``time/…``) to a run.

    :param run_id: the MLflow run that receives the metrics.
    """
    from mlflow.tracking import MlflowClient
    from stable_baselines3.common.logger import KVWriter

    class _Writer(KVWriter):  # type: ignore[misc]
        def __init__(self) -> None:
            self.client = MlflowClient()

        def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
                  step: int = 0) -> None:
            from mlflow.entities import Metric

            now = int(__import__("time").time() * 1000)
            batch = [
                Metric(key=k, value=float(v), timestamp=now, step=int(step))
                for k, v in key_values.items()
                if isinstance(v, int | float | np.floating | np.integer)
                and not isinstance(v, bool) and math.isfinite(float(v))
                and "mlflow" not in key_excluded.get(k, ())
            ]
            if batch:
                self.client.log_batch(run_id, metrics=batch)

        def close(self) -> None:
            return None

    return _Writer()


def equity_figure(curves: Mapping[str, np.ndarray], initial_equity: float, title: str,
                  path: Path, *, bounds: Sequence[int] = ()) -> Path:
    """Equity (top) and drawdown (bottom) of one or more per-bar PnL series.

    :param curves: label -> per-bar net PnL (USD); the first label is drawn boldest.
    :param initial_equity: USD at the start.
    :param title: figure title.
    :param path: PNG to write.
    :param bounds: bar numbers where a new fold starts (dotted lines).
    :return: ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    for i, (label, pnl) in enumerate(curves.items()):
        equity = initial_equity + np.cumsum(np.asarray(pnl, dtype=np.float64))
        peak = np.maximum.accumulate(np.r_[initial_equity, equity])[1:]
        width = 2.0 if i == 0 else 1.0
        top.plot(equity, label=label, lw=width)
        bottom.plot(equity / peak - 1.0, lw=width)
    for b in bounds:
        top.axvline(b, ls=":", color="grey", lw=0.8)
        bottom.axvline(b, ls=":", color="grey", lw=0.8)
    top.set_title(title)
    top.set_ylabel("equity (USD)")
    top.legend(loc="upper left", fontsize=8, ncol=3)
    bottom.set_ylabel("drawdown")
    bottom.set_xlabel("out-of-sample bar")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
