"""Stage ``train``: the walk-forward of every configured agent on one symbol, tracked in MLflow.

One MLflow *parent* run per walk-forward (experiment ``mia-<SYMBOL>``, artifacts under
``$MIA_ARTIFACT_ROOT``, default ``<MIA_HOME>/mlartifacts``), a *child* run per
(agent, fold). Outputs under ``<MIA_HOME>/models/walk_forward/<SYMBOL>/``: per task
``<agent>/fold_<k>/`` (model.zip, normalizer.json, oos.npz, result.json), and for the whole
walk-forward ``walk_forward.json`` (metrics of every agent and baseline, per fold and joined),
``oos.npz`` and ``equity.png``. A rerun overwrites them (idempotent).

The Airflow DAG runs :func:`run_task` once per (agent, fold) as mapped tasks and
:func:`run_evaluate` after them; ``mia train`` and ``dvc repro`` run :func:`run`, which does the
same in one process (or a pool of ``--workers`` processes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines._stage import stage_config, write_atomic
from mia.training.data import TrainingData
from mia.training.walk_forward import Evaluation, FoldResult, fold_folder


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """A finished walk-forward: its evaluation, MLflow run and files."""

    symbol: str
    evaluation: Evaluation
    results: tuple[FoldResult, ...]
    parent_run_id: str
    experiment_id: str
    report: Path
    plot: Path


def walk_forward_dir(cfg: Config, symbol: str) -> Path:
    """:return: ``<MIA_HOME>/models/walk_forward/<SYMBOL>``."""
    return cfg.endpoints.mia_home / "models" / "walk_forward" / symbol


def load_training_data(cfg: Config, symbol: str, *, folds: int | None = None) -> TrainingData:
    """The symbol's selected features, prices and layout, from the stores.

    :param cfg: configuration.
    :param symbol: the symbol.
    :param folds: override of ``walk_forward.folds``.
    :raises OperationalError: a stage before this one has not run, or its outputs disagree.
    """
    import pandas as pd

    from mia.data.contracts import contract
    from mia.features.spec import FeatureSpec
    from mia.pipelines.features import feature_store
    from mia.pipelines.ingest import raw_store
    from mia.pipelines.select import selection_dir
    from mia.training.layout import plan

    p = cfg.params
    spec_path = selection_dir(cfg, symbol) / "spec.json"
    if not spec_path.is_file():
        raise OperationalError(f"{symbol}: no selected features at {spec_path}; run "
                               "'mia features select' first")
    spec = FeatureSpec.from_json(spec_path.read_text())
    store = feature_store(cfg)
    frame = store.read(symbol, p.data.start, p.data.end)
    bars, digest = raw_store(cfg).read_hashed(symbol, p.data.start, p.data.end)
    if len(bars) != len(frame) or not (bars["ts"].to_numpy() == frame["ts"].to_numpy()).all():
        raise OperationalError(f"{symbol}: stored features do not cover the raw bars of "
                               f"{p.data.start}..{p.data.end}; rerun 'mia features build'")
    missing = [n for n in spec.names if n not in frame.columns]
    if missing:
        raise OperationalError(f"{symbol}: the selected spec needs {len(missing)} features the "
                               f"store lacks ({', '.join(missing[:5])}…); rerun 'mia features "
                               "build' and 'mia features select'")
    features = np.ascontiguousarray(frame[list(spec.names)].to_numpy(np.float32))
    spread = (bars["bid_ask_spread"].to_numpy(np.float64) if "bid_ask_spread" in bars.columns
              else None)
    layout = plan(p.walk_forward, len(bars), store.spec(symbol).warmup, folds=folds)
    return TrainingData(symbol=symbol, features=features, spec=spec,
                        open=bars["open"].to_numpy(np.float64),
                        close=bars["close"].to_numpy(np.float64), spread=spread,
                        contract=contract(symbol), layout=layout, data_hash=digest.sha256,
                        ts=pd.DatetimeIndex(bars["ts"]).asi8.copy(),
                        high=bars["high"].to_numpy(np.float64),
                        low=bars["low"].to_numpy(np.float64))


def experiment(cfg: Config, symbol: str) -> str:
    """Point MLflow at the configured store (checking it answers); :return: the id of experiment
    ``mia-<SYMBOL>``, created with its artifacts under the configured artifact root."""
    from mia.registry.tracking import configure

    found = configure(cfg, experiment=f"mia-{symbol}").experiment_id
    if found is None:  # configure() returns an id whenever an experiment is named
        raise OperationalError(f"MLflow gave no id for experiment mia-{symbol}")
    return found


def start_parent(cfg: Config, data: TrainingData, agents: Sequence[str]) -> tuple[str, str]:
    """Open the walk-forward's parent run (params, lineage tags) and close it again.

    :return: (experiment id, parent run id); tasks attach to it by id.
    """
    import mlflow

    from mia.training.tracking import flat_params, lineage_tags

    p = cfg.params
    exp = experiment(cfg, data.symbol)
    tags = lineage_tags(data_hash=data.data_hash, spec_hash=data.spec.sha256,
                        seed=p.walk_forward.seed, symbol=data.symbol)
    with mlflow.start_run(experiment_id=exp, run_name=f"walk-forward {data.symbol}",
                          tags={**tags, "mia.kind": "walk_forward"}) as run:
        mlflow.log_params({**flat_params("walk_forward", p.walk_forward),
                           **flat_params("env", p.env), "agents": ",".join(agents),
                           "folds": len(data.layout.folds), "features": len(data.spec.names),
                           "data.start": str(p.data.start), "data.end": str(p.data.end)})
        return exp, run.info.run_id


def run_task(cfg: Config, data: TrainingData, agent: str, fold: int, *, parent_run_id: str,
             timesteps: int | None = None, progress: bool = False) -> FoldResult:
    """Train and score one (agent, fold) in its own MLflow child run (a DAG mapped task).

    :param cfg: configuration. :param data: the symbol's table.
    :param agent: agent name. :param fold: fold number.
    :param parent_run_id: the walk-forward's run.
    :param timesteps: override of the agent's ``total_timesteps``.
    :param progress: show a progress bar over the training steps.
    """
    import mlflow

    from mia.training.tracking import (
        equity_figure,
        finite_metrics,
        flat_params,
        lineage_tags,
        sb3_mlflow_writer,
    )
    from mia.training.walk_forward import agent_config, fold_seed, train_fold

    p = cfg.params
    f = data.layout.fold(fold)
    acfg = agent_config(p, agent, timesteps)
    seed = fold_seed(p.walk_forward.seed, agent, fold)
    folder = fold_folder(walk_forward_dir(cfg, data.symbol), agent, fold)
    exp = experiment(cfg, data.symbol)
    tags = {**lineage_tags(data_hash=data.data_hash, spec_hash=data.spec.sha256, seed=seed,
                           symbol=data.symbol), "mia.kind": "fold", "mia.agent": agent,
            "mia.fold": str(fold)}
    bar = _bar(acfg.total_timesteps, f"{agent} fold {fold}") if progress else None
    with mlflow.start_run(experiment_id=exp, run_name=f"{agent} fold {fold}",
                          parent_run_id=parent_run_id, tags=tags) as run:
        mlflow.log_params({**flat_params("agent", acfg), "fold.train": _span(f.train),
                           "fold.validation": _span(f.validation), "seed": seed})
        result = train_fold(p, data, agent, f, folder=folder, timesteps=timesteps,
                            progress=None if bar is None else bar.update,
                            logger_writer=sb3_mlflow_writer(run.info.run_id))
        mlflow.log_metrics(finite_metrics(result.metrics))
        mlflow.log_metric("train/seconds", result.train_seconds)
        equity_figure({agent: result.pnl}, p.env.initial_equity,
                      f"{data.symbol} {agent} fold {fold}: out of sample", folder / "equity.png")
        _write_trades(folder / "trades.csv", result)
        for name in ("equity.png", "trades.csv", "model.zip", "normalizer.json", "result.json"):
            mlflow.log_artifact(str(folder / name))
    if bar is not None:
        bar.close()
    return result


def _span(s: slice) -> str:
    return f"{s.start}..{s.stop}"


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def _write_trades(path: Path, result: FoldResult) -> None:
    lines = ["trade,pnl_usd"] + [f"{i},{v:.2f}" for i, v in enumerate(result.trade_pnl)]
    path.write_text("\n".join(lines) + "\n")


def run_evaluate(cfg: Config, data: TrainingData, agents: Sequence[str], *, parent_run_id: str,
                 results: Sequence[FoldResult] | None = None) -> tuple[Evaluation, Path, Path]:
    """Join the folds, add the baselines, log the walk-forward's metrics and report.

    :param results: the tasks' results; read back from their folders when None (DAG).
    :return: the evaluation, the report JSON and the equity plot.
    """
    import mlflow

    from mia.training.tracking import equity_figure, finite_metrics
    from mia.training.walk_forward import evaluate

    p = cfg.params
    root = walk_forward_dir(cfg, data.symbol)
    if results is None:
        results = [FoldResult.load(fold_folder(root, a, f.index)) for a in agents
                   for f in data.layout.folds]
    ev = evaluate(p, data, results)
    report = root / "walk_forward.json"
    doc = {**json.loads(ev.to_json()), "symbol": data.symbol, "parent_run_id": parent_run_id}
    write_atomic(report, json.dumps(doc, indent=1) + "\n")
    arrays: dict[str, Any] = {f"pnl/{k}": v for k, v in ev.pnl.items()}
    np.savez(root / "oos.npz", **arrays)
    order = [*ev.agents, *(n for n in ev.pnl if n not in ev.agents)]
    plot = equity_figure({n: ev.pnl[n] for n in order}, p.env.initial_equity,
                         f"{data.symbol} walk-forward, out of sample (folds joined)",
                         root / "equity.png", bounds=ev.bounds)
    experiment(cfg, data.symbol)
    with mlflow.start_run(run_id=parent_run_id):
        for name, m in ev.metrics.items():
            mlflow.log_metrics(finite_metrics({f"{k}/{name}": v for k, v in m.items()}))
        mlflow.set_tag("mia.best_agent", ev.best_agent)
        mlflow.log_artifact(str(report))
        mlflow.log_artifact(str(plot))
    _dvc_outputs(cfg, data.symbol, ev, plot)
    return ev, report, plot


def _dvc_outputs(cfg: Config, symbol: str, ev: Evaluation, plot: Path) -> None:
    # `dvc metrics show` / `dvc plots show` read reports/train.json and reports/train/*.png
    import shutil

    reports = cfg.endpoints.mia_home / "reports"
    keep = ("sharpe", "deflated_sharpe", "max_drawdown", "total_return", "cvar_95", "n_trades")
    summary = {n: {k.split("/", 1)[1]: (v if np.isfinite(v) else None)  # strict JSON for DVC
                   for k, v in m.items() if k.split("/", 1)[1] in keep}
               for n, m in ev.metrics.items()}
    path = reports / "train.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[symbol] = {"best_agent": ev.best_agent, **summary}
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    (reports / "train").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plot, reports / "train" / f"{symbol}_equity.png")


def _worker(cfg: Config, data: TrainingData, agent: str, fold: int, parent: str,
            timesteps: int | None) -> FoldResult:
    from mia.agents._common import set_torch_threads

    set_torch_threads()
    return run_task(cfg, data, agent, fold, parent_run_id=parent, timesteps=timesteps)


def run(cfg: Config, *, symbol: str | None = None, agents: Sequence[str] | None = None,
        folds: int | None = None, timesteps: int | None = None, workers: int = 1,
        progress: bool = False) -> TrainResult:
    """Walk-forward every agent over every fold of one symbol.

    :param cfg: configuration.
    :param symbol: default ``data.symbols[0]``.
    :param agents: default: all five.
    :param folds: override of ``walk_forward.folds``.
    :param timesteps: override of each agent's ``total_timesteps`` (quick runs).
    :param workers: processes training tasks side by side (each uses
        ``$MIA_TORCH_THREADS`` threads, default 1).
    :param progress: show progress bars.
    """
    from mia.agents import AGENTS
    from mia.training.walk_forward import agent_config

    sym = symbol or cfg.params.data.symbols[0]
    names = list(agents or AGENTS)
    for a in names:
        agent_config(cfg.params, a, timesteps)  # unknown agent or bad override: fail first
    data = load_training_data(cfg, sym, folds=folds)
    exp, parent = start_parent(cfg, data, names)
    tasks = [(a, f.index) for f in data.layout.folds for a in names]
    results: list[FoldResult] = []
    if workers <= 1:
        for a, k in tasks:
            results.append(run_task(cfg, data, a, k, parent_run_id=parent, timesteps=timesteps,
                                    progress=progress))
    else:
        bar = _bar(len(tasks), f"{sym} walk-forward tasks") if progress else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_worker, cfg, data, a, k, parent, timesteps)
                       for a, k in tasks]
            for fut in futures:
                results.append(fut.result())
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    ev, report, plot = run_evaluate(cfg, data, names, parent_run_id=parent, results=results)
    return TrainResult(symbol=sym, evaluation=ev, results=tuple(results), parent_run_id=parent,
                       experiment_id=exp, report=report, plot=plot)


def print_summary(result: TrainResult, tracking_uri: str) -> None:
    """Print the walk-forward table: agents and baselines, out of sample, folds joined."""
    ev = result.evaluation
    print(f"{result.symbol} walk-forward, {len(ev.bounds)} folds, out of sample after costs:")
    print(f"  {'':<20}{'Sharpe':>8}{'DSR':>7}{'return':>9}{'max DD':>8}{'trades':>8}")
    for name, m in ev.metrics.items():
        mark = "*" if name == ev.best_agent else " "
        kind = "" if name in ev.agents else "  (baseline)"
        print(f" {mark}{name:<20}{m['wf/sharpe']:>8.2f}{m['wf/deflated_sharpe']:>7.2f}"
              f"{m['wf/total_return']:>9.2%}{m['wf/max_drawdown']:>8.2%}"
              f"{int(m['wf/n_trades']):>8}{kind}")
    print(f"report {result.report}\nplot   {result.plot}")
    print(f"MLflow run {result.parent_run_id} (experiment {result.experiment_id}) at "
          f"{tracking_uri}; browse with 'make ui'")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.train [--params FILE] [--home DIR] [--symbol S] [--workers N]``."""
    def add(parser: Any) -> None:
        parser.add_argument("--symbol", default=None)
        parser.add_argument("--workers", type=int, default=1)

    cfg, args = stage_config("train", __doc__, argv, add)
    result = run(cfg, symbol=args.symbol, workers=args.workers, progress=sys.stderr.isatty())
    print_summary(result, cfg.endpoints.mlflow_tracking_uri)
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
