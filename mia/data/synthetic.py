"""Seeded synthetic 1-minute market of CME equity-index futures (ES, MNQ), every bar group.

The market is a 3-state Markov regime chain (trend / range / defensive) driving drift, volatility
(regime level x GARCH(1,1) x intraday seasonality) and jumps, plus sparse news shocks. ES and MNQ
share the regime path, the volatility and the jumps, and load 0.88 on a common Gaussian shock.
Order flow, options, gamma levels and vix are built from past and same-bar state only. The true
regime path is returned beside the bars, never inside them. docs/data.md ("Synthetic market")
documents the model, the units and the exact planted-alpha definition.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from mia.data import _sim_kernels as kern
from mia.data.calendar import session_index
from mia.data.contracts import contract
from mia.errors import ConfigError
from mia.types import OPTIONAL_GROUPS, REGIMES, REQUIRED_COLUMNS

COLUMNS: Final[tuple[str, ...]] = REQUIRED_COLUMNS + tuple(
    c for cols in OPTIONAL_GROUPS.values() for c in cols
)
SESSION_MINUTES: Final[int] = 23 * 60
MINUTES_PER_YEAR: Final[float] = 252.0 * SESSION_MINUTES
_ONE_MINUTE_NS: Final[int] = 60_000_000_000

# Regime model; states index REGIMES = (trend, range, defensive).
ANNUAL_VOL: Final = np.array([0.14, 0.11, 0.35])
MEAN_DURATION_MIN: Final = np.array([2.0, 3.0, 0.35]) * SESSION_MINUTES  # 2 d, 3 d, 8 h
EXIT_SPLIT: Final = np.array([[0.0, 0.7, 0.3], [0.6, 0.0, 0.4], [0.4, 0.6, 0.0]])
JUMP_RATE: Final = np.array([1 / 4000, 1 / 6000, 1 / 400])  # per bar
JUMP_MEAN: Final = np.array([0.0, 0.0, -3.0])  # in units of the bar's volatility
JUMP_SD: Final = np.array([5.0, 4.0, 6.0])
TREND_DRIFT_DAILY: Final = (0.4, 1.2)  # |drift| per day, in daily trend volatilities
TREND_UP_PROB: Final = 0.6
DEFENSIVE_DRIFT_DAILY: Final = -0.015  # log drift per day
RANGE_KAPPA: Final = np.log(2.0) / 240.0  # reversion half-life 4 h
RW_ANNUAL_VOL: Final = 0.15
NEWS_PER_SESSION: Final = 0.6
NEWS_JUMP: Final = (2.0, 10.0)  # |jump| = a + b |score|, in bar volatilities: beats the diffusion
IMBALANCE_LOAD: Final = 0.6  # corr of the order-flow driver with the same bar's shock


class _Spec(NamedTuple):
    start: float  # first price, points
    beta: float  # volatility relative to the market (ES = 1)
    load: float  # loading of the shocks on the market shock
    volume: float  # mean contracts per minute
    depth: float  # mean resting contracts at the touch
    strike_step: float
    gamma_scale: float  # net_gamma, USD bn per 1 % move, in calm


SPECS: Final[dict[str, _Spec]] = {
    "ES": _Spec(4800.0, 1.0, 1.0, 1100.0, 900.0, 5.0, 3.0),
    "MNQ": _Spec(17000.0, 1.25, 0.88, 700.0, 60.0, 25.0, 1.2),
}


@dataclass(frozen=True)
class SyntheticMarket:
    """Bars of a synthetic market and the answer key kept apart from them.

    :param bars: one frame per symbol with columns :data:`COLUMNS`.
    :param regimes: true regime label per bar-close ``ts`` (``trend``, ``range``, ``defensive``).
    :param planted: one-line description of the planted signal, or ``"none"``.
    """

    bars: dict[str, pd.DataFrame]
    regimes: pd.Series
    planted: str


class _Market(NamedTuple):
    state: np.ndarray  # regime per bar
    minute: np.ndarray  # minutes since the session open (0..1379)
    first: np.ndarray  # indexes of the first bar of each session
    season: np.ndarray  # volatility seasonality per bar (mean square 1)
    activity: np.ndarray  # volume seasonality per bar (mean 1)
    vol: np.ndarray  # per-minute volatility of the market before seasonality
    drift: np.ndarray  # log drift per bar
    eps: np.ndarray  # market diffusion shock
    eta: np.ndarray  # market order-flow noise
    jump: np.ndarray  # jump per bar, in units of the bar volatility
    gap: np.ndarray  # log gap into each bar's open (0 inside sessions)
    news: np.ndarray  # news score in [-1, 1]
    vix: np.ndarray


def generate_market(
    symbols: Sequence[str],
    start: date,
    end: date,
    seed: int,
    *,
    planted_alpha: float = 0.0,
    random_walk: bool = False,
    progress: bool = False,
) -> SyntheticMarket:
    """Generate seeded 1-minute bars of every group for trade dates ``start..end``.

    Same arguments give byte-identical frames. A symbol's frame does not depend on which other
    symbols are requested (its own draws come from a stream keyed by the symbol).

    :param symbols: roots to generate, e.g. ``["ES", "MNQ"]``.
    :param start: first trade date (inclusive).
    :param end: last trade date (inclusive).
    :param seed: seed of the numpy PCG64 generator.
    :param planted_alpha: X in (-1, 1): the order-flow imbalance of bar t is a monotone function
        of a latent N(0, 1) driver s_t and the standardised log return of bar t+1 is
        ``X s_t + sqrt(1 - X^2) e_{t+1}``; 0 plants nothing.
    :param random_walk: i.i.d. Gaussian returns at constant volatility: no regimes, drift,
        GARCH, variance seasonality, jumps, gaps or news.
    :param progress: show a tqdm bar on stderr.
    :return: the bars, the true regimes and a description of the planted signal.
    """
    syms = _check_args(symbols, start, end, seed, planted_alpha, random_walk)
    ts = session_index(start, end)
    if len(ts) == 0:
        raise ConfigError(f"no trading day between {start} and {end}; widen the date range")
    with tqdm(total=1 + len(syms), desc="synthetic market", file=sys.stderr,
              disable=not progress) as bar:
        market = _simulate_market(ts, np.random.Generator(np.random.PCG64(seed)), random_walk)
        bar.update(1)
        frames: dict[str, pd.DataFrame] = {}
        for sym in syms:
            rng = np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(list(SPECS).index(sym),)))
            )
            frames[sym] = _symbol_frame(sym, ts, market, rng, planted_alpha)
            bar.set_postfix_str(sym)
            bar.update(1)
    regimes = pd.Series(np.asarray(REGIMES, dtype=object)[market.state], index=ts, name="regime")
    planted = "none"
    if planted_alpha != 0.0:
        planted = (
            "orderflow imbalance (bid_volume-ask_volume)/(bid_volume+ask_volume) of bar t "
            f"predicts the log return close t -> close t+1 with correlation {planted_alpha:+.3f} "
            "(per-bar standardised)"
        )
    return SyntheticMarket(bars=frames, regimes=regimes, planted=planted)


def _check_args(
    symbols: Sequence[str], start: date, end: date, seed: int, alpha: float, random_walk: bool
) -> list[str]:
    if isinstance(symbols, str) or len(symbols) == 0:
        raise ConfigError(f"symbols must be a non-empty list of roots like ['ES'], got {symbols!r}")
    syms = list(symbols)
    for sym in syms:
        if contract(sym).symbol not in SPECS:  # contract() names the known roots
            raise ConfigError(f"no synthetic model for {sym!r}; known: {', '.join(SPECS)}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    if len(set(syms)) != len(syms):
        raise ConfigError(f"symbols {syms} repeat a root; list each symbol once")
    if start > end:
        raise ConfigError(f"start {start} is after end {end}; swap them")
    if not np.isfinite(alpha) or abs(alpha) >= 1.0:
        raise ConfigError(f"planted_alpha={alpha} must be a correlation in (-1, 1)")
    if alpha != 0.0 and random_walk:
        raise ConfigError(
            f"planted_alpha={alpha} contradicts random_walk=True (a random walk has no "
            "predictable part); drop one of them"
        )
    return syms


def _profiles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Minute k of a session is 18:00 ET + k (no session spans a DST change: clocks move on
    # Sunday 02:00 ET, inside the weekend closure). The cash session is k = 930..1319.
    k = np.arange(SESSION_MINUTES, dtype=np.float64)

    def bump(at: float, tau: float, side: float = 1.0) -> np.ndarray:  # decays away from `at`
        d = side * (k - at)
        return np.where(d >= 0.0, np.exp(-np.maximum(d, 0.0) / tau), 0.0)

    # overnight floor, 18:00 reopen, Europe from 03:00, 08:30 data; cash U shape, quiet last hour
    sig = 0.35 + 0.5 * bump(0, 20) + 0.15 * np.clip((k - 540) / 330, 0, 1) + 0.6 * bump(870, 8)
    u = (k - 930.0) / 390.0
    cash = 0.75 + 0.55 * (2.0 * u - 1.0) ** 2 + 0.9 * bump(930, 15) + 0.3 * bump(1319, 10, -1)
    sig = np.where((k >= 930) & (k < 1320), cash, sig)
    sig = np.where(k >= 1320, 0.35 + 0.2 * bump(1320, 20), sig)
    sig /= np.sqrt(np.mean(sig**2))
    vol = sig**1.5  # volume is more seasonal than volatility: about 10x cash vs overnight
    vol /= vol.mean()
    news = np.ones(SESSION_MINUTES)
    news[[870, 960, 1200]] += (60.0, 30.0, 20.0)  # 08:30 data, 10:00 data, 14:00 FOMC
    return sig, vol, NEWS_PER_SESSION * news / news.sum()


def _simulate_market(ts: pd.DatetimeIndex, rng: np.random.Generator, random_walk: bool) -> _Market:
    n = len(ts)
    ns = ts.asi8
    step = np.diff(ns, prepend=ns[0] - _ONE_MINUTE_NS)
    is_first = step != _ONE_MINUTE_NS
    is_first[0] = True
    first = np.flatnonzero(is_first)
    minute = np.arange(n) - first[np.cumsum(is_first) - 1]
    sig_p, vol_p, news_p = _profiles()
    u_regime, eps, eta = rng.random(n), rng.standard_normal(n), rng.standard_normal(n)
    u_jump, u_news, z_gap = rng.random(n), rng.random(n), rng.standard_normal(len(first))
    target = ANNUAL_VOL / np.sqrt(MINUTES_PER_YEAR)
    zeros = np.zeros(n)
    if random_walk:
        state = np.ones(n, np.int8)  # all "range", no switching
        season = np.ones(n)
        vol = np.full(n, RW_ANNUAL_VOL / np.sqrt(MINUTES_PER_YEAR))
        drift, jump, gap, news = zeros, zeros, zeros, zeros
    else:
        state = _regime_path(u_regime)
        season = sig_p[minute]
        drift = _drift(state, season, rng)
        jump = np.where(u_jump < JUMP_RATE[state],
                        JUMP_MEAN[state] + JUMP_SD[state] * rng.standard_normal(n), 0.0)
        is_news = u_news < news_p[minute]
        down = np.where(state == 2, 0.7, 0.5)
        news = np.where(is_news, np.where(rng.random(n) < down, -1.0, 1.0)
                        * np.round(rng.uniform(0.15, 1.0, n), 3), 0.0)
        jump = jump + np.sign(news) * NEWS_JUMP[0] + NEWS_JUMP[1] * news
        vol = kern.regime_garch(state, target, eps**2 + jump**2, 0.03, 0.965, 1.0 / 45.0, 25.0)
        gap = zeros.copy()
        gap_min = step[first[1:]] / _ONE_MINUTE_NS
        gap[first[1:]] = z_gap[1:] * vol[first[1:]] * 0.35 * np.sqrt(gap_min / 4.0)
    shock = vol * season * (eps + jump)
    rv, stress = _realised(shock, season, 1.0, float(vol[0]))
    vix = 100.0 * _implied(rv, stress)
    return _Market(state, minute, first, season, vol_p[minute], vol, drift, eps, eta, jump, gap,
                   news, vix)


def _regime_path(u: np.ndarray) -> np.ndarray:
    exit_p = 1.0 / MEAN_DURATION_MIN
    trans = EXIT_SPLIT * exit_p[:, None] + np.diag(1.0 - exit_p)
    cum = np.cumsum(trans, axis=1)
    cum[:, -1] = 1.0
    # stationary distribution: left eigenvector of the transition matrix for eigenvalue 1
    w, v = np.linalg.eig(trans.T)
    pi = np.abs(np.real(v[:, np.argmin(np.abs(w - 1.0))]))
    init = int(np.searchsorted(np.cumsum(pi / pi.sum()), u[0], side="right"))
    return np.asarray(kern.markov_chain(u, cum, min(init, 2)))


def _drift(state: np.ndarray, season: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # A trend spell gets one signed drift for its whole life; drift is scaled by the seasonal
    # volatility so trends move mostly in the cash session, like volume does.
    change = np.concatenate(([True], state[1:] != state[:-1]))
    spell = np.cumsum(change) - 1
    n_spells = int(spell[-1]) + 1
    sign = np.where(rng.random(n_spells) < TREND_UP_PROB, 1.0, -1.0)
    daily = sign * rng.uniform(*TREND_DRIFT_DAILY, n_spells) * ANNUAL_VOL[0] / np.sqrt(252.0)
    per_min = np.where(state == 0, daily[spell],
                       np.where(state == 2, DEFENSIVE_DRIFT_DAILY, 0.0)) / SESSION_MINUTES
    return np.asarray(per_min * season)


def _realised(
    ret: np.ndarray, season: np.ndarray, beta: float, init_vol: float
) -> tuple[np.ndarray, np.ndarray]:
    # Deseasonalised squared returns, a fast (1 h) and a slow (1 session) EWMA averaged:
    # annualised realised volatility known at each bar's close, and a 0..1 stress score.
    x = (ret / season) ** 2
    init = init_vol**2
    var = 0.5 * (kern.ewma(x, 60.0, init) + kern.ewma(x, float(SESSION_MINUTES), init))
    rv = np.sqrt(var * MINUTES_PER_YEAR)
    stress = np.clip((rv / beta - 0.15) / 0.15, 0.0, 1.0)
    return rv, stress


def _implied(rv: np.ndarray, stress: np.ndarray) -> np.ndarray:
    # variance risk premium: implied above realised, more so in stress
    return np.asarray(rv * (1.08 + 0.1 * stress) + 0.015)


def _symbol_frame(
    sym: str, ts: pd.DatetimeIndex, mk: _Market, rng: np.random.Generator, alpha: float
) -> pd.DataFrame:
    spec, tick = SPECS[sym], contract(sym).tick_size
    n = len(ts)
    load, res = spec.load, np.sqrt(1.0 - spec.load**2)
    eps = load * mk.eps + res * rng.standard_normal(n)
    eta = load * mk.eta + res * rng.standard_normal(n)
    s = IMBALANCE_LOAD * eps + np.sqrt(1.0 - IMBALANCE_LOAD**2) * eta  # latent driver, N(0, 1)
    z = np.sqrt(1.0 - alpha**2) * eps
    z[1:] += alpha * s[:-1]  # planted: s_t loads on the shock of bar t+1
    sigma = spec.beta * mk.vol * mk.season
    ret = spec.beta * mk.drift + sigma * (z + mk.jump)
    start = int(np.round(spec.start * np.exp(0.01 * rng.standard_normal()) / tick))
    o_t, c_t = kern.price_path(start, tick, ret, spec.beta * mk.gap, mk.state == 1, RANGE_KAPPA)
    # High/low: extremes of a Brownian bridge from open to close with the bar's variance
    # (exact law of the bridge maximum), rounded outward to the tick.
    b = (c_t - o_t).astype(np.float64)
    sd2 = 2.0 * (sigma * o_t) ** 2
    hi = o_t + np.ceil(0.5 * (b + np.sqrt(b**2 - sd2 * np.log1p(-rng.random(n)))))
    lo = o_t + np.floor(0.5 * (b - np.sqrt(b**2 - sd2 * np.log1p(-rng.random(n)))))
    open_, close = o_t * tick, c_t * tick
    high, low = hi * tick, np.maximum(lo, 1.0) * tick

    ratio = mk.vol / (ANNUAL_VOL[1] / np.sqrt(MINUTES_PER_YEAR))
    activity = (0.55 + 0.564 * np.abs(z)) * (1.0 + 0.3 * np.abs(mk.jump))
    noise = np.exp(0.3 * rng.standard_normal(n) - 0.045)
    volume = np.maximum(np.rint(spec.volume * mk.activity * ratio**0.8 * activity * noise), 1)
    imbalance = 0.6 * np.tanh(0.8 * s)  # monotone in s: ranks of imbalance are ranks of s
    bid = np.rint(volume * (1.0 + imbalance) / 2.0)
    lr = np.log(close) - np.log(open_)  # intrabar: the reopen gap is not volatility
    init_vol = spec.beta * float(mk.vol[0])
    rv, stress = _realised(lr, mk.season, spec.beta, init_vol)
    share = np.clip(0.5 + 0.15 * stress + 0.05 * rng.standard_normal(n), 0.2, 0.95)
    lam = 0.02 + 0.8 * stress + 0.5 * (mk.state == 2) + 0.3 * (mk.news != 0.0)
    spread = (1.0 + np.minimum(rng.poisson(lam), 3)) * tick
    depth = spec.depth * np.sqrt(mk.activity) * ratio**-0.8
    order_volume = np.rint(depth * np.exp(0.4 * rng.standard_normal(n) - 0.08)) + 1.0
    iv_1m = _implied(rv, stress)
    cols: dict[str, object] = {
        "ts": ts, "symbol": np.full(n, sym, dtype=object),
        "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "bid_volume": bid, "ask_volume": volume - bid, "taker_volume": np.floor(volume * share),
        "bid_ask_spread": spread, "order_volume": order_volume,
        "iv_call": iv_1m * (0.95 - 0.03 * stress), "iv_put": iv_1m * (1.12 + 0.15 * stress),
        "strike": np.rint(close / spec.strike_step) * spec.strike_step,
        "iv_1m": iv_1m, "iv_3m": np.maximum(iv_1m + 0.012 - 0.05 * stress, 0.01),
    }
    # stress known before each bar; before the first bar, that of the initial volatility
    stress_init = np.clip((np.sqrt(MINUTES_PER_YEAR) * mk.vol[0] - 0.15) / 0.15, 0.0, 1.0)
    prev_stress = np.concatenate(([stress_init], stress[:-1]))
    cols.update(_gamma(open_[mk.first], prev_stress[mk.first], spec, rng, mk.first, n))
    cols["vix"] = mk.vix
    cols["news_impact"] = mk.news
    for name in COLUMNS[2:]:
        cols[name] = np.asarray(cols[name], dtype=np.float64)  # no copy when already float64
    return pd.DataFrame(cols, columns=list(COLUMNS))


def _gamma(
    p0: np.ndarray, stress0: np.ndarray, spec: _Spec, rng: np.random.Generator,
    first: np.ndarray, n: int,
) -> dict[str, np.ndarray]:
    # Levels are set once per session from its opening price and the stress known before it,
    # then held for the whole session (dealers' positioning is published before the open).
    grid, m = 25.0, len(p0)
    max_pain = np.rint(p0 * (1.0 + 0.003 * rng.standard_normal(m)) / grid) * grid
    up = rng.uniform(0.008, 0.02, m) * (1.0 - 0.5 * stress0)
    down = rng.uniform(0.005, 0.015, m) * (1.0 - 0.6 * stress0)
    call_wall = np.maximum(np.ceil(p0 * (1.0 + up) / grid), np.floor(p0 / grid) + 1.0) * grid
    zero_gamma = np.minimum(np.floor(p0 * (1.0 - down) / grid), np.ceil(p0 / grid) - 1.0) * grid
    net_gamma = spec.gamma_scale * (1.0 - 2.0 * stress0 + 0.25 * rng.standard_normal(m))
    session = np.repeat(np.arange(m), np.diff(np.append(first, n)))
    return {"max_pain": max_pain[session], "zero_gamma": zero_gamma[session],
            "call_wall": call_wall[session], "net_gamma": net_gamma[session]}
