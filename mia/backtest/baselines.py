"""Baseline strategies, scored on the same folds, costs and simulator as the agents.

Each baseline returns a target-position series for a fold's validation window: one decision per
validation bar ``t`` (contracts, filled by :func:`mia.backtest.simulate.simulate` at the open of
``t + 1``), taken only from information at or before ``t``. A test perturbs every bar after ``t``
and checks the decisions up to ``t`` do not move.

- **flat**: always 0; the zero line every strategy must beat after costs.
- **buy_and_hold**: long ``max_contracts`` throughout.
- **sma_crossover**: long ``max_contracts`` while the mean of the last ``fast`` closes is above
  the mean of the last ``slow`` closes, short while below, flat while equal or before ``slow``
  closes exist. Defaults 20 / 100 one-minute bars (20 minutes against 100 minutes): the
  classic trend-following rule at an intraday scale. Closes before the validation window are
  past data and are used.
- **logistic_regression**: scikit-learn ``LogisticRegression`` (L2, ``C = 1``) on the market's
  normalised features (the same selected features the agents see), trained on the fold's train
  rows only (``Fold.train_segments()``: embargoed rows excluded) with label ``close[t + h] >
  close[t]`` for ``h = features.label_horizon`` bars strictly after ``t``. Train rows whose label
  window leaves their train segment (reaches into the purge, an embargo hole or validation) are
  dropped, and so are rows with a zero forward return (no sign to learn; common on a tick grid).
  Position: long if ``P(up) > 0.5 + margin``, short if ``P(up) < 0.5 - margin``, else flat;
  ``margin = 0.02`` keeps the model out of the market where it barely prefers a side (each
  trade pays the spread, slippage and commissions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from mia.backtest.simulate import SimResult, simulate
from mia.config import EnvConfig
from mia.envs.costs import CostModel
from mia.envs.market import Market
from mia.errors import ConfigError, OperationalError
from mia.features.normalize import first_non_finite
from mia.training.splits import Fold

SMA_FAST: Final[int] = 20
SMA_SLOW: Final[int] = 100
LOGIT_MARGIN: Final[float] = 0.02
LOGIT_C: Final[float] = 1.0
LOGIT_MIN_ROWS: Final[int] = 50  # fewer labelled train rows than this cannot fit F coefficients
BASELINES: Final[tuple[str, ...]] = ("flat", "buy_and_hold", "sma_crossover",
                                     "logistic_regression")


def _validation(market: Market, fold: Fold) -> slice:
    v = fold.validation
    start, stop = int(v.start), int(v.stop)
    if not 0 <= start < stop <= market.n_rows:
        raise OperationalError(f"baselines: fold {fold.index} validation rows {start}..{stop} "
                               f"lie outside the {market.n_rows} rows of the market")
    return slice(start, stop)


def flat(market: Market, fold: Fold) -> np.ndarray:
    """:return: (n_validation,) int64 zeros."""
    v = _validation(market, fold)
    return np.zeros(v.stop - v.start, dtype=np.int64)


def buy_and_hold(market: Market, fold: Fold, *, max_contracts: int) -> np.ndarray:
    """:param max_contracts: contracts held long. :return: (n_validation,) int64."""
    v = _validation(market, fold)
    return np.full(v.stop - v.start, int(max_contracts), dtype=np.int64)


def sma_crossover(market: Market, fold: Fold, *, max_contracts: int, fast: int = SMA_FAST,
                  slow: int = SMA_SLOW) -> np.ndarray:
    """Moving-average crossover on closes, long/short.

    :param market: the market (closes).
    :param fold: the fold whose validation window is traded.
    :param max_contracts: contracts held long or short.
    :param fast: bars of the fast mean.
    :param slow: bars of the slow mean (> ``fast``).
    :return: (n_validation,) int64 targets.
    :raises ConfigError: windows not ``1 <= fast < slow``.
    """
    if not 1 <= fast < slow:
        raise ConfigError(f"sma_crossover: need 1 <= fast < slow, got fast={fast} slow={slow}")
    v = _validation(market, fold)
    lo = max(0, v.start - slow + 1)
    close = np.asarray(market.close[lo : v.stop], dtype=np.float64)
    out = np.zeros(v.stop - v.start, dtype=np.int64)
    if len(close) < slow:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(close, slow)  # row j ends at lo+slow-1+j
    slow_mean = windows.mean(axis=1)
    fast_mean = windows[:, slow - fast :].mean(axis=1)
    first = lo + slow - 1 - v.start  # offset of the first validation bar with `slow` closes
    out[first:] = np.sign(fast_mean - slow_mean).astype(np.int64) * int(max_contracts)
    return out


def _label_rows(fold: Fold, horizon: int) -> np.ndarray:
    # rows t whose label window t+1 .. t+horizon stays inside t's own train segment
    parts = [np.arange(s.start, s.stop - horizon, dtype=np.int64)
             for s in fold.train_segments() if s.stop - s.start > horizon]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def logistic_regression(market: Market, fold: Fold, *, max_contracts: int, horizon: int,
                        margin: float = LOGIT_MARGIN, c: float = LOGIT_C) -> np.ndarray:
    """Logistic regression of the forward-return sign on the features (module docstring).

    :param market: normalised features and closes.
    :param fold: train rows to fit on, validation window to trade.
    :param max_contracts: contracts held long or short.
    :param horizon: label horizon in bars (``features.label_horizon``).
    :param margin: distance of ``P(up)`` from 0.5 needed to take a side, in ``[0, 0.5)``.
    :param c: inverse L2 regularisation strength (> 0).
    :return: (n_validation,) int64 targets.
    :raises ConfigError: bad horizon, margin or ``c``.
    :raises OperationalError: too few labelled train rows, a single label class, or NaN/inf
        features in the train or validation rows.
    """
    from sklearn.linear_model import LogisticRegression  # heavy: only when this baseline runs

    if horizon < 1 or not 0.0 <= margin < 0.5 or not c > 0:
        raise ConfigError(f"logistic_regression: need horizon >= 1, 0 <= margin < 0.5, c > 0; "
                          f"got horizon={horizon}, margin={margin}, c={c}")
    v = _validation(market, fold)
    rows = _label_rows(fold, horizon)
    close = np.asarray(market.close, dtype=np.float64)
    fwd = close[rows + horizon] - close[rows] if rows.size else np.empty(0)
    rows, up = rows[fwd != 0.0], fwd[fwd != 0.0] > 0.0
    if rows.size < LOGIT_MIN_ROWS or up.all() or not up.any():
        raise OperationalError(f"logistic_regression: fold {fold.index} has {rows.size} labelled "
                               f"train rows ({int(up.sum())} up); need >= {LOGIT_MIN_ROWS} with "
                               "both signs: use a longer train window or a shorter horizon")
    val_rows = np.arange(v.start, v.stop)
    for label, r in (("train", rows), ("validation", val_rows)):
        where = first_non_finite(market.features, market.names, r)
        if where is not None:
            raise OperationalError(f"logistic_regression: {where} ({label} row); features must "
                                   "be finite after warm-up")
    model = LogisticRegression(C=c, max_iter=1000)
    model.fit(market.features[rows], up)
    p_up = model.predict_proba(market.features[v])[:, list(model.classes_).index(True)]
    m = int(max_contracts)
    return np.where(p_up > 0.5 + margin, m, np.where(p_up < 0.5 - margin, -m, 0)).astype(np.int64)


def baseline_targets(market: Market, fold: Fold, *, max_contracts: int,
                     horizon: int) -> dict[str, np.ndarray]:
    """Every baseline's targets for a fold, with the documented defaults.

    :param market: the market.
    :param fold: the fold.
    :param max_contracts: the position limit (``env.max_contracts``).
    :param horizon: label horizon of the logistic regression (``features.label_horizon``).
    :return: name (:data:`BASELINES` order) -> (n_validation,) int64 targets.
    """
    makers: dict[str, Callable[[], np.ndarray]] = {
        "flat": lambda: flat(market, fold),
        "buy_and_hold": lambda: buy_and_hold(market, fold, max_contracts=max_contracts),
        "sma_crossover": lambda: sma_crossover(market, fold, max_contracts=max_contracts),
        "logistic_regression": lambda: logistic_regression(
            market, fold, max_contracts=max_contracts, horizon=horizon),
    }
    return {name: makers[name]() for name in BASELINES}


def run_baselines(market: Market, fold: Fold, cfg: EnvConfig, *,
                  horizon: int) -> dict[str, SimResult]:
    """Simulate every baseline over a fold's validation window with the env's costs.

    :param market: the market.
    :param fold: the fold.
    :param cfg: env config (limit, costs, initial equity).
    :param horizon: label horizon (``features.label_horizon``).
    :return: name -> simulated window (trades report absolute rows).
    """
    v = _validation(market, fold)
    costs = CostModel.from_config(market.spec, cfg)
    spread = None if market.spread is None else market.spread[v]
    return {
        name: simulate(targets, market.open[v], market.close[v], costs,
                       max_contracts=cfg.max_contracts, initial_equity=cfg.initial_equity,
                       spread=spread, first_row=v.start)
        for name, targets in baseline_targets(market, fold, max_contracts=cfg.max_contracts,
                                              horizon=horizon).items()
    }
