"""Bundle evaluation under the risk engine (mia.backtest.bundle_eval)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from mia.backtest.bundle_eval import run_window
from mia.config import load_config
from mia.data.contracts import contract
from mia.features.spec import make_spec
from mia.risk import RISK_FEATURES
from mia.training.data import TrainingData
from mia.training.layout import Layout
from tests.unit.risk._rules import QUIET

P = load_config(None).params
NAMES = tuple(RISK_FEATURES)
MINUTE = 60_000_000_000


def _table(close: np.ndarray, low: np.ndarray | None = None) -> TrainingData:
    n = len(close)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.25
    low = np.minimum(open_, close) - 0.25 if low is None else low
    lay = Layout(n_rows=n, start=0, selection=slice(0, 0), folds=(), holdout=slice(0, n))
    return TrainingData(symbol="ES", features=np.zeros((n, 1), np.float32),
                        spec=make_spec(["ret_1"]), open=open_, close=close, spread=None,
                        contract=contract("ES"), layout=lay, data_hash="t",
                        ts=1_704_200_000 * 1_000_000_000 + MINUTE * np.arange(n), high=high,
                        low=low)


def _quiet(n: int) -> np.ndarray:
    row = np.array([QUIET[k] for k in NAMES], dtype=np.float64)
    return np.tile(row, (n, 1))


def _levels(n: int, fraction: float) -> np.ndarray:
    return np.full((n, 2 * P.env.max_contracts + 1), fraction)


def test_an_order_decided_at_a_close_fills_at_the_next_open_with_costs():
    close = 4800.0 + 0.25 * np.arange(40)  # a slow rise: no stop, no exit rule
    data = _table(close)
    days = np.full(40, date(2024, 1, 2))
    run = run_window(_levels(40, 1.0), data, slice(0, 40), _quiet(40), NAMES, P, days)
    assert run.positions[0] == 0  # decided at bar 0's close, filled at bar 1's open
    assert run.positions[1] > 0
    assert run.orders >= 1
    assert run.costs > 0
    # cash accounting: every bar's PnL adds up to the final mark
    q = int(run.positions[1])
    gross = q * (close[-1] - data.open[1]) * contract("ES").multiplier
    assert run.pnl.sum() == pytest.approx(gross - run.costs, rel=1e-9)


def test_a_stop_inside_a_bar_exits_at_the_stop_level():
    close = np.r_[np.full(20, 4800.0), 4800.0 - 0.25 * np.arange(1, 21)]
    low = np.minimum(np.r_[close[0], close[:-1]], close) - 0.25
    low[30] = 4780.0  # a wick far below the 2 x ATR(4) stop, then back
    data = _table(close, low)
    run = run_window(_levels(40, 1.0), data, slice(0, 40), _quiet(40), NAMES, P,
                     np.full(40, date(2024, 1, 2)))
    assert run.exits == 1
    assert run.positions[29] > 0
    assert run.positions[30] == 0  # stopped out inside bar 30, flat at its close
    # the 20-point wick is > 4 x ATR: the volatility breaker holds new exposure back
    assert run.events.get("breaker.volatility", 0) >= 1
    assert run.positions[31] == 0


def test_no_order_is_sent_on_the_last_bar_and_flat_stays_flat():
    data = _table(4800.0 + np.zeros(10))
    run = run_window(_levels(10, 0.0), data, slice(0, 10), _quiet(10), NAMES, P,
                     np.full(10, date(2024, 1, 2)))
    assert run.orders == 0
    assert run.pnl.sum() == 0.0
    assert run.metrics["holdout/total_return"] == 0.0


def test_positions_stay_within_the_risk_limit_and_on_the_policy_side():
    close = 4800.0 + 0.25 * np.arange(30)
    data = _table(close)
    fr = _levels(30, 1.0)
    run = run_window(fr, data, slice(0, 30), _quiet(30), NAMES, P, np.full(30, date(2024, 1, 2)))
    assert run.positions.max() <= P.risk.max_contracts
    assert run.positions.min() >= 0  # a long-only policy never goes short
