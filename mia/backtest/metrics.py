"""Performance metrics of a backtest or a walk-forward fold: pure numpy, no look-ahead.

Inputs are arrays: per-bar net PnL in USD (after costs), the initial equity, per-bar positions in
contracts and per-trade net PnL. Per-bar returns are PnL over the *previous* equity,
``r_t = pnl_t / E_{t-1}`` with ``E_{-1} = initial_equity``, so they compound exactly to the
equity curve. Risk-free rate 0: a futures PnL is already an excess return (the margin earns the
cash rate separately).

Edge cases never raise; they return these documented values:

==============================  ===========================================================
case                            value
==============================  ===========================================================
no bars                         total return 0; drawdown 0; every ratio NaN
one bar                         volatility, Sharpe, Sortino, PSR, DSR NaN (need 2 bars)
constant returns (no spread)    volatility 0; Sharpe 0 if the mean is 0 else +/-inf; PSR/DSR NaN
no losing bar                   Sortino +inf (0 if every return is 0)
no drawdown                     Calmar +inf (0 if the annualised return is 0)
no trades                       win rate, average trade, profit factor NaN
no losing trade                 profit factor +inf (NaN if every trade is exactly 0)
equity <= 0 (ruin)              that bar's return is -1, later returns 0; the equity curve,
                                total return and drawdown keep the real (negative) equity
==============================  ===========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, ndtri

from mia.errors import OperationalError

# CME Globex equity-index futures trade 23 h a day (17:00-16:00 CT): 1,380 one-minute bars per
# session, 252 sessions a year.
BARS_PER_YEAR_CME_1MIN: Final[int] = 1380 * 252  # 347,760
EULER_MASCHERONI: Final[float] = 0.5772156649015329
CVAR_ALPHA: Final[float] = 0.95

Array = NDArray[np.float64]


def _vector(x: ArrayLike, name: str) -> Array:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise OperationalError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise OperationalError(f"{name}: {int(np.sum(~np.isfinite(a)))} non-finite values at "
                               f"index {int(np.argmax(~np.isfinite(a)))}; fix the backtest output")
    return a


def equity_curve(pnl: ArrayLike, initial_equity: float) -> Array:
    """:param pnl: per-bar net PnL (USD). :param initial_equity: USD before the first bar.
    :return: ``[E_0, E_1, ..., E_n]``, ``n + 1`` values starting at ``initial_equity``.
    :raises OperationalError: for a non-positive initial equity or non-finite PnL."""
    if not (math.isfinite(initial_equity) and initial_equity > 0):
        raise OperationalError(f"initial_equity: {initial_equity!r}; must be a positive USD amount")
    return np.concatenate(([initial_equity], initial_equity + np.cumsum(_vector(pnl, "pnl"))))


def bar_returns(pnl: ArrayLike, initial_equity: float) -> Array:
    """Per-bar simple returns on the previous bar's equity (ruin rule in the module docstring).

    :param pnl: per-bar net PnL (USD).
    :param initial_equity: USD before the first bar.
    :return: ``n`` returns.
    """
    equity = equity_curve(pnl, initial_equity)
    # divide the PnL itself, not a difference of its cumsum (which carries rounding error)
    step, prev = np.asarray(pnl, dtype=np.float64), equity[:-1]
    alive = np.minimum.accumulate(prev) > 0
    out = np.zeros_like(step)
    out[alive] = np.maximum(step[alive] / prev[alive], -1.0)
    return out


def total_return(equity: Array) -> float:
    """:param equity: the equity curve. :return: ``E_n / E_0 - 1``."""
    return float(equity[-1] / equity[0] - 1.0)


def annualised_return(equity: Array, periods_per_year: float) -> float:
    """:return: compound annual growth, ``(E_n/E_0) ** (periods_per_year / n) - 1``; -1 after
    ruin; NaN without bars; +inf if compounding a short gain over a year overflows."""
    n = len(equity) - 1
    if n < 1:
        return math.nan
    growth = float(equity[-1] / equity[0])
    if growth <= 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.expm1(np.log(growth) * (periods_per_year / n)))


def volatility(returns: Array, periods_per_year: float) -> float:
    """:return: annualised sample standard deviation (ddof 1); NaN below 2 bars."""
    if len(returns) < 2:
        return math.nan
    if np.ptp(returns) == 0:
        return 0.0
    return float(np.std(returns, ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(returns: Array, periods_per_year: float = 1.0) -> float:
    """Sharpe (1966) ratio ``mean / std (ddof 1) * sqrt(periods_per_year)``.

    :param returns: per-bar returns.
    :param periods_per_year: 1 gives the per-bar ratio the PSR/DSR formulas use.
    :return: the ratio; 0 or +/-inf for constant returns, NaN below 2 bars.
    """
    if len(returns) < 2:
        return math.nan
    mean = float(np.mean(returns))
    if np.ptp(returns) == 0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / float(np.std(returns, ddof=1)) * math.sqrt(periods_per_year)


def sortino_ratio(returns: Array, periods_per_year: float) -> float:
    """Sortino & Price (1994) ratio with target 0: ``mean / sqrt(mean(min(r, 0)^2))``, annualised.

    :return: the ratio; +inf with no losing bar (0 if every return is 0), NaN below 2 bars.
    """
    if len(returns) < 2:
        return math.nan
    mean = float(np.mean(returns))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0:
        return 0.0 if mean == 0 else math.inf
    return mean / downside * math.sqrt(periods_per_year)


def drawdowns(equity: Array) -> tuple[float, int, int]:
    """Drawdown from the running peak of the equity curve (``E_0`` included).

    :param equity: the equity curve.
    :return: ``(max_drawdown, max_drawdown_bars, longest_drawdown_bars)``: the deepest fall as a
        positive fraction of its peak; how many bars the deepest episode stayed below its peak
        (until recovery or the last bar); the longest such episode of any depth.
    """
    peak = np.maximum.accumulate(equity)
    depth = 1.0 - equity / peak
    under = equity < peak
    # label each underwater run: a new run starts where `under` switches on
    run_id = np.cumsum(np.r_[under[:1], under[1:] & ~under[:-1]]) * under
    if not under.any():
        return 0.0, 0, 0
    lengths = np.bincount(run_id)[1:]
    deepest = int(np.argmax(depth))
    return float(depth[deepest]), int(lengths[run_id[deepest] - 1]), int(lengths.max())


def calmar_ratio(annual_return: float, max_drawdown: float) -> float:
    """Young (1991) Calmar ratio ``annualised return / max drawdown``.

    :return: the ratio; +inf without drawdown (0 if the return is 0); NaN if the return is NaN.
    """
    if math.isnan(annual_return):
        return math.nan
    if max_drawdown == 0:
        return 0.0 if annual_return == 0 else math.copysign(math.inf, annual_return)
    return annual_return / max_drawdown


def var_cvar(losses: ArrayLike, alpha: float = CVAR_ALPHA) -> tuple[float, float]:
    """Value at risk and conditional value at risk of a sample of losses (larger = worse).

    Rockafellar & Uryasev (2000), "Optimization of conditional value-at-risk":
    ``CVaR_a = min_v v + E[(L - v)+] / (1 - a)``, attained at ``v = VaR_a``, the a-quantile of L.
    For the empirical distribution VaR is the lower a-quantile (the smallest loss ``v`` with
    ``F(v) >= a``) and CVaR is then the mean of the worst ``(1 - a)`` share of losses (with a
    fractional weight on the boundary sample): for ``n = 100``, ``a = 0.95`` it is the mean of the
    5 largest losses.

    :param losses: sample of losses.
    :param alpha: confidence level in (0, 1).
    :return: ``(VaR, CVaR)``; NaN for an empty sample.
    :raises OperationalError: for ``alpha`` outside (0, 1) or non-finite losses.
    """
    if not 0 < alpha < 1:
        raise OperationalError(f"alpha: {alpha!r}; the CVaR level must lie in (0, 1)")
    x = _vector(losses, "losses")
    if len(x) == 0:
        return math.nan, math.nan
    var = float(np.quantile(x, alpha, method="inverted_cdf"))
    return var, var + float(np.mean(np.maximum(x - var, 0.0))) / (1.0 - alpha)


def turnover(positions: Array) -> tuple[float, float]:
    """:param positions: contracts held over each bar (signed), starting from flat.
    :return: ``(contracts_traded, per_bar)``: ``sum |p_t - p_{t-1}|`` with ``p_{-1} = 0`` (a
    position still open at the end is not counted as closed), and that over the bar count (NaN
    without bars)."""
    traded = float(np.sum(np.abs(np.diff(positions, prepend=0.0))))
    return traded, (traded / len(positions) if len(positions) else math.nan)


def trade_stats(trade_pnl: Array) -> tuple[float, float, float]:
    """:param trade_pnl: net PnL (USD) of each closed trade.
    :return: ``(win_rate, profit_factor, average_trade)``: share of trades with PnL > 0, gross
    profit over gross loss, mean PnL per trade (USD). Edge cases in the module docstring."""
    if len(trade_pnl) == 0:
        return math.nan, math.nan, math.nan
    profit = float(np.sum(trade_pnl[trade_pnl > 0]))
    loss = -float(np.sum(trade_pnl[trade_pnl < 0]))
    if loss > 0:
        factor = profit / loss
    else:
        factor = math.inf if profit > 0 else math.nan
    return float(np.mean(trade_pnl > 0)), factor, float(np.mean(trade_pnl))


def probabilistic_sharpe_ratio(returns: Array, benchmark_sharpe: float = 0.0) -> float:
    """Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier": the probability
    that the true Sharpe ratio exceeds ``benchmark_sharpe``, given the sample length, skewness
    and kurtosis of the returns.

    ``PSR = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with per-bar
    ``SR`` (:func:`sharpe_ratio` with ``periods_per_year=1``), ``g3`` the skewness and ``g4`` the
    (non-excess) kurtosis of the returns (population moments, as in the paper).

    :param returns: per-bar returns.
    :param benchmark_sharpe: ``SR*``, per bar (divide an annual ratio by sqrt(periods per year)).
    :return: a probability in [0, 1]; NaN below 2 bars or for constant returns.
    """
    if len(returns) < 2 or np.ptp(returns) == 0:
        return math.nan
    sr = sharpe_ratio(returns)
    dev = returns - np.mean(returns)
    m2 = float(np.mean(dev**2))
    skew = float(np.mean(dev**3)) / m2**1.5
    kurt = float(np.mean(dev**4)) / m2**2
    # >= (1 - skew*sr/2)^2 >= 0 because kurt >= 1 + skew^2 for any distribution
    spread = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if spread <= 0:
        return math.nan
    return float(ndtr((sr - benchmark_sharpe) * math.sqrt(len(returns) - 1) / math.sqrt(spread)))


def expected_max_sharpe(n_trials: int, trials_sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` unskilled strategies (Bailey & López de
    Prado, 2014, "The Deflated Sharpe Ratio", from the false strategy theorem):
    ``sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))``, ``g`` Euler-Mascheroni.

    :param n_trials: ``N >= 1`` strategies tried (1: no selection, returns 0).
    :param trials_sharpe_variance: ``V``, variance of the trials' Sharpe ratios, in the units of
        the ratio returned.
    :return: the expected maximum, in the units of ``sqrt(V)``.
    :raises OperationalError: for ``N < 1`` or a negative or non-finite ``V``.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise OperationalError(f"n_trials: {n_trials!r}; count the strategies tried (>= 1)")
    if not (math.isfinite(trials_sharpe_variance) and trials_sharpe_variance >= 0):
        raise OperationalError(f"trials_sharpe_variance: {trials_sharpe_variance!r}; must be a "
                               "finite variance >= 0")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1 - g) * ndtri(1 - 1 / n_trials) + g * ndtri(1 - 1 / (n_trials * math.e))
    return float(math.sqrt(trials_sharpe_variance) * z)


def deflated_sharpe_ratio(returns: Array, n_trials: int, trials_sharpe_variance: float) -> float:
    """Bailey & López de Prado (2014): PSR against the Sharpe ratio the best of ``n_trials``
    unskilled trials would reach by luck (:func:`expected_max_sharpe`).

    :param returns: per-bar returns of the selected strategy.
    :param n_trials: strategies tried (agents x hyper-parameter sets...).
    :param trials_sharpe_variance: variance of the trials' *per-bar* Sharpe ratios.
    :return: a probability in [0, 1]; NaN where :func:`probabilistic_sharpe_ratio` is.
    """
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials,
                                                                   trials_sharpe_variance))


@dataclass(frozen=True, kw_only=True, slots=True)
class PerformanceSummary:
    """Every metric of one run. Ratios annualised with ``periods_per_year``; returns, volatility,
    drawdown and CVaR are fractions of equity (0.01 = 1 %); USD where named.

    :param dsr_benchmark_sharpe: the annualised Sharpe ratio the DSR tests against (the expected
        best of the unskilled trials).
    :param cvar_95: CVaR at 95 % of per-bar losses ``max(0, -r)``, as a positive fraction.
    """

    n_bars: int
    n_trades: int
    total_return: float
    annualised_return: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    longest_drawdown_bars: int
    win_rate: float
    profit_factor: float
    average_trade_usd: float
    contracts_traded: float
    turnover: float
    cvar_95: float
    probabilistic_sharpe: float
    deflated_sharpe: float
    dsr_benchmark_sharpe: float

    def to_dict(self, prefix: str = "wf") -> dict[str, float]:
        """:param prefix: metric namespace (``wf``, ``backtest``, ``live``; style.md).
        :return: flat MLflow-ready ``{"<prefix>/<metric>": value}``.
        :raises OperationalError: for an empty prefix or one ending in ``/``."""
        if not prefix or prefix.endswith("/"):
            raise OperationalError(f"prefix: {prefix!r}; pass a namespace such as 'wf'")
        return {f"{prefix}/{f.name}": float(getattr(self, f.name)) for f in fields(self)}


def summary(pnl: ArrayLike, *, initial_equity: float, positions: ArrayLike,
            trade_pnl: ArrayLike, periods_per_year: float = BARS_PER_YEAR_CME_1MIN,
            n_trials: int = 1, trial_sharpe_variance: float = 0.0) -> PerformanceSummary:
    """Compute every metric of one run.

    :param pnl: per-bar net PnL (USD, after costs).
    :param initial_equity: USD before the first bar.
    :param positions: contracts held over each bar, same length as ``pnl``.
    :param trade_pnl: net PnL (USD) of each closed trade (may be empty).
    :param periods_per_year: bars per year (:data:`BARS_PER_YEAR_CME_1MIN` for 1-minute bars).
    :param n_trials: strategies tried before this one was picked, for the DSR.
    :param trial_sharpe_variance: variance of the trials' *annualised* Sharpe ratios.
    :return: the frozen summary.
    :raises OperationalError: for mismatched lengths, non-finite values or bad parameters.
    """
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise OperationalError(f"periods_per_year: {periods_per_year!r}; must be > 0")
    equity = equity_curve(pnl, initial_equity)
    returns = bar_returns(pnl, initial_equity)
    pos, trades = _vector(positions, "positions"), _vector(trade_pnl, "trade_pnl")
    if len(pos) != len(returns):
        raise OperationalError(f"positions: {len(pos)} values for {len(returns)} PnL bars; "
                               "pass one position per bar")
    annual = annualised_return(equity, periods_per_year)
    mdd, mdd_bars, longest = drawdowns(equity)
    win, factor, average = trade_stats(trades)
    traded, per_bar = turnover(pos)
    root = math.sqrt(periods_per_year)
    sr0 = expected_max_sharpe(n_trials, trial_sharpe_variance / periods_per_year)
    return PerformanceSummary(
        n_bars=len(returns), n_trades=len(trades),
        total_return=total_return(equity), annualised_return=annual,
        volatility=volatility(returns, periods_per_year),
        sharpe=sharpe_ratio(returns, periods_per_year),
        sortino=sortino_ratio(returns, periods_per_year),
        calmar=calmar_ratio(annual, mdd),
        max_drawdown=mdd, max_drawdown_bars=mdd_bars, longest_drawdown_bars=longest,
        win_rate=win, profit_factor=factor, average_trade_usd=average,
        contracts_traded=traded, turnover=per_bar,
        cvar_95=var_cvar(np.maximum(-returns, 0.0), CVAR_ALPHA)[1],
        probabilistic_sharpe=probabilistic_sharpe_ratio(returns),
        deflated_sharpe=probabilistic_sharpe_ratio(returns, sr0),
        dsr_benchmark_sharpe=sr0 * root,
    )
