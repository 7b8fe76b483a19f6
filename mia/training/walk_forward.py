"""Walk-forward training: one (agent, fold) at a time, scored out of sample, beside baselines.

:func:`train_fold` is the unit the Airflow DAG maps over workers: it fits the normaliser on the
fold's train rows only (embargoed rows excluded), trains one agent on windows inside those rows,
and scores the deterministic policy once over the validation window, which it never trained on
(decide at bar t, fill at t+1's open, the env's costs). :func:`evaluate` concatenates each
agent's out-of-sample PnL over the folds, runs the baselines on the same folds, and computes the
metrics, the deflated Sharpe ratio taking every agent tried as a trial (Bailey & López de Prado,
2014).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia.agents import AGENTS, action_kind
from mia.backtest.metrics import BARS_PER_YEAR_CME_1MIN, summary
from mia.backtest.simulate import SimResult, simulate
from mia.config.sections import Params
from mia.envs.costs import CostModel
from mia.errors import ConfigError, OperationalError
from mia.features.normalize import Normalizer
from mia.training.data import TrainingData
from mia.training.splits import Fold

Progress = Callable[[int], None]  # called with the env steps done since the last call


@dataclass(frozen=True, kw_only=True)
class FoldResult:
    """One (agent, fold): where its files are and how it did out of sample.

    :param agent: agent name. :param fold: fold number. :param seed: training seed.
    :param timesteps: env steps trained.
    :param validation: the validation rows (absolute).
    :param pnl: (n,) out-of-sample net PnL per validation bar, USD.
    :param positions: (n,) contracts held over each validation bar.
    :param actions: (n,) the policy's raw action per bar (target fraction, or 0/1/2).
    :param trade_pnl: net PnL of each trade in the window, USD.
    :param metrics: ``wf/…`` metrics of this fold alone.
    :param train_seconds: wall time of ``learn``.
    :param folder: where the model, normaliser and arrays are.
    """

    agent: str
    fold: int
    seed: int
    timesteps: int
    validation: slice
    pnl: np.ndarray
    positions: np.ndarray
    actions: np.ndarray
    trade_pnl: np.ndarray
    metrics: dict[str, float]
    train_seconds: float
    folder: Path

    def save(self) -> None:
        """Write the arrays and metrics next to the model (``oos.npz``, ``result.json``)."""
        np.savez(self.folder / "oos.npz", pnl=self.pnl, positions=self.positions,
                 actions=self.actions, trade_pnl=self.trade_pnl)
        doc = {"agent": self.agent, "fold": self.fold, "seed": self.seed,
               "timesteps": self.timesteps,
               "validation": [int(self.validation.start), int(self.validation.stop)],
               "metrics": self.metrics, "train_seconds": self.train_seconds}
        (self.folder / "result.json").write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> FoldResult:
        """Read a fold written by :meth:`save`.

        :raises OperationalError: the fold has not been trained (files missing).
        """
        doc_path, arr_path = folder / "result.json", folder / "oos.npz"
        if not (doc_path.is_file() and arr_path.is_file()):
            raise OperationalError(f"no trained fold in {folder}; run 'mia train' (or the "
                                   "train task of mia_retrain) for it first")
        doc = json.loads(doc_path.read_text())
        with np.load(arr_path) as z:
            arrays = {k: z[k] for k in ("pnl", "positions", "actions", "trade_pnl")}
        v0, v1 = doc["validation"]
        return cls(agent=doc["agent"], fold=doc["fold"], seed=doc["seed"],
                   timesteps=doc["timesteps"], validation=slice(v0, v1),
                   metrics=doc["metrics"], train_seconds=doc["train_seconds"], folder=folder,
                   **arrays)


def fold_seed(base: int, agent: str, fold: int) -> int:
    """Seed of one (agent, fold): fixed by the walk-forward seed, distinct per task.

    :param base: ``walk_forward.seed``. :param agent: agent name. :param fold: fold number.
    """
    return base + 1000 * fold + list(AGENTS).index(agent)


def agent_config(params: Params, agent: str, timesteps: int | None) -> Any:
    """:return: the agent's config, with ``total_timesteps`` overridden when asked."""
    if agent not in AGENTS:
        raise ConfigError(f"unknown agent {agent!r}; known: {', '.join(AGENTS)}")
    cfg = getattr(params.agents, agent)
    if timesteps is not None:
        if timesteps < 1:
            raise ConfigError(f"timesteps={timesteps} must be >= 1")
        cfg = dataclasses.replace(cfg, total_timesteps=int(timesteps))
    return cfg


def fold_folder(root: Path, agent: str, fold: int) -> Path:
    """:return: ``<root>/<agent>/fold_<k>``, the folder of one task's outputs."""
    return root / agent / f"fold_{fold}"


def score(model: Any, data: TrainingData, normalizer: Normalizer, rows: slice,
          params: Params, *, discrete: bool) -> tuple[SimResult, np.ndarray]:
    """Run a trained policy deterministically over a window it never trained on.

    :param model: an SB3 model (anything with ``predict(obs, deterministic=True)``).
    :param data: the table. :param normalizer: the fold's normaliser.
    :param rows: the window (absolute rows).
    :param params: parameters (env limits and costs).
    :param discrete: the policy acts in Discrete(3) (QR-DQN).
    :return: the simulated window and the raw action per bar.
    """
    from mia.envs.trading_env import TradingEnv

    market = data.market(normalizer)
    env = TradingEnv(market, (rows,), params.env, discrete=discrete, evaluate=True)
    obs, _ = env.reset(seed=0)
    n = int(rows.stop - rows.start)
    targets = np.zeros(n, dtype=np.int64)
    actions = np.zeros(n, dtype=np.float64)
    pnl = np.zeros(n, dtype=np.float64)
    for t in range(n - 1):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _, info = env.step(action)
        actions[t] = float(np.asarray(action).ravel()[0])
        targets[t] = int(info["position"])
        pnl[t + 1] = info["pnl"]
    targets[-1] = targets[-2] if n > 1 else 0  # the last bar's decision never fills
    spread = None if data.spread is None else data.spread[rows]
    sim = simulate(targets, data.open[rows], data.close[rows],
                   CostModel.from_config(data.contract, params.env),
                   max_contracts=params.env.max_contracts,
                   initial_equity=params.env.initial_equity, spread=spread,
                   first_row=int(rows.start))
    if not np.allclose(sim.pnl, pnl, rtol=0.0, atol=1e-6):
        raise OperationalError("walk-forward: the simulator and the env disagree on the "
                               "out-of-sample PnL; the accounting is broken (report a bug)")
    return sim, actions


def window_metrics(sim: SimResult, params: Params, prefix: str = "wf") -> dict[str, float]:
    """:return: the namespaced metrics of one simulated window."""
    return summary(sim.pnl, initial_equity=params.env.initial_equity,
                   positions=sim.positions, trade_pnl=[t.pnl for t in sim.trades],
                   periods_per_year=BARS_PER_YEAR_CME_1MIN).to_dict(prefix)


def train_fold(params: Params, data: TrainingData, agent: str, fold: Fold, *, folder: Path,
               timesteps: int | None = None, progress: Progress | None = None,
               logger_writer: Any = None) -> FoldResult:
    """Train one agent on one fold's train rows and score it on the fold's validation rows.

    :param params: parameters (``agents.<agent>``, ``env``, ``walk_forward.seed``).
    :param data: the symbol's table.
    :param agent: agent name (``params.yaml: agents`` key).
    :param fold: the fold (absolute rows, from the data's layout).
    :param folder: where to write the model, normaliser and out-of-sample arrays.
    :param timesteps: override of the agent's ``total_timesteps``.
    :param progress: called with the env steps done (a progress bar).
    :param logger_writer: an SB3 ``KVWriter`` receiving SB3's log (MLflow), or None.
    :return: the fold's result (also written to ``folder``).
    :raises ConfigError: bad hyper-parameters, before any training.
    :raises OperationalError: an empty fold, NaN features in the fold, a spec/obs mismatch.
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    from mia.agents import build
    from mia.envs.vec_env import TradingVecEnv

    cfg = agent_config(params, agent, timesteps)
    seed = fold_seed(params.walk_forward.seed, agent, fold.index)
    train_rows = fold.train_indices()
    if train_rows.size < 2:
        raise OperationalError(f"walk-forward: fold {fold.index} has {train_rows.size} train "
                               "rows; widen the data or walk_forward.train_bars")
    normalizer = Normalizer.fit(data.features, data.spec.names, train_rows)
    market = data.market(normalizer)
    discrete = action_kind(agent) == "discrete"
    segments = [s for s in fold.train_segments() if s.stop - s.start >= 2]
    env = TradingVecEnv(market, segments, params.env, 1, discrete=discrete, seed=seed)
    model = build(agent, cfg, env, seed=seed)  # checks every hyper-parameter first
    if logger_writer is not None:
        model.set_logger(Logger(folder=None, output_formats=[logger_writer]))

    class _Progress(BaseCallback):  # type: ignore[misc]
        def _on_step(self) -> bool:
            if progress is not None:
                progress(self.training_env.num_envs)
            return True

    started = time.perf_counter()
    # log_interval=1: SB3 dumps its log every rollout (PPO) / episode (off-policy)
    model.learn(total_timesteps=cfg.total_timesteps, callback=_Progress(), log_interval=1)
    train_seconds = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    (folder / "normalizer.json").write_text(json.dumps(normalizer.to_dict()) + "\n")
    sim, actions = score(model, data, normalizer, fold.validation, params, discrete=discrete)
    result = FoldResult(
        agent=agent, fold=fold.index, seed=seed, timesteps=cfg.total_timesteps,
        validation=fold.validation, pnl=sim.pnl, positions=sim.positions.astype(np.float64),
        actions=actions, trade_pnl=np.array([t.pnl for t in sim.trades], dtype=np.float64),
        metrics=window_metrics(sim, params), train_seconds=train_seconds, folder=folder,
    )
    result.save()
    return result


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """A walk-forward's out-of-sample record: per agent and per baseline, all folds joined.

    :param pnl: name -> concatenated per-bar PnL over the folds' validation windows.
    :param positions: name -> concatenated positions.
    :param metrics: name -> ``wf/…`` metrics (agents: DSR over every agent tried).
    :param fold_metrics: name -> per-fold metrics, fold order.
    :param agents: the agent names (the rest are baselines).
    :param bounds: bar offsets where each fold starts in the concatenation.
    """

    pnl: dict[str, np.ndarray]
    positions: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]
    fold_metrics: dict[str, list[dict[str, float]]]
    agents: tuple[str, ...]
    bounds: tuple[int, ...]

    @property
    def best_agent(self) -> str:
        """The agent with the highest out-of-sample Sharpe."""
        return max(self.agents, key=lambda a: _nan_low(self.metrics[a]["wf/sharpe"]))

    def to_json(self) -> str:
        """:return: metrics and per-fold metrics as JSON (the arrays go to ``oos.npz``)."""
        return json.dumps({"agents": list(self.agents), "best_agent": self.best_agent,
                           "metrics": self.metrics, "fold_metrics": self.fold_metrics,
                           "bounds": list(self.bounds)}, indent=1, default=_json_float)


def _nan_low(x: float) -> float:
    return -np.inf if np.isnan(x) else x


def _json_float(x: object) -> object:
    return float(x) if isinstance(x, np.floating | np.integer) else str(x)


def evaluate(params: Params, data: TrainingData, results: Sequence[FoldResult], *,
             baseline_runs: Mapping[int, Mapping[str, SimResult]] | None = None) -> Evaluation:
    """Join each agent's folds, run the baselines on the same folds, compute the metrics.

    :param params: parameters (env costs, label horizon for the logistic baseline).
    :param data: the table (for the baselines' markets).
    :param results: every (agent, fold) result of this walk-forward.
    :param baseline_runs: precomputed baselines per fold (tests); computed when None.
    :return: the evaluation.
    :raises OperationalError: a fold is missing for some agent, or no result at all.
    """
    from mia.backtest.baselines import run_baselines

    if not results:
        raise OperationalError("walk-forward: no trained (agent, fold) to evaluate; run train "
                               "first")
    folds = sorted({r.fold for r in results})
    agents = tuple(a for a in AGENTS if any(r.agent == a for r in results))
    by_key = {(r.agent, r.fold): r for r in results}
    missing = [(a, k) for a in agents for k in folds if (a, k) not in by_key]
    if missing:
        raise OperationalError(f"walk-forward: missing trained folds {missing}; rerun them")
    layout_folds = {f.index: f for f in data.layout.folds}
    baselines: dict[int, Mapping[str, SimResult]] = {}
    for k in folds:
        if baseline_runs is not None and k in baseline_runs:
            baselines[k] = baseline_runs[k]
            continue
        fold = layout_folds[k]
        normalizer = Normalizer.fit(data.features, data.spec.names, fold.train_indices())
        baselines[k] = run_baselines(data.market(normalizer), fold, params.env,
                                     horizon=params.features.label_horizon)
    series: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    fold_metrics: dict[str, list[dict[str, float]]] = {}
    for k in folds:
        for a in agents:
            r = by_key[(a, k)]
            series.setdefault(a, []).append((r.pnl, r.positions, r.trade_pnl))
            fold_metrics.setdefault(a, []).append(r.metrics)
        for name, sim in baselines[k].items():
            tpnl = np.array([t.pnl for t in sim.trades], dtype=np.float64)
            series.setdefault(name, []).append((sim.pnl, sim.positions.astype(float), tpnl))
            fold_metrics.setdefault(name, []).append(window_metrics(sim, params))
    pnl = {n: np.concatenate([s[0] for s in v]) for n, v in series.items()}
    positions = {n: np.concatenate([s[1] for s in v]) for n, v in series.items()}
    trades = {n: np.concatenate([s[2] for s in v]) for n, v in series.items()}
    plain = {n: _summary(params, pnl[n], positions[n], trades[n], 1, 0.0) for n in pnl}
    # Every agent tried is a trial of the selection: the DSR asks whether the best of them beats
    # what the best of that many unskilled strategies would show (Bailey & López de Prado, 2014).
    sharpes = np.array([plain[a]["wf/sharpe"] for a in agents], dtype=np.float64)
    finite = sharpes[np.isfinite(sharpes)]
    variance = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
    metrics = {n: (_summary(params, pnl[n], positions[n], trades[n], len(agents), variance)
                   if n in agents else plain[n]) for n in pnl}
    bounds = tuple(int(b) for b in np.cumsum([0] + [len(s[0]) for s in series[agents[0]]])[:-1])
    return Evaluation(pnl=pnl, positions=positions, metrics=metrics, fold_metrics=fold_metrics,
                      agents=agents, bounds=bounds)


def _summary(params: Params, pnl: np.ndarray, positions: np.ndarray, trades: np.ndarray,
             n_trials: int, variance: float) -> dict[str, float]:
    return summary(pnl, initial_equity=params.env.initial_equity, positions=positions,
                   trade_pnl=trades, periods_per_year=BARS_PER_YEAR_CME_1MIN,
                   n_trials=n_trials, trial_sharpe_variance=variance).to_dict("wf")
