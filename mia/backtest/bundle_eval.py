"""Bundle evaluation (issue 5, item 6): the bundle's decisions over the holdout, sized and
guarded by :mod:`mia.risk`, with the shared cost model. This is the number the gate reads.

The agents' outputs come from the bundle itself (:class:`mia.registry.policy.Policy`: the ONNX
graphs the executor loads, not the training models), asked once per position level as in the
ensemble's fit; the vote is :func:`mia.ensemble.vote.decide`. Each bar, in the order the live
executor follows (:mod:`mia.risk.engine`):

1. the order decided at the previous close fills at this bar's open, paying
   :meth:`mia.envs.costs.CostModel.cost` at this bar's spread;
2. :meth:`RiskEngine.on_bar`: stops and take-profits inside the bar fill at their levels (gaps at
   the open), same costs;
3. equity is marked at the close (:meth:`RiskEngine.on_equity`: daily loss, drawdown, breakers);
4. the ensemble's target fraction at the position now held goes through
   :meth:`RiskEngine.decide`; its order fills at the next open.

Accounting is cash + position x close x multiplier, so fills at any price (in-bar stops) book
exactly; per-bar PnL is the change in that equity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from mia.backtest.metrics import BARS_PER_YEAR_CME_1MIN, summary
from mia.config.sections import Params
from mia.ensemble.vote import Ensemble, decide
from mia.envs.costs import CostModel
from mia.errors import OperationalError
from mia.risk import FeatureTap, RiskEngine, RiskRules
from mia.training.data import TrainingData


@dataclass(frozen=True, kw_only=True)
class BundleRun:
    """One run of a bundle (or one of its agents alone) over a window.

    :param pnl: (n,) net PnL per bar, USD. :param positions: (n,) contracts held at each close.
    :param targets: (n,) the position each bar's decision asks for (filled at the next open);
        the last bar decides nothing (its target is the position held).
    :param trade_pnl: net PnL of each round trip (a flip closes one and opens another).
    :param costs: USD transaction costs paid. :param orders: orders filled (policy + exits).
    :param exits: stop / take-profit exits inside bars.
    :param events: risk event cause -> count (breakers, limits).
    :param metrics: ``<prefix>/…`` metrics of the window.
    """

    pnl: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    trade_pnl: np.ndarray
    costs: float
    orders: int
    exits: int
    events: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def policy_outputs(policy: Any, raw: np.ndarray, max_contracts: int) -> dict[str, np.ndarray]:
    """Every agent's output at every position level, over a window (the ensemble's position
    feeds back into each agent's observation, so each level is asked once, in batch).

    :param policy: a :class:`mia.registry.policy.Policy`. :param raw: (n, F) raw features.
    :return: agent -> (n, levels) fractions, or (n, levels, n_quantiles, 3) quantiles (QR-DQN).
    """
    levels = range(-max_contracts, max_contracts + 1)
    per_level = [policy.act_batch(raw, np.full(len(raw), float(q))) for q in levels]
    out: dict[str, np.ndarray] = {}
    for name, first in per_level[0].items():
        if first.quantiles is not None:
            out[name] = np.stack([b[name].quantiles for b in per_level], axis=1)
        else:
            out[name] = np.stack([b[name].fraction for b in per_level], axis=1)
    return out


def decision_table(ens: Ensemble, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """:param outputs: agent -> (n, levels[, n_quantiles, 3]) outputs at every position level.
    :return: (n, levels) target fractions of the ensemble."""
    frac, _ = decide(ens, {a: outputs[a] for a in ens.needs()})
    return np.asarray(frac, dtype=np.float64)


def run_window(fractions: np.ndarray, data: TrainingData, rows: slice, risk_rows: np.ndarray,
               risk_names: tuple[str, ...], params: Params, trade_days: np.ndarray, *,
               prefix: str = "holdout") -> BundleRun:
    """Trade a window bar by bar under the risk engine (module docstring).

    :param fractions: (n, levels) the policy's target fraction at every position level.
    :param data: the table (prices, spread, timestamps).
    :param rows: the window, absolute rows.
    :param risk_rows: (n, R) raw risk features of the window, columns ``risk_names``.
    :param risk_names: the risk features' names (:data:`mia.risk.RISK_FEATURES` available).
    :param params: ``risk``, ``env`` (costs, equity, the position levels).
    :param trade_days: (n,) CME trade date of each bar (``mia.data.calendar.trade_dates``).
    :param prefix: metric namespace.
    :raises OperationalError: the table lacks timestamps or highs/lows.
    """
    if data.ts is None or data.high is None or data.low is None:
        raise OperationalError("bundle evaluation needs bar timestamps, highs and lows; load "
                               "the table with mia.pipelines.train.load_training_data")
    m = params.env.max_contracts
    n = rows.stop - rows.start
    if fractions.shape != (n, 2 * m + 1) or risk_rows.shape[0] != n:
        raise OperationalError(f"bundle evaluation: {fractions.shape} decisions and "
                               f"{risk_rows.shape[0]} risk rows for a window of {n} bars")
    costs = CostModel.from_config(data.contract, params.env)
    mult = data.contract.multiplier
    rules = RiskRules.from_config(params.risk, spec=data.contract,
                                  regime_thresholds=params.features.regime_thresholds)
    tap = FeatureTap(risk_names)
    equity0 = float(params.env.initial_equity)
    r0 = rows.start
    engine = RiskEngine(rules, equity=equity0, trade_date=trade_days[0], now_ns=int(data.ts[r0]))
    spread = data.spread
    cash, pos, pending = equity0, 0, 0
    prev_equity = equity0
    pnl = np.zeros(n)
    held = np.zeros(n, dtype=np.int64)
    wanted = np.zeros(n, dtype=np.int64)
    paid = 0.0
    orders = exits = 0
    events: dict[str, int] = {}
    trades: list[float] = []
    trade_start = equity0

    def fill(q: int, price: float, r: int) -> None:
        nonlocal cash, pos, paid, orders, trade_start
        before = pos
        fee = costs.cost(q, None if spread is None else float(spread[r]))
        cash -= q * price * mult + fee
        paid += fee
        orders += 1
        pos += q
        if before != 0 and (pos == 0 or (pos > 0) != (before > 0)):  # a round trip ends
            mark = cash + pos * price * mult
            trades.append(mark - trade_start)
        if pos != 0 and (before == 0 or (pos > 0) != (before > 0)):
            trade_start = cash + pos * price * mult

    for t in range(n):
        r = r0 + t
        now = int(data.ts[r])
        if pending:
            fill(pending, float(data.open[r]), r)
            engine.on_fill(pending, float(data.open[r]), now_ns=now)
            pending = 0
        feats = tap.read(risk_rows[t])
        bar = engine.on_bar(now_ns=now, open=float(data.open[r]), high=float(data.high[r]),
                            low=float(data.low[r]), close=float(data.close[r]), features=feats)
        for e in bar.exits:
            fill(e.quantity, e.price, r)
            engine.on_fill(e.quantity, e.price, now_ns=now)
            exits += 1
        close = float(data.close[r])
        equity = cash + pos * close * mult
        evs = (*bar.events, *engine.on_equity(now_ns=now, trade_date=trade_days[t],
                                              equity=equity))
        for ev in evs:
            events[ev.cause] = events.get(ev.cause, 0) + 1
        if t + 1 < n:
            level = max(-m, min(m, pos)) + m
            d = engine.decide(float(fractions[t, level]), position=pos, equity=equity,
                              price=close, features=feats)
            pending = int(d.order)
            wanted[t] = int(d.target)
        else:
            wanted[t] = pos
        pnl[t] = equity - prev_equity
        prev_equity = equity
        held[t] = pos
    if pos != 0:  # an open trade at the end is marked at the last close, as the env does
        trades.append(prev_equity - trade_start)
    metrics = summary(pnl, initial_equity=equity0, positions=held.astype(np.float64),
                      trade_pnl=trades, periods_per_year=BARS_PER_YEAR_CME_1MIN).to_dict(prefix)
    return BundleRun(pnl=pnl, positions=held, targets=wanted, trade_pnl=np.asarray(trades),
                     costs=paid,
                     orders=orders, exits=exits, events=events, metrics=metrics)


def trade_days_of(ts_ns: np.ndarray) -> np.ndarray:
    """:param ts_ns: int64 bar-close times, ns UTC. :return: (n,) CME trade dates."""
    import pandas as pd

    from mia.data.calendar import trade_dates

    days = trade_dates(pd.DatetimeIndex(pd.to_datetime(ts_ns, utc=True)))
    return np.asarray([d if isinstance(d, date) else pd.Timestamp(d).date() for d in days])
