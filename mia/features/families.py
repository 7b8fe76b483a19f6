"""Feature families: each a function ``(dsl, **params) -> register``, named in the registry.

Units are chosen so features are comparable across ES and MNQ: returns as fractions, volatility
in basis points per bar, distances in ATR(14) units, oscillators on their usual 0-100 scales.
"""

from __future__ import annotations

from mia.features.dsl import DSL

BP = 1e4
ATR_N = 14


def ret(d: DSL, n: int) -> int:
    return d.ratio_m1(d.close, d.lag(d.close, n))


def logret(d: DSL, n: int) -> int:
    return d.logret(n)


def rvol(d: DSL, n: int) -> int:
    return d.scale(d.std(d.logret(1), n), BP)


def parkinson(d: DSL, n: int) -> int:
    hl = d.log(d.div(d.high, d.low))
    return d.scale(d.sqrt(d.mean(d.mul(hl, hl), n)), BP / (4.0 * 0.6931471805599453) ** 0.5)


def garman_klass(d: DSL, n: int) -> int:
    hl = d.log(d.div(d.high, d.low))
    co = d.log(d.div(d.close, d.open))
    term = d.sub(
        d.scale(d.mul(hl, hl), 0.5), d.scale(d.mul(co, co), 2.0 * 0.6931471805599453 - 1.0)
    )
    return d.scale(d.sqrt(d.mean(term, n)), BP)


def vol_ratio(d: DSL, fast: int, slow: int) -> int:
    return d.div(rvol(d, fast), rvol(d, slow))


def ret_skew(d: DSL, n: int) -> int:
    from mia.features import ops as op

    return d.b.op(op.SKEW, d.logret(1), n=n)


def ret_kurt(d: DSL, n: int) -> int:
    from mia.features import ops as op

    return d.b.op(op.KURT, d.logret(1), n=n)


def ema_dist(d: DSL, span: int) -> int:
    return d.ratio_m1(d.close, d.ema(d.close, span))


def ema_dist_atr(d: DSL, span: int) -> int:
    return d.subdiv(d.close, d.ema(d.close, span), d.atr(ATR_N))


def sma_dist(d: DSL, n: int) -> int:
    return d.ratio_m1(d.close, d.mean(d.close, n))


def ema_slope(d: DSL, span: int) -> int:
    e = d.ema(d.close, span)
    return d.scale(d.ratio_m1(e, d.lag(e, 1)), BP)


def sma_slope(d: DSL, n: int) -> int:
    m = d.mean(d.close, n)
    return d.scale(d.ratio_m1(m, d.lag(m, 5)), BP)


def ema_cross(d: DSL, fast: int, slow: int) -> int:
    return d.ratio_m1(d.ema(d.close, fast), d.ema(d.close, slow))


def rsi(d: DSL, n: int) -> int:
    return d.rsi(d.close, n)


def rsi_volume(d: DSL, n: int) -> int:
    return d.rsi(d.volume, n)


def atr(d: DSL, n: int) -> int:
    return d.atr(n)


def natr(d: DSL, n: int) -> int:
    return d.scale(d.div(d.atr(n), d.close), BP)


def atr_dynamic(d: DSL, k: int) -> int:
    # mean true range over the last k bars (k = 1..5): the fast ATR of the reference rules
    return d.true_range() if k == 1 else d.mean(d.true_range(), k)


def atr_ratio(d: DSL, fast: int, slow: int) -> int:
    return d.div(d.atr(fast), d.atr(slow))


def adx(d: DSL, n: int) -> int:
    return d.adx(n)


def plus_di(d: DSL, n: int) -> int:
    return d.di(n)[0]


def minus_di(d: DSL, n: int) -> int:
    return d.di(n)[1]


def macd(d: DSL, fast: int, slow: int) -> int:
    return d.sub(d.ema(d.close, fast), d.ema(d.close, slow))


def macd_signal(d: DSL, fast: int, slow: int, signal: int) -> int:
    return d.ema(macd(d, fast, slow), signal)


def macd_hist(d: DSL, fast: int, slow: int, signal: int) -> int:
    return d.sub(macd(d, fast, slow), macd_signal(d, fast, slow, signal))


def ppo(d: DSL, fast: int, slow: int) -> int:
    return d.scale(d.ratio_m1(d.ema(d.close, fast), d.ema(d.close, slow)), 100.0)


def trix(d: DSL, n: int) -> int:
    e3 = d.ema(d.ema(d.ema(d.close, n), n), n)
    return d.scale(d.ratio_m1(e3, d.lag(e3, 1)), BP)


def _bands(d: DSL, n: int, k: float) -> tuple[int, int, int]:
    mid, sd = d.mean(d.close, n), d.std(d.close, n)
    return mid, d.add(mid, d.scale(sd, k)), d.sub(mid, d.scale(sd, k))


def bb_pctb(d: DSL, n: int) -> int:
    _, upper, lower = _bands(d, n, 2.0)
    return d.subdiv(d.close, lower, d.sub(upper, lower))


def bb_width(d: DSL, n: int) -> int:
    mid, upper, lower = _bands(d, n, 2.0)
    return d.div(d.sub(upper, lower), mid)


def stoch_k(d: DSL, k: int, smooth: int) -> int:
    ll = d.wmin(d.low, k)
    return d.scale(d.subdiv(d.close, ll, d.sub(d.wmax(d.high, k), ll)), 100.0)


def stoch_d(d: DSL, k: int, smooth: int) -> int:
    return d.mean(stoch_k(d, k, smooth), smooth)


def williams_r(d: DSL, n: int) -> int:
    hh = d.wmax(d.high, n)
    return d.scale(d.subdiv(hh, d.close, d.sub(hh, d.wmin(d.low, n))), -100.0)


def cci(d: DSL, n: int) -> int:
    tp = d.typical_price()
    return d.subdiv(tp, d.mean(tp, n), d.scale(d.mad(tp, n), 0.015))


def momentum(d: DSL, n: int) -> int:
    return d.subdiv(d.close, d.lag(d.close, n), d.atr(ATR_N))


def efficiency_ratio(d: DSL, n: int) -> int:
    path = d.mean(d.abs(d.sub(d.close, d.prev_close())), n)
    return d.div(d.abs(d.sub(d.close, d.lag(d.close, n))), d.scale(path, float(n)))


def zscore_close(d: DSL, n: int) -> int:
    return d.zscore(d.close, n)


def zscore_ret(d: DSL, n: int) -> int:
    return d.zscore(d.logret(1), n)


def ret_sharpe(d: DSL, n: int) -> int:
    r = d.logret(1)
    return d.div(d.mean(r, n), d.std(r, n))


def ret_autocorr(d: DSL, n: int) -> int:
    r = d.logret(1)
    return d.corr(r, d.lag(r, 1), n)


def up_ratio(d: DSL, n: int) -> int:
    return d.mean(d.above(d.logret(1)), n)


def max_ret(d: DSL, n: int) -> int:
    return d.scale(d.wmax(d.logret(1), n), BP)


def min_ret(d: DSL, n: int) -> int:
    return d.scale(d.wmin(d.logret(1), n), BP)


def volume_ratio(d: DSL, n: int) -> int:
    return d.div(d.volume, d.mean(d.volume, n))


def log_volume(d: DSL) -> int:
    return d.log1p(d.volume)


def volume_zscore(d: DSL, n: int) -> int:
    return d.zscore(d.log1p(d.volume), n)


def volume_change(d: DSL, n: int) -> int:
    lv = d.log1p(d.volume)
    return d.sub(lv, d.lag(lv, n))


def volume_ema_ratio(d: DSL, fast: int, slow: int) -> int:
    return d.div(d.ema(d.volume, fast), d.ema(d.volume, slow))


def vwap_dist(d: DSL, n: int) -> int:
    vwap = d.div(d.mean(d.mul(d.close, d.volume), n), d.mean(d.volume, n))
    return d.scale(d.ratio_m1(d.close, vwap), BP)


def amihud(d: DSL, n: int) -> int:
    return d.scale(d.mean(d.div(d.abs(d.logret(1)), d.volume), n), 1e6)


def signed_volume(d: DSL, n: int) -> int:
    sv = d.mul(d.sign(d.sub(d.close, d.prev_close())), d.volume)
    return d.div(d.mean(sv, n), d.mean(d.volume, n))


def mfi(d: DSL, n: int) -> int:
    # money flow index: flows on bars whose typical price rose vs fell; unchanged bars count in
    # neither (TA-Lib's definition)
    tp = d.typical_price()
    flow = d.mul(tp, d.volume)
    move = d.sub(tp, d.lag(tp, 1))
    pos = d.mean(d.mul(d.above(move), flow), n)
    neg = d.mean(d.mul(d.above(d.scale(move, -1.0)), flow), n)
    return d.scale(d.div(pos, d.add(pos, neg)), 100.0)


def hl_range(d: DSL) -> int:
    return d.scale(d.div(d.sub(d.high, d.low), d.close), BP)


def range_mean(d: DSL, n: int) -> int:
    return d.mean(hl_range(d), n)


def range_zscore(d: DSL, n: int) -> int:
    return d.zscore(hl_range(d), n)


def clv(d: DSL) -> int:
    return d.subdiv(d.close, d.low, d.sub(d.high, d.low))


def body(d: DSL) -> int:
    return d.subdiv(d.close, d.open, d.atr(ATR_N))


def upper_shadow(d: DSL) -> int:
    return d.subdiv(d.high, d.max2(d.open, d.close), d.atr(ATR_N))


def lower_shadow(d: DSL) -> int:
    return d.subdiv(d.min2(d.open, d.close), d.low, d.atr(ATR_N))


def hi_dist(d: DSL, n: int) -> int:
    return d.scale(d.ratio_m1(d.close, d.wmax(d.high, n)), BP)


def lo_dist(d: DSL, n: int) -> int:
    return d.scale(d.ratio_m1(d.close, d.wmin(d.low, n)), BP)


def donchian(d: DSL, n: int) -> int:
    ll = d.wmin(d.low, n)
    return d.subdiv(d.close, ll, d.sub(d.wmax(d.high, n), ll))


def breakout(d: DSL, n: int) -> int:
    # close beyond the previous n-bar high, in ATR units (> 0 = breaking out)
    return d.subdiv(d.close, d.lag(d.wmax(d.high, n), 1), d.atr(ATR_N))


def session_cycle(d: DSL, cos: bool) -> int:
    return d.cyc(d.session_minute(), 1380.0, cos)


def weekday_cycle(d: DSL, cos: bool) -> int:
    return d.cyc(d.weekday(), 5.0, cos)


def is_cash_session(d: DSL) -> int:
    # 09:30-16:00 ET is session minutes 930..1320 (minute 1 = 18:01 ET)
    m = d.session_minute()
    return d.mul(d.above(m, 930.0), d.above(d.scale(m, -1.0, 1320.5)))


def minutes_to_close(d: DSL) -> int:
    return d.scale(d.session_minute(), -1.0, 1380.0)


def gap_minutes(d: DSL) -> int:
    return d.gap()


def range_vol_ratio(d: DSL, n: int) -> int:
    # Parkinson (high-low) over close-to-close volatility: > 1 when bars range without moving
    return d.div(parkinson(d, n), rvol(d, n))


def stoch_rsi(d: DSL, n: int) -> int:
    r = d.rsi(d.close, n)
    lo = d.wmin(r, n)
    return d.scale(d.subdiv(r, lo, d.sub(d.wmax(r, n), lo)), 100.0)
