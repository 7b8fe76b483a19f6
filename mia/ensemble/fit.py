"""Fit the ensemble on the walk-forward's validation windows (issue 5, item 1).

1. **Output tables.** Each fold's agents (trained on that fold's train rows only) are run on the
   fold's validation rows once per possible position (whole contracts, ``2 x max + 1`` levels):
   the observation holds the position, so the ensemble, whose position differs from each agent's,
   must ask every agent what it would do *in the ensemble's position*. One batched call per
   (agent, level) instead of one call per bar per candidate.
2. **Posterior.** The prior weights (params.yaml ``ensemble.prior_weights``, SAC 0.4 / PPO 0.3 /
   DDPG 0.3) times each agent's probabilistic Sharpe ratio on its joined validation windows
   (Bailey & López de Prado, 2012: the probability its true Sharpe is above 0 given its record),
   normalised: a Bayesian update of "which agent is skilled" by the evidence. Floored so an agent
   the evidence is silent about keeps part of its prior.
3. **Refinement.** Candidates around the posterior (the posterior, the prior, each single agent,
   seeded Dirichlet draws centred on the posterior), each with the PPO-Lagrangian and QR-DQN risk
   modifiers on or off, are simulated over every fold's validation window with the env's costs;
   the one with the highest validation Sharpe wins. The holdout (mia.training.layout) then
   measures the winner on rows no candidate saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mia.backtest.metrics import BARS_PER_YEAR_CME_1MIN, summary
from mia.backtest.simulate import SimResult, simulate
from mia.config.sections import Params
from mia.ensemble.vote import CONTINUOUS, DISCRETE, Ensemble, decide
from mia.envs.costs import CostModel
from mia.errors import OperationalError
from mia.features.normalize import Normalizer
from mia.training.data import TrainingData

PSR_FLOOR = 0.02  # an agent's posterior never falls below 2 % of its prior share
DIRICHLET_DRAWS = 16
DIRICHLET_CONCENTRATION = 20.0  # per voter: draws stay near the posterior


@dataclass(frozen=True, kw_only=True)
class FoldTables:
    """Every agent's output on one validation window, for every position level.

    :param rows: the validation rows (absolute).
    :param outputs: agent -> (n, levels) actions, or (n, levels, n_quantiles, 3) for QR-DQN.
    :param max_contracts: the position limit; level ``i`` holds ``i - max_contracts`` contracts.
    """

    rows: slice
    outputs: dict[str, np.ndarray]
    max_contracts: int


def observations(data: TrainingData, normalizer: Normalizer, rows: slice,
                 max_contracts: int) -> np.ndarray:
    """:return: (levels, n, F + 1) float32 observations of ``rows`` at every position level, in
    the env's and the executor's layout (mia.features.normalize.observation)."""
    z = normalizer.transform(data.features[rows])
    if not np.isfinite(z).all():
        raise OperationalError(f"ensemble: non-finite features in rows {rows.start}..{rows.stop}")
    levels = np.arange(-max_contracts, max_contracts + 1, dtype=np.float32) / max_contracts
    obs = np.empty((len(levels), z.shape[0], z.shape[1] + 1), dtype=np.float32)
    obs[:, :, :-1] = z
    obs[:, :, -1] = levels[:, None]
    return obs


def _sb3_outputs(model: Any, agent: str, obs: np.ndarray) -> np.ndarray:
    import torch as th

    flat = obs.reshape(-1, obs.shape[-1])
    if agent in DISCRETE:
        with th.no_grad():
            q = model.policy.quantile_net(th.as_tensor(flat)).cpu().numpy()  # (N, nq, 3)
        out: np.ndarray = q.reshape(*obs.shape[:2], *q.shape[1:]).swapaxes(0, 1)
        return out
    action, _ = model.predict(flat, deterministic=True)
    return np.asarray(action, dtype=np.float64).reshape(obs.shape[:2]).T  # (n, levels)


def sb3_tables(models: Mapping[str, Any], data: TrainingData, normalizer: Normalizer,
               rows: slice, max_contracts: int) -> FoldTables:
    """Output tables of trained SB3 models on one window.

    :param models: agent -> SB3 model of this fold.
    :param normalizer: this fold's normaliser.
    """
    obs = observations(data, normalizer, rows, max_contracts)
    return FoldTables(rows=rows, outputs={a: _sb3_outputs(m, a, obs) for a, m in models.items()},
                      max_contracts=max_contracts)


def simulate_ensemble(ens: Ensemble, tables: FoldTables, data: TrainingData,
                      params: Params) -> SimResult:
    """The ensemble over one window, its position fed back bar by bar, with the env's costs.

    :return: the simulated window.
    """
    m = tables.max_contracts
    frac, _ = decide(ens, {a: tables.outputs[a] for a in ens.needs()})  # (n, levels)
    target = np.rint(frac * m).astype(np.int64)
    n = target.shape[0]
    decided = np.zeros(n, dtype=np.int64)
    q = 0
    for t in range(n):  # the decision at t depends on the position the ensemble holds at t
        q = int(target[t, q + m])
        decided[t] = q
    rows = tables.rows
    spread = None if data.spread is None else data.spread[rows]
    return simulate(decided, data.open[rows], data.close[rows],
                    CostModel.from_config(data.contract, params.env), max_contracts=m,
                    initial_equity=params.env.initial_equity, spread=spread,
                    first_row=int(rows.start))


def _sharpe(sims: Sequence[SimResult], params: Params) -> float:
    pnl = np.concatenate([s.pnl for s in sims])
    pos = np.concatenate([s.positions for s in sims]).astype(np.float64)
    trades = [t.pnl for s in sims for t in s.trades]
    return float(summary(pnl, initial_equity=params.env.initial_equity, positions=pos,
                         trade_pnl=trades, periods_per_year=BARS_PER_YEAR_CME_1MIN).sharpe)


def _json_safe(value: Any) -> Any:
    # The fit record travels in bundle.json (strict JSON): an agent that never traded has a NaN
    # PSR, a candidate that never traded a Sharpe of -inf; both are recorded as null.
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def posterior(prior: Mapping[str, float], psr: Mapping[str, float]) -> dict[str, float]:
    """Prior x probabilistic Sharpe, normalised (module docstring).

    :param prior: agent -> prior weight (only agents with a prior weight vote).
    :param psr: agent -> probabilistic Sharpe ratio of its validation record.
    """
    voters = {a: w for a, w in prior.items() if w > 0 and a in psr}
    if not voters:
        raise OperationalError(f"ensemble: none of the prior's agents {sorted(prior)} was "
                               f"trained (trained: {sorted(psr)}); train them first")
    raw = {a: w * max(float(psr[a]) if np.isfinite(psr[a]) else 0.0, PSR_FLOOR)
           for a, w in voters.items()}
    total = sum(raw.values())
    return {a: v / total for a, v in raw.items()}


def _normalise(w: Mapping[str, float]) -> dict[str, float]:
    total = sum(w.values())
    return {a: float(v) / total for a, v in w.items()}


def mean_correlation(series: Sequence[np.ndarray]) -> float:
    """Mean pairwise correlation of the trials' per-bar PnL (a trial that never trades has
    none and is left out); 0 with fewer than two trading trials."""
    live = [x for x in series if np.std(x) > 0]
    if len(live) < 2:
        return 0.0
    c = np.corrcoef(np.vstack(live))
    off = c[~np.eye(len(live), dtype=bool)]
    return float(np.clip(np.nanmean(off), 0.0, 1.0))


def effective_trials(n: int, rho: float) -> float:
    """Independent trials among ``n`` correlated ones, ``rho + (1 - rho) n`` (Bailey & López de
    Prado, 2014, "The Deflated Sharpe Ratio", appendix): reweightings of the same agents are
    not independent strategies, and counting each as one would over-deflate."""
    return rho + (1.0 - rho) * n


def fit_ensemble(params: Params, data: TrainingData, tables: Sequence[FoldTables],
                 psr: Mapping[str, float], *, seed: int | None = None) -> Ensemble:
    """Posterior weights refined to maximise validation Sharpe (module docstring).

    :param params: ``ensemble`` (prior, threshold), ``env`` (costs).
    :param data: the table (prices for the simulation).
    :param tables: output tables of every fold's validation window.
    :param psr: agent -> probabilistic Sharpe ratio of its joined validation record.
    :param seed: seed of the Dirichlet draws (default ``walk_forward.seed``).
    :return: the fitted ensemble; ``fit`` records every candidate's validation Sharpe.
    """
    cfg = params.ensemble
    trained = set.intersection(*(set(t.outputs) for t in tables)) if tables else set()
    post = posterior(cfg.prior_weights, {a: psr[a] for a in trained if a in psr})
    voters = sorted(post)
    rng = np.random.default_rng(params.walk_forward.seed if seed is None else seed)
    candidates: list[tuple[str, dict[str, float]]] = [
        ("posterior", post), ("prior", _normalise({a: cfg.prior_weights[a] for a in voters}))]
    candidates += [(f"only {a}", {b: float(a == b) for b in voters}) for a in voters]
    alpha = np.array([post[a] for a in voters]) * DIRICHLET_CONCENTRATION * len(voters)
    for i in range(DIRICHLET_DRAWS):
        draw = rng.dirichlet(np.maximum(alpha, 1e-3))
        candidates.append((f"draw {i}", {a: float(x) for a, x in zip(voters, draw, strict=True)}))
    modifiers = [(False, False)]
    if "ppo_lagrangian" in trained:
        modifiers.append((True, False))
    if "qrdqn" in trained:
        modifiers += [(m[0], True) for m in list(modifiers)]
    scored = []
    returns = []
    for name, w in candidates:
        for lag, quant in modifiers:
            ens = Ensemble(weights=_normalise(w), threshold=cfg.confidence_threshold,
                           lagrangian_scale=lag, quantile_confidence=quant)
            sims = [simulate_ensemble(ens, t, data, params) for t in tables]
            sharpe = _sharpe(sims, params)
            scored.append((sharpe if np.isfinite(sharpe) else -np.inf, name, ens))
            returns.append(np.concatenate([s.pnl for s in sims]))
    best_sharpe, best_name, best = max(scored, key=lambda s: s[0])
    rho = mean_correlation(returns)
    record = _json_safe({
        "prior": {a: cfg.prior_weights[a] for a in voters}, "psr": {a: psr[a] for a in voters},
        "posterior": post, "chosen": best_name, "validation_sharpe": best_sharpe,
        "trials": len(scored), "trial_correlation": rho,
        "effective_trials": effective_trials(len(scored), rho),
        "candidates": [{"name": n, "weights": e.weights, "lagrangian_scale": e.lagrangian_scale,
                        "quantile_confidence": e.quantile_confidence, "validation_sharpe": s}
                       for s, n, e in scored],
    })
    return Ensemble(weights=best.weights, threshold=best.threshold,
                    lagrangian_scale=best.lagrangian_scale,
                    quantile_confidence=best.quantile_confidence, fit=record)


__all__ = ["CONTINUOUS", "FoldTables", "effective_trials", "fit_ensemble", "mean_correlation",
           "observations", "posterior", "sb3_tables", "simulate_ensemble"]
