"""Stage ``register``: bundle the ensemble, score it on the holdout, register it, run the gate.

1. **Bundle** (``<MIA_HOME>/models/bundles/<SYMBOL>/<walk-forward run>/``): the last fold's agents
   (trained on the most recent train window) exported to ONNX, their normaliser, the fitted
   ensemble, the FeatureSpec, the features the risk gate reads, the regime HMM, the PSI drift
   reference, the risk and env defaults, metrics and lineage.
2. **Holdout** (mia.training.layout; no stage has read it): the bundle, read back and run with
   onnxruntime exactly as the executor will, under :mod:`mia.risk` with the shared cost model
   (:mod:`mia.backtest.bundle_eval`); beside it, on the same bars and under the same risk
   engine, the current production bundle, each agent alone, and the baselines.
3. **Register + gate**: the bundle is logged as a pyfunc model in a ``register`` run (child of the
   walk-forward), registered as a version of ``mia-<SYMBOL>`` with its metrics, and the gate
   (:mod:`mia.registry.gate`) compares it with production (or, with none, the best baseline):
   a pass with ``gate.auto_canary`` sets the ``canary`` alias; a rejection records the reasons.

A rerun for the same walk-forward rebuilds the same bundle and re-registers the same version
(idempotent); a version promoted since keeps the verdict it was promoted on (the gate would
compare it with itself). MLflow down fails before any alias moves (``TemporaryError``: retry).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines._stage import stage_config, write_atomic


@dataclass(frozen=True, kw_only=True)
class RegisterResult:
    """What the stage did for one symbol."""

    symbol: str
    bundle: Path
    version: str
    passed: bool
    reasons: tuple[str, ...]
    moved: str
    holdout: dict[str, dict[str, float]]
    report: Path
    plot: Path


def bundles_dir(cfg: Config, symbol: str) -> Path:
    """:return: ``<MIA_HOME>/models/bundles/<SYMBOL>``."""
    return cfg.endpoints.mia_home / "models" / "bundles" / symbol


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise OperationalError(f"no {what} at {path}; run the stage that writes it first")
    out: dict[str, Any] = json.loads(path.read_text())
    return out


def risk_features(cfg: Config, symbol: str) -> tuple[str, ...]:
    """:return: the risk gate's features the stored feature set has (mia.risk.RISK_FEATURES)."""
    from mia.pipelines.features import feature_store
    from mia.risk import RISK_FEATURES

    stored = set(feature_store(cfg).spec(symbol).names)
    return tuple(n for n in RISK_FEATURES if n in stored)


def build_bundle(cfg: Config, data: Any, folder: Path, *,
                 metrics: Mapping[str, float]) -> Path:
    """Export the last fold's agents and write the bundle (overwriting a previous build).

    :param data: the symbol's :class:`~mia.training.data.TrainingData` (lineage).
    :param metrics: the metrics to store in the bundle (walk-forward and ensemble).
    :return: the bundle directory.
    """
    from mia.agents import load
    from mia.features.normalize import Normalizer
    from mia.features.spec import FeatureSpec, make_spec
    from mia.pipelines.drift import psi_reference_path
    from mia.pipelines.ensemble import ensemble_dir
    from mia.pipelines.regimes import load_regime
    from mia.pipelines.select import selection_dir
    from mia.pipelines.train import walk_forward_dir
    from mia.regime.filter import HMMParams
    from mia.registry.bundle_writer import write_bundle
    from mia.registry.onnx_export import export_policy
    from mia.training.tracking import git_sha
    from mia.training.walk_forward import fold_folder

    p = cfg.params
    symbol = data.symbol
    wf = _read_json(walk_forward_dir(cfg, symbol) / "walk_forward.json", "walk-forward")
    ensemble = _read_json(ensemble_dir(cfg, symbol) / "ensemble.json", "fitted ensemble")
    last = len(wf["bounds"]) - 1
    root = walk_forward_dir(cfg, symbol)
    models = {a: load(a, fold_folder(root, a, last) / "model.zip") for a in wf["agents"]}
    exported = export_policy(models)
    first = fold_folder(root, wf["agents"][0], last)
    normalizer = Normalizer.from_dict(json.loads((first / "normalizer.json").read_text()))
    spec = FeatureSpec.from_json((selection_dir(cfg, symbol) / "spec.json").read_text())
    regime = load_regime(cfg, symbol)
    risk_spec = make_spec(list(risk_features(cfg, symbol)), regime=regime)
    drift_path = psi_reference_path(cfg, symbol)
    drift = _strict(json.loads(drift_path.read_text())) if drift_path.is_file() else None
    write_bundle(folder, symbol=symbol, spec=spec, normalizer=normalizer,
                 agents=exported.agents, graph=exported.graph, ensemble=ensemble,
                 hmm=None if regime is None else HMMParams.from_dict(regime), drift=drift,
                 risk=p.risk, env=p.env, metrics=metrics,
                 data_hash=data.data_hash, git_sha=git_sha(),
                 created_at=datetime.now(UTC), risk_spec=risk_spec, overwrite=True)
    return folder


def _strict(value: Any) -> Any:
    # JSON has no infinity: the PSI reference pads its quantile rows with +inf
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def evaluate_bundle(bundle_dir: Path, frame: Any, data: Any, rows: slice, risk_rows: np.ndarray,
                    risk_names: tuple[str, ...], params: Any, days: np.ndarray, *,
                    solo: bool = False) -> dict[str, Any]:
    """Run a bundle over a window as the executor would, under mia.risk.

    :param frame: the stored feature frame (every feature: any bundle's spec can be read).
    :param solo: also run each of the bundle's agents alone.
    :return: ``"bundle"`` -> BundleRun, and ``"solo <agent>"`` -> BundleRun when ``solo``.
    :raises OperationalError: the bundle needs features the store lacks, or another position
        limit than ``env.max_contracts``.
    """
    from mia.backtest.bundle_eval import decision_table, policy_outputs, run_window
    from mia.ensemble.vote import Ensemble
    from mia.registry.bundle import read_bundle
    from mia.registry.policy import Policy

    bundle = read_bundle(bundle_dir)
    missing = [n for n in bundle.spec.names if n not in frame.columns]
    if missing or bundle.max_contracts != params.env.max_contracts:
        raise OperationalError(f"bundle {bundle_dir}: needs features {missing[:5]} or a position "
                               f"limit {bundle.max_contracts} this data/config does not have")
    raw = frame[list(bundle.spec.names)].to_numpy(np.float32)[rows]
    outputs = policy_outputs(Policy(bundle), raw, bundle.max_contracts)
    ens = Ensemble.from_dict(bundle.ensemble)
    runs = {"bundle": run_window(decision_table(ens, outputs), data, rows, risk_rows, risk_names,
                                 params, days)}
    if solo:
        for name in outputs:
            alone = Ensemble(weights={name: 1.0}, threshold=ens.threshold)
            runs[f"solo {name}"] = run_window(decision_table(alone, outputs), data, rows,
                                              risk_rows, risk_names, params, days)
    return runs


def _registered(cfg: Config, symbol: str, walk_forward: str) -> tuple[str, str] | None:
    """The register run and version already made for this walk-forward, if any (idempotency)."""
    from mlflow.tracking import MlflowClient

    if not walk_forward:
        return None
    client = MlflowClient()
    exp = client.get_experiment_by_name(f"mia-{symbol}")
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`mia.kind` = 'register' and tags.`mia.walk_forward` = '{walk_forward}'"))
    for run in runs:
        versions = client.search_model_versions(
            f"name='mia-{symbol}' and run_id='{run.info.run_id}'")
        if versions:
            return run.info.run_id, str(versions[0].version)
    return None


def _download(uri: str, into: Path) -> Path:
    import mlflow

    # the pyfunc model keeps the bundle folder under its own name in artifacts/
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
    found = sorted(p.parent for p in local.rglob("bundle.json"))
    if not found:
        raise OperationalError(f"{uri} holds no bundle (under {local})")
    return found[0]


def _production_bundle(cfg: Config, symbol: str, into: Path) -> Path | None:
    """Download the bundle of ``mia-<SYMBOL>@production``; None when there is no production."""
    from mia.registry.models import alias_metrics

    if alias_metrics(cfg, symbol, "production") is None:
        return None
    return _download(f"models:/mia-{symbol}@production", into)


def _baselines(cfg: Config, data: Any, rows: slice, risk_rows: np.ndarray,
               risk_names: tuple[str, ...], days: np.ndarray) -> dict[str, dict[str, float]]:
    # The baselines on the holdout through the same risk engine as the bundle, so the gate
    # compares like with like; the logistic regression is fitted on the last fold's train rows.
    from mia.backtest.baselines import baseline_targets
    from mia.backtest.bundle_eval import run_window
    from mia.features.normalize import Normalizer
    from mia.training.splits import Fold

    p = cfg.params
    m = p.env.max_contracts
    last = data.layout.folds[-1]
    fold = Fold(index=last.index + 1, train=last.train, validation=rows, embargoed=last.embargoed)
    norm = Normalizer.fit(data.features, data.spec.names, last.train_indices())
    targets = baseline_targets(data.market(norm), fold, max_contracts=m,
                               horizon=p.features.label_horizon)
    out = {}
    for name, target in targets.items():
        # a baseline ignores its position: the same fraction at every level
        table = np.repeat((np.asarray(target, dtype=np.float64) / m)[:, None], 2 * m + 1, axis=1)
        out[name] = run_window(table, data, rows, risk_rows, risk_names, p, days).metrics
    return out


def run(cfg: Config, *, symbol: str | None = None) -> RegisterResult:
    """Bundle, score on the holdout, register and gate one symbol's ensemble (module doc).

    :param cfg: configuration.
    :param symbol: default ``data.symbols[0]``.
    """
    import mlflow

    from mia.backtest.bundle_eval import trade_days_of
    from mia.pipelines.ensemble import ensemble_dir
    from mia.pipelines.features import feature_store
    from mia.pipelines.train import experiment, load_training_data, walk_forward_dir
    from mia.pipelines.validate import passed
    from mia.registry.gate import GateMetrics, evaluate_gate
    from mia.registry.models import apply_gate, promoted_verdict, register
    from mia.registry.pyfunc import ARTIFACT, log_bundle
    from mia.training.tracking import finite_metrics, lineage_tags

    p = cfg.params
    sym = symbol or p.data.symbols[0]
    wf = _read_json(walk_forward_dir(cfg, sym) / "walk_forward.json", "walk-forward")
    ens_report = _read_json(ensemble_dir(cfg, sym) / "report.json", "ensemble report")
    data = load_training_data(cfg, sym, folds=len(wf["bounds"]))
    parent = str(wf.get("parent_run_id") or "")
    folder = bundles_dir(cfg, sym) / (parent or "latest")
    wf_metrics = {f"wf/{k.split('/', 1)[1]}": float(v)
                  for k, v in ens_report["ensemble_metrics"].items()}
    exp = experiment(cfg, sym)
    done = _registered(cfg, sym, parent)
    if done is None:
        build_bundle(cfg, data, folder, metrics=finite_metrics(wf_metrics))
    else:  # a rerun: score the bundle that was registered, never a rebuilt twin
        shutil.rmtree(folder, ignore_errors=True)
        staged = _download(f"models:/mia-{sym}/{done[1]}", Path(tempfile.mkdtemp()))
        shutil.copytree(staged, folder)
    frame = feature_store(cfg).read(sym, p.data.start, p.data.end)
    rows = data.layout.holdout
    names = risk_features(cfg, sym)
    risk_rows = frame[list(names)].to_numpy(np.float64)[rows]
    if data.ts is None:
        raise OperationalError(f"{sym}: the table has no timestamps; load it with "
                               "load_training_data")
    days = trade_days_of(data.ts[rows])
    runs = evaluate_bundle(folder, frame, data, rows, risk_rows, names, p, days, solo=True)
    holdout = {name: r.metrics for name, r in runs.items()}
    baselines = _baselines(cfg, data, rows, risk_rows, names, days)
    production = None
    with tempfile.TemporaryDirectory() as tmp:
        prod_dir = _production_bundle(cfg, sym, Path(tmp))
        if prod_dir is not None:
            prod = evaluate_bundle(prod_dir, frame, data, rows, risk_rows, names, p, days)
            holdout["production"] = prod["bundle"].metrics
            production = GateMetrics.from_metrics(prod["bundle"].metrics, "holdout")
    metrics = {**wf_metrics, **runs["bundle"].metrics}
    candidate = GateMetrics(sharpe=metrics["holdout/sharpe"],
                            deflated_sharpe=metrics.get("wf/deflated_sharpe", float("nan")),
                            max_drawdown=metrics["holdout/max_drawdown"],
                            cvar_95=metrics["holdout/cvar_95"])
    ok, why = passed(cfg, sym, data.data_hash)
    references = {n: GateMetrics.from_metrics(m, "holdout") for n, m in baselines.items()}
    verdict = evaluate_gate(candidate, production, references, p.gate, ok)
    if why:
        verdict = type(verdict)(passed=verdict.passed, reasons=(*verdict.reasons, why),
                                checks=verdict.checks, reference=verdict.reference)
    if done is not None:  # promoted since: it would be judged against itself
        verdict = promoted_verdict(cfg, sym, done[1]) or verdict
    report, plot = _report(cfg, sym, folder, runs, holdout, baselines, verdict, data)
    if done is None:
        tags = {**lineage_tags(data_hash=data.data_hash, spec_hash=data.spec.sha256,
                               seed=p.walk_forward.seed, symbol=sym), "mia.kind": "register",
                "mia.walk_forward": parent}
        with mlflow.start_run(experiment_id=exp, run_name=f"register {sym}",
                              parent_run_id=parent or None, tags=tags) as run:
            mlflow.log_metrics(finite_metrics(metrics))
            for name, m in {**holdout,
                            **{f"baseline {n}": v for n, v in baselines.items()}}.items():
                mlflow.log_metric(f"holdout/sharpe/{name.replace(' ', '_')}",
                                  finite_metrics(m).get("holdout/sharpe", 0.0))
            mlflow.log_artifact(str(report))
            mlflow.log_artifact(str(plot))
            log_bundle(folder, name=ARTIFACT)
        version = register(cfg, run.info.run_id, ARTIFACT, sym, metrics=metrics,
                           gate_verdict=verdict)
    else:
        version = done[1]
    moved = apply_gate(cfg, sym, version, verdict)
    _dvc_outputs(cfg, sym, version, verdict,
                 {**holdout, **{f"baseline {n}": m for n, m in baselines.items()}}, plot)
    return RegisterResult(symbol=sym, bundle=folder, version=version, passed=verdict.passed,
                          reasons=verdict.reasons, moved=moved.message, holdout=holdout,
                          report=report, plot=plot)


def _report(cfg: Config, symbol: str, folder: Path, runs: Mapping[str, Any],
            holdout: Mapping[str, Mapping[str, float]], baselines: Mapping[str, Any],
            verdict: Any, data: Any) -> tuple[Path, Path]:
    from mia.training.tracking import equity_figure

    out = cfg.endpoints.mia_home / "reports" / "register" / symbol
    out.mkdir(parents=True, exist_ok=True)
    doc = {"bundle": str(folder), "gate": {"passed": verdict.passed,
                                           "reasons": list(verdict.reasons),
                                           "checks": list(verdict.checks),
                                           "reference": verdict.reference},
           "holdout": holdout, "baselines": baselines,
           "risk_events": {n: r.events for n, r in runs.items()},
           "exits_inside_bars": runs["bundle"].exits, "orders": runs["bundle"].orders}
    report = out / "report.json"
    write_atomic(report, json.dumps(doc, indent=1, default=float) + "\n")
    curves = {n: r.pnl for n, r in runs.items()}
    plot = equity_figure(curves, cfg.params.env.initial_equity,
                         f"{symbol} bundle on the holdout (risk-gated), and each agent alone",
                         out / "holdout.png")
    shutil.copyfile(plot, folder.parent / f"{folder.name}_holdout.png")
    return report, plot


def _dvc_outputs(cfg: Config, symbol: str, version: str, verdict: Any,
                 holdout: Mapping[str, Mapping[str, float]], plot: Path) -> None:
    # `dvc metrics show` / `dvc plots show` read reports/register.json and reports/holdout/*.png
    reports = cfg.endpoints.mia_home / "reports"
    keep = ("sharpe", "max_drawdown", "total_return", "cvar_95", "n_trades")
    table = {n: {k.split("/", 1)[1]: (float(v) if np.isfinite(v) else None)  # strict JSON
                 for k, v in m.items() if k.split("/", 1)[1] in keep}
             for n, m in holdout.items()}
    path = reports / "register.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[symbol] = {"version": version, "gate_passed": bool(verdict.passed), **table}
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (reports / "holdout").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plot, reports / "holdout" / f"{symbol}_holdout.png")


def print_result(result: RegisterResult) -> None:
    """Print the gate verdict, the holdout table and where to look."""
    word = "PASSED" if result.passed else "REJECTED"
    print(f"{result.symbol}: mia-{result.symbol} version {result.version} {word} the gate; "
          f"{result.moved}")
    for reason in result.reasons:
        print(f"    - {reason}")
    print("  holdout (risk-gated, after costs):")
    for name, m in result.holdout.items():
        print(f"    {name:<22} Sharpe {m['holdout/sharpe']:>7.2f}  return "
              f"{m['holdout/total_return']:>7.2%}  max DD {m['holdout/max_drawdown']:>6.2%}")
    print(f"  bundle {result.bundle}\n  report {result.report}\n  plot   {result.plot}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.register [--params FILE] [--home DIR] [--symbol S]``."""
    def add(parser: Any) -> None:
        parser.add_argument("--symbol", default=None)

    cfg, args = stage_config("register", __doc__, argv, add)
    print_result(run(cfg, symbol=args.symbol))
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
