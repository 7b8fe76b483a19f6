"""Metrics against values worked out by hand (comments show the arithmetic)."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from mia.backtest import metrics as m
from mia.errors import OperationalError

# Four bars on 100 USD with returns 10 %, -10 %, 20 %, 0 %: equity 100, 110, 99, 118.8, 118.8.
PNL = [10.0, -11.0, 19.8, 0.0]
POSITIONS = [1.0, 1.0, 2.0, 0.0]
TRADES = [50.0, -20.0, 30.0, -10.0, 0.0]


def _phi(z: float) -> float:  # standard normal CDF, independent of scipy
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_returns_are_pnl_over_previous_equity():
    assert m.equity_curve(PNL, 100.0) == pytest.approx([100, 110, 99, 118.8, 118.8])
    assert m.bar_returns(PNL, 100.0) == pytest.approx([0.1, -0.1, 0.2, 0.0])


def test_summary_of_four_bars_matches_hand_computed_values():
    s = m.summary(PNL, initial_equity=100.0, positions=POSITIONS, trade_pnl=TRADES,
                  periods_per_year=4)
    # mean 0.05; deviations .05 -.15 .15 -.05, squares sum 0.05, sample variance 0.05/3
    assert s.volatility == pytest.approx(math.sqrt(0.05 / 3) * 2)  # x sqrt(4 bars a year)
    assert s.sharpe == pytest.approx(0.05 / math.sqrt(0.05 / 3) * 2)  # = sqrt(0.6)
    # downside deviation sqrt((0 + .01 + 0 + 0) / 4) = 0.05
    assert s.sortino == pytest.approx(0.05 / 0.05 * 2)
    assert s.total_return == pytest.approx(0.188)
    assert s.annualised_return == pytest.approx(0.188)  # 4 bars = exactly one year
    # peak 110 -> 99 is the only drawdown: 11 / 110, one bar under water
    assert s.max_drawdown == pytest.approx(0.1)
    assert (s.max_drawdown_bars, s.longest_drawdown_bars) == (1, 1)
    assert s.calmar == pytest.approx(1.88)
    # trades: wins 50, 30; losses 20, 10; the 0 trade is not a win
    assert s.win_rate == pytest.approx(0.4)
    assert s.profit_factor == pytest.approx(80 / 30)
    assert s.average_trade_usd == pytest.approx(10.0)
    # |1-0| + |1-1| + |2-1| + |0-2| = 4 contracts over 4 bars
    assert (s.contracts_traded, s.turnover) == (4.0, 1.0)
    # losses 0, .1, 0, 0: the worst 5 % of 4 bars lies inside the worst bar
    assert s.cvar_95 == pytest.approx(0.1)
    assert (s.n_bars, s.n_trades) == (4, 5)


def test_probabilistic_sharpe_matches_hand_computed_moments():
    r = np.array([0.1, -0.1, 0.2, 0.0])
    sr = math.sqrt(0.15)  # 0.05 / sqrt(0.05 / 3)
    # population moments of deviations .05 -.15 .15 -.05: m2 = .0125, m3 = 0,
    # m4 = (2 * .05**4 + 2 * .15**4) / 4 = .00025625 -> kurtosis .00025625 / .0125**2 = 1.64
    spread = 1.0 - 0.0 * sr + (1.64 - 1.0) / 4.0 * sr**2
    expected = _phi(sr * math.sqrt(3) / math.sqrt(spread))
    assert m.probabilistic_sharpe_ratio(r) == pytest.approx(expected, rel=1e-9)
    # against a benchmark equal to the estimate the probability is one half
    assert m.probabilistic_sharpe_ratio(r, sr) == pytest.approx(0.5)


def test_expected_max_sharpe_uses_the_euler_mascheroni_form():
    g, z = 0.5772156649015329, NormalDist().inv_cdf
    hand = math.sqrt(0.04) * ((1 - g) * z(1 - 1 / 10) + g * z(1 - 1 / (10 * math.e)))
    assert m.expected_max_sharpe(10, 0.04) == pytest.approx(hand, rel=1e-9)
    # close to the exact mean of the largest of 10 standard normals, 1.53875
    assert m.expected_max_sharpe(10, 1.0) == pytest.approx(1.53875, abs=0.05)
    assert m.expected_max_sharpe(1, 0.04) == 0.0


def test_deflated_sharpe_tests_against_the_expected_best_of_the_trials():
    rng = np.random.default_rng(0)
    r = rng.normal(0.001, 0.01, 500)
    ppy, var_annual = 252, 0.5
    sr0 = m.expected_max_sharpe(20, var_annual / ppy)  # per-bar units
    s = m.summary(_pnl_of(r), initial_equity=1e6, positions=np.zeros(500), trade_pnl=[],
                  periods_per_year=ppy, n_trials=20, trial_sharpe_variance=var_annual)
    assert s.deflated_sharpe == pytest.approx(m.probabilistic_sharpe_ratio(r, sr0), rel=1e-6)
    assert s.dsr_benchmark_sharpe == pytest.approx(sr0 * math.sqrt(ppy))
    assert s.deflated_sharpe < s.probabilistic_sharpe  # more trials, harder to pass
    one = m.summary(_pnl_of(r), initial_equity=1e6, positions=np.zeros(500), trade_pnl=[],
                    periods_per_year=ppy)
    assert one.deflated_sharpe == pytest.approx(one.probabilistic_sharpe)


def _pnl_of(r: np.ndarray, equity: float = 1e6) -> np.ndarray:
    # the PnL whose returns on the previous equity are r
    curve = equity * np.cumprod(np.r_[1.0, 1.0 + r])
    return np.diff(curve)


def test_drawdown_duration_counts_bars_below_the_running_peak():
    # equity 100 110 105 100 108 112 90 95: peaks 110 then 112
    eq = np.array([100, 110, 105, 100, 108, 112, 90, 95], dtype=float)
    depth, deepest_bars, longest = m.drawdowns(eq)
    assert depth == pytest.approx(22 / 112)  # 112 -> 90, not recovered at the end
    assert deepest_bars == 2  # 90, 95
    assert longest == 3  # 105, 100, 108 under the 110 peak


@pytest.mark.parametrize(("n", "expected"), [
    (40, (0.37, (0.38 + 0.39) / 2)),  # 5 % of 40 = the 2 worst
    (30, (0.28, (0.29 + 0.5 * 0.28) / 1.5)),  # 1.5 worst: full weight 0.29, half 0.28
])
def test_cvar_is_the_mean_of_the_worst_tail(n, expected):
    var, cvar = m.var_cvar(np.arange(n) / 100, 0.95)
    assert (var, cvar) == pytest.approx(expected)


def test_zero_variance_returns_give_documented_values():
    flat = m.summary(np.zeros(5), initial_equity=100.0, positions=np.zeros(5), trade_pnl=[],
                     periods_per_year=4)
    assert (flat.volatility, flat.sharpe, flat.sortino, flat.calmar) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(flat.probabilistic_sharpe)
    assert math.isnan(flat.deflated_sharpe)
    assert (flat.max_drawdown, flat.turnover, flat.cvar_95) == (0.0, 0.0, 0.0)
    assert m.sharpe_ratio(np.full(3, 0.01)) == math.inf  # constant 1 % a bar
    assert m.sharpe_ratio(np.full(3, -0.01)) == -math.inf
    assert m.sortino_ratio(np.array([0.01, 0.02]), 4) == math.inf  # no losing bar
    assert m.calmar_ratio(0.2, 0.0) == math.inf


def test_no_trades_and_no_losing_trade_give_documented_values():
    assert all(math.isnan(x) for x in m.trade_stats(np.array([])))
    win, factor, avg = m.trade_stats(np.array([5.0, 10.0]))
    assert (win, factor, avg) == (1.0, math.inf, 7.5)
    assert math.isnan(m.trade_stats(np.array([0.0, 0.0]))[1])


def test_fewer_than_two_bars_give_nan_never_an_error():
    one = m.summary([5.0], initial_equity=100.0, positions=[1.0], trade_pnl=[5.0],
                    periods_per_year=4)
    assert math.isnan(one.sharpe)
    assert math.isnan(one.volatility)
    assert math.isnan(one.sortino)
    assert math.isnan(one.probabilistic_sharpe)
    assert one.total_return == pytest.approx(0.05)
    empty = m.summary([], initial_equity=100.0, positions=[], trade_pnl=[])
    assert (empty.total_return, empty.max_drawdown, empty.n_bars) == (0.0, 0.0, 0)
    assert math.isnan(empty.annualised_return)
    assert math.isnan(empty.cvar_95)
    assert math.isnan(empty.calmar)
    assert math.isnan(empty.turnover)


def test_ruin_caps_the_return_at_minus_one_and_stops_returns():
    r = m.bar_returns([-150.0, 20.0, 10.0], 100.0)  # equity 100 -> -50 -> -30 -> -20
    assert r.tolist() == [-1.0, 0.0, 0.0]
    s = m.summary([-150.0, 20.0, 10.0], initial_equity=100.0, positions=[1, 1, 1],
                  trade_pnl=[-120.0], periods_per_year=3)
    assert s.total_return == pytest.approx(-1.2)
    assert s.annualised_return == -1.0
    assert s.max_drawdown == pytest.approx(1.5)  # 100 -> -50


def test_to_dict_gives_namespaced_flat_float_keys():
    s = m.summary(PNL, initial_equity=100.0, positions=POSITIONS, trade_pnl=TRADES,
                  periods_per_year=4)
    d = s.to_dict("wf")
    assert d["wf/sharpe"] == pytest.approx(math.sqrt(0.6))
    assert d["wf/max_drawdown_bars"] == 1.0
    assert all(k.startswith("wf/") and isinstance(v, float) for k, v in d.items())
    assert set(s.to_dict("backtest")) == {k.replace("wf/", "backtest/") for k in d}
    with pytest.raises(OperationalError, match="prefix"):
        s.to_dict("wf/")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"positions": [0.0, 1.0]}, "one position per bar"),
    ({"initial_equity": 0.0}, "initial_equity"),
    ({"trade_pnl": [math.nan]}, "trade_pnl"),
    ({"periods_per_year": 0}, "periods_per_year"),
    ({"n_trials": 0}, "n_trials"),
    ({"trial_sharpe_variance": -1.0}, "trial"),
])
def test_bad_inputs_raise_operational_errors_naming_the_argument(kwargs, match):
    args = {"initial_equity": 100.0, "positions": POSITIONS, "trade_pnl": TRADES, **kwargs}
    with pytest.raises(OperationalError, match=match):
        m.summary(PNL, **args)


def test_bars_per_year_constant_is_23_hours_of_minutes_times_252_sessions():
    assert m.BARS_PER_YEAR_CME_1MIN == 347_760
