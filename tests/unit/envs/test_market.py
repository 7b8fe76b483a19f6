from __future__ import annotations

import numpy as np
import pytest

from mia.data.contracts import contract
from mia.envs.costs import CostModel
from mia.envs.market import Market, Windows, bar_arrays, check_segments
from mia.errors import OperationalError
from tests.unit.conftest import make_bars


def test_from_bars_takes_prices_and_the_spread_column_when_present():
    bars = make_bars(groups=True)
    feats = np.zeros((len(bars), 2), dtype=np.float32)
    m = Market.from_bars(bars, feats, ("a", "b"), contract("ES"), 5.0)
    np.testing.assert_array_equal(m.close, bars["close"].to_numpy())
    np.testing.assert_array_equal(m.spread, bars["bid_ask_spread"].to_numpy())
    plain = Market.from_bars(make_bars(), feats, ("a", "b"), contract("ES"), 5.0)
    assert plain.spread is None
    assert plain.n_rows == len(bars)


def test_bar_arrays_hold_gap_intra_and_unit_cost_per_contract_in_usd():
    costs = CostModel(multiplier=2.0, tick_size=0.25, commission_per_side=1.0,
                      slippage_ticks=1.0, default_spread=0.25)
    arr = bar_arrays(np.array([10.0, 11.0, 13.0]), np.array([10.5, 12.0, 12.5]), costs,
                     np.array([0.25, 0.5, 0.25]))
    assert arr.gap.tolist() == [(11.0 - 10.5) * 2, (13.0 - 12.0) * 2, 0.0]
    assert arr.intra.tolist() == [0.5 * 2, 1.0 * 2, -0.5 * 2]
    assert arr.unit_cost.tolist() == [1.0 + (0.125 + 0.25) * 2, 1.0 + (0.25 + 0.25) * 2,
                                      1.0 + (0.125 + 0.25) * 2]


def test_windows_draw_segments_in_proportion_to_their_bars():
    windows = Windows((slice(0, 100), slice(500, 800)), episode_bars=10)
    rng = np.random.default_rng(0)
    firsts = np.array([windows.sample(rng)[0] for _ in range(4000)])
    assert abs((firsts < 100).mean() - 0.25) < 0.03
    assert firsts.min() >= 0
    assert firsts[firsts < 100].max() <= 89  # 10 steps end at row 99 at the latest
    assert firsts.max() <= 789


def test_non_positive_price_inside_a_segment_is_rejected():
    feats = np.zeros((10, 1), dtype=np.float32)
    close = np.full(10, 100.0)
    close[6] = 0.0
    m = Market(features=feats, names=("a",), open=np.full(10, 100.0), close=close, spread=None,
               spec=contract("ES"), bound=5.0)
    check_segments(m, [slice(0, 6)])
    with pytest.raises(OperationalError, match="close is 0.0 at row 6"):
        check_segments(m, [slice(0, 10)])


def test_market_with_mismatched_lengths_is_rejected():
    with pytest.raises(OperationalError, match="open has shape"):
        Market(features=np.zeros((5, 1), dtype=np.float32), names=("a",), open=np.ones(4),
               close=np.ones(5), spread=None, spec=contract("ES"), bound=5.0)
    with pytest.raises(OperationalError, match="bound"):
        Market(features=np.zeros((5, 1), dtype=np.float32), names=("a",), open=np.ones(5),
               close=np.ones(5), spread=np.ones(5), spec=contract("ES"),
               bound=0.0)
