"""Stage ``ensemble``: fit the agents' Bayesian vote on the walk-forward's validation windows.

Reads the walk-forward of ``mia train`` (``models/walk_forward/<SYMBOL>``), asks every fold's
agents what they would do in each position over that fold's validation window, fits the weights
(mia.ensemble.fit), and writes ``<MIA_HOME>/models/ensemble/<SYMBOL>/``: ``ensemble.json`` (the
vote, the weights, every candidate tried), ``report.json`` (validation Sharpe of the ensemble vs
each agent vs the baselines) and ``equity.png``. Its own MLflow run (``mia.kind=ensemble``) is a
child of the walk-forward's run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.pipelines._stage import stage_config, write_atomic


@dataclass(frozen=True, kw_only=True)
class EnsembleResult:
    """The fitted ensemble of one symbol and where its report is."""

    symbol: str
    ensemble: Any  # mia.ensemble.vote.Ensemble
    sharpe: dict[str, float]
    folder: Path
    run_id: str


def ensemble_dir(cfg: Config, symbol: str) -> Path:
    """:return: ``<MIA_HOME>/models/ensemble/<SYMBOL>``."""
    return cfg.endpoints.mia_home / "models" / "ensemble" / symbol


def _walk_forward(cfg: Config, symbol: str) -> tuple[dict[str, Any], str]:
    from mia.errors import OperationalError
    from mia.pipelines.train import walk_forward_dir

    path = walk_forward_dir(cfg, symbol) / "walk_forward.json"
    if not path.is_file():
        raise OperationalError(f"{symbol}: no walk-forward at {path}; run 'mia train' first")
    doc = json.loads(path.read_text())
    return doc, str(doc.get("parent_run_id", ""))


def run(cfg: Config, *, symbol: str | None = None) -> EnsembleResult:
    """Fit the ensemble of one symbol's walk-forward.

    :param cfg: configuration (``ensemble``, ``env``, ``walk_forward``).
    :param symbol: default ``data.symbols[0]``.
    :raises OperationalError: no walk-forward, or one of its folds is missing.
    """
    import mlflow

    from mia.agents import load
    from mia.ensemble.fit import fit_ensemble, sb3_tables, simulate_ensemble
    from mia.features.normalize import Normalizer
    from mia.pipelines.train import experiment, load_training_data, walk_forward_dir
    from mia.training.tracking import equity_figure, finite_metrics
    from mia.training.walk_forward import fold_folder, window_metrics

    p = cfg.params
    sym = symbol or p.data.symbols[0]
    wf, parent = _walk_forward(cfg, sym)
    agents = list(wf["agents"])
    data = load_training_data(cfg, sym, folds=len(wf["bounds"]))
    root = walk_forward_dir(cfg, sym)
    tables = []
    for f in data.layout.folds:
        folder = fold_folder(root, agents[0], f.index)
        norm = Normalizer.from_dict(json.loads((folder / "normalizer.json").read_text()))
        models = {a: load(a, fold_folder(root, a, f.index) / "model.zip") for a in agents}
        tables.append(sb3_tables(models, data, norm, f.validation, p.env.max_contracts))
    psr = {a: float(wf["metrics"][a]["wf/probabilistic_sharpe"]) for a in agents}
    ens = fit_ensemble(p, data, tables, psr)
    sims = [simulate_ensemble(ens, t, data, p) for t in tables]
    pnl = np.concatenate([s.pnl for s in sims])
    out = ensemble_dir(cfg, sym)
    out.mkdir(parents=True, exist_ok=True)
    joined = _joined_metrics(sims, p, window_metrics)
    joined.update(_deflated(ens, sims, p))
    sharpe = {"ensemble": joined["wf/sharpe"],
              **{n: float(m["wf/sharpe"]) for n, m in wf["metrics"].items()}}
    write_atomic(out / "ensemble.json", json.dumps(ens.to_dict(), indent=1, default=float) + "\n")
    write_atomic(out / "report.json", json.dumps(
        {"validation_sharpe": sharpe, "ensemble_metrics": joined, "weights": ens.weights,
         "chosen": ens.fit["chosen"], "posterior": ens.fit["posterior"]},
        indent=1, default=float) + "\n")
    oos = np.load(root / "oos.npz")
    curves = {"ensemble": pnl, **{n: oos[f"pnl/{n}"] for n in (*agents, "buy_and_hold")}}
    plot = equity_figure(curves, p.env.initial_equity,
                         f"{sym} ensemble vs agents, validation windows (folds joined)",
                         out / "equity.png", bounds=tuple(wf["bounds"]))
    exp = experiment(cfg, sym)
    with mlflow.start_run(experiment_id=exp, run_name=f"ensemble {sym}",
                          parent_run_id=parent or None,
                          tags={"mia.kind": "ensemble", "mia.symbol": sym}) as run:
        mlflow.log_params({f"weight.{a}": round(w, 6) for a, w in ens.weights.items()}
                          | {"threshold": ens.threshold, "lagrangian_scale": ens.lagrangian_scale,
                             "quantile_confidence": ens.quantile_confidence,
                             "chosen": ens.fit["chosen"]})
        mlflow.log_metrics(finite_metrics({f"validation/sharpe/{k}": v
                                           for k, v in sharpe.items()} | joined))
        for name in ("ensemble.json", "report.json"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_artifact(str(plot))
    return EnsembleResult(symbol=sym, ensemble=ens, sharpe=sharpe, folder=out,
                          run_id=run.info.run_id)


def _joined_metrics(sims: Sequence[Any], p: Any, window_metrics: Any) -> dict[str, float]:
    from mia.backtest.simulate import SimResult

    joined = SimResult(pnl=np.concatenate([s.pnl for s in sims]),
                       equity=np.concatenate([s.equity for s in sims]),
                       positions=np.concatenate([s.positions for s in sims]),
                       traded=np.concatenate([s.traded for s in sims]),
                       costs=np.concatenate([s.costs for s in sims]),
                       trades=tuple(t for s in sims for t in s.trades),
                       initial_equity=p.env.initial_equity, first_row=sims[0].first_row)
    out: dict[str, float] = window_metrics(joined, p)
    return out


def _deflated(ens: Any, sims: Sequence[Any], p: Any) -> dict[str, float]:
    # The chosen ensemble is the best of every candidate weighing tried on the same validation
    # windows: its DSR counts them as trials, as many independent ones as their correlation
    # allows (Bailey & Lopez de Prado, 2014).
    from mia.backtest.metrics import BARS_PER_YEAR_CME_1MIN, summary

    tried = np.array([c["validation_sharpe"] for c in ens.fit["candidates"]], dtype=np.float64)
    finite = tried[np.isfinite(tried)]
    n_eff = max(1, round(float(ens.fit["effective_trials"])))
    s = summary(np.concatenate([x.pnl for x in sims]), initial_equity=p.env.initial_equity,
                positions=np.concatenate([x.positions for x in sims]).astype(np.float64),
                trade_pnl=[t.pnl for x in sims for t in x.trades],
                periods_per_year=BARS_PER_YEAR_CME_1MIN, n_trials=n_eff,
                trial_sharpe_variance=float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0)
    return {"wf/deflated_sharpe": s.deflated_sharpe,
            "wf/dsr_benchmark_sharpe": s.dsr_benchmark_sharpe, "wf/trials": float(len(tried)),
            "wf/effective_trials": float(ens.fit["effective_trials"])}


def print_result(result: EnsembleResult) -> None:
    """Print the weights and the validation Sharpe table."""
    ens = result.ensemble
    w = ", ".join(f"{a} {v:.2f}" for a, v in ens.weights.items())
    mods = [m for m, on in (("PPO-Lagrangian sizing", ens.lagrangian_scale),
                            ("QR-DQN confidence", ens.quantile_confidence)) if on]
    print(f"{result.symbol} ensemble ({ens.fit['chosen']}): {w}; threshold {ens.threshold:.2f}"
          f"; {', '.join(mods) or 'no risk modifiers'}")
    print("  validation Sharpe, folds joined: " + ", ".join(
        f"{n} {v:.2f}" for n, v in sorted(result.sharpe.items(), key=lambda kv: -kv[1])))
    print(f"  report {result.folder / 'report.json'}; plot {result.folder / 'equity.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.ensemble [--params FILE] [--home DIR] [--symbol S]``."""
    def add(parser: Any) -> None:
        parser.add_argument("--symbol", default=None)

    cfg, args = stage_config("ensemble", __doc__, argv, add)
    print_result(run(cfg, symbol=args.symbol))
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
