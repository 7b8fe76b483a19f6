from __future__ import annotations

import numpy as np
import pytest

from mia.backtest.simulate import simulate
from mia.envs.costs import CostModel
from mia.envs.trading_env import TradingEnv
from mia.errors import OperationalError
from tests.unit.envs._market import env_config, make_market

COSTS = CostModel(multiplier=50.0, tick_size=0.25, commission_per_side=2.25, slippage_ticks=0.5,
                  default_spread=0.25)
UNIT = 2.25 + (0.125 + 0.125) * 50.0  # USD per ES contract per fill at a 1-tick spread


def _sim(targets, open_, close, **kw):
    args = dict(max_contracts=5, initial_equity=100_000.0)
    args.update(kw)
    return simulate(np.asarray(targets), np.asarray(open_, float), np.asarray(close, float),
                    COSTS, **args)


@pytest.mark.parametrize("discrete", [False, True])
def test_simulator_pnl_equals_the_env_info_pnl_bar_by_bar(discrete):
    market = make_market(800, seed=4)  # bar spreads of 1-3 ticks, gaps at the opens
    cfg = env_config(max_contracts=5)
    window = slice(300, 700)
    env = TradingEnv(market, [window], cfg, discrete=discrete, evaluate=True)
    env.reset()
    rng = np.random.default_rng(1)
    pnl, equity, held = [], [], []
    truncated = False
    while not truncated:
        action = (rng.integers(0, 3) if discrete
                  else rng.uniform(-1, 1, 1).astype(np.float32))
        _, _, _, truncated, info = env.step(action)
        pnl.append(info["pnl"])
        equity.append(info["equity"])
        held.append(info["position"])
    targets = np.r_[held, 0]  # the decision at the last bar would fill after the window
    sim = simulate(targets, market.open[window], market.close[window],
                   CostModel.from_config(market.spec, cfg), max_contracts=5,
                   initial_equity=cfg.initial_equity, spread=market.spread[window],
                   first_row=window.start)
    assert sim.pnl[0] == 0.0
    np.testing.assert_allclose(sim.pnl[1:], pnl, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sim.equity[1:], equity, rtol=0, atol=1e-9)
    assert sim.positions[1:].tolist() == held
    assert sim.total_pnl == pytest.approx(sum(pnl))


def test_hand_computed_round_trip_books_gap_intra_and_both_fills():
    # long 2 decided at bar 0 -> filled at open[1]; flat decided at bar 2 -> filled at open[3]
    sim = _sim([2, 2, 0, 0], [100, 101, 103, 102], [100.5, 102, 102.5, 103])
    assert sim.positions.tolist() == [0, 2, 2, 0]
    assert sim.traded.tolist() == [0, 2, 0, 2]
    assert sim.pnl.tolist() == pytest.approx([
        0.0,
        2 * (102 - 101) * 50 - 2 * UNIT,                    # entry bar: open[1] -> close[1]
        2 * (103 - 102) * 50 + 2 * (102.5 - 103) * 50,       # gap close[1] -> open[2], then intra
        2 * (102 - 102.5) * 50 - 2 * UNIT,                   # held to open[3], then sold there
    ])
    assert sim.equity[-1] == pytest.approx(100_000.0 + sim.pnl.sum())
    (trade,) = sim.trades
    assert (trade.entry_row, trade.exit_row, trade.side, trade.contracts) == (1, 3, 1, 2)
    assert (trade.entry_price, trade.exit_price, trade.closed) == (101.0, 102.0, True)
    assert trade.costs == pytest.approx(4 * UNIT)
    assert trade.pnl == pytest.approx(2 * (102 - 101) * 50 - 4 * UNIT)  # open -> open, net


def test_a_flip_closes_one_trade_and_opens_another_at_the_same_open():
    sim = _sim([3, -2, -2, 0, 0], [100, 100, 101, 99, 98], [100, 100.5, 100, 98.5, 98])
    long, short = sim.trades
    assert (long.side, long.entry_row, long.exit_row, long.contracts) == (1, 1, 2, 3)
    assert (short.side, short.entry_row, short.exit_row, short.contracts) == (-1, 2, 4, 2)
    # the flip trades 5 contracts: 3 close the long, 2 open the short
    assert long.costs == pytest.approx(6 * UNIT)
    assert short.costs == pytest.approx(4 * UNIT)
    assert long.pnl == pytest.approx(3 * (101 - 100) * 50 - 6 * UNIT)
    assert short.pnl == pytest.approx(-2 * (98 - 101) * 50 - 4 * UNIT)
    assert long.pnl + short.pnl == pytest.approx(sim.total_pnl)


def test_trades_sum_to_total_pnl_with_scaling_and_an_open_trade_marked_at_the_last_close():
    rng = np.random.default_rng(7)
    n = 500
    close = 4800 + 0.25 * np.cumsum(rng.integers(-4, 5, n))
    open_ = np.r_[close[0], close[:-1]] + 0.25 * rng.integers(-1, 2, n)
    targets = np.repeat(rng.integers(-5, 6, n // 10), 10)
    targets[-15:] = 4  # still long at the end
    sim = _sim(targets, open_, close, spread=0.25 * rng.integers(1, 4, n))
    assert sum(t.pnl for t in sim.trades) == pytest.approx(sim.total_pnl, abs=1e-6)
    assert sum(t.costs for t in sim.trades) == pytest.approx(sim.costs.sum(), abs=1e-6)
    last = sim.trades[-1]
    assert (last.closed, last.exit_row, last.exit_price) == (False, n - 1, close[-1])
    assert all(t.closed for t in sim.trades[:-1])
    assert all(a.exit_row <= b.entry_row
               for a, b in zip(sim.trades, sim.trades[1:], strict=False))


def test_first_row_offsets_trade_rows_and_last_target_is_not_used():
    a = _sim([1, 1, 1, 5], [10, 11, 12, 13], [10, 11, 12, 13], first_row=1000)
    b = _sim([1, 1, 1, -5], [10, 11, 12, 13], [10, 11, 12, 13], first_row=1000)
    assert a.pnl.tolist() == b.pnl.tolist()
    assert a.trades[0].entry_row == 1001
    assert a.trades[0].closed is False


@pytest.mark.parametrize(("targets", "message"), [
    ([0, 6, 0], "limit"), ([0, 1.5, 0], "whole"), ([0, np.nan, 0], "whole"), ([0, 1], "shape"),
])
def test_bad_targets_are_rejected(targets, message):
    with pytest.raises(OperationalError, match=message):
        _sim(targets, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_fewer_than_two_bars_is_rejected():
    with pytest.raises(OperationalError, match=">= 2 bars"):
        _sim([0], [1.0], [1.0])
