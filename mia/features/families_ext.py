"""Families over the optional input groups: order flow, options, gamma, VIX, news, cross-symbol.

Formulas follow the reference specification: ``bid_ask_imbalance = (bid − ask)/(bid + ask)``,
``trade_aggressiveness = taker_volume / volume``, ``slippage_estimate = bid_ask_spread ×
order_volume``, ``iv_skew = (iv_call − iv_put)/strike``, ``iv_term_structure = iv_3m − iv_1m``.
"""

from __future__ import annotations

import numpy as np

from mia.features import families as f
from mia.features.dsl import DSL

BARS_PER_YEAR = 252.0 * 1380.0


def _imbalance(d: DSL) -> int:
    bid, ask = d.x("bid_volume"), d.x("ask_volume")
    return d.div(d.sub(bid, ask), d.add(bid, ask))


def bid_ask_imbalance(d: DSL) -> int:
    return _imbalance(d)


def bid_ask_imbalance_ema(d: DSL, span: int) -> int:
    return d.ema(_imbalance(d), span)


def orderflow_imbalance(d: DSL, n: int) -> int:
    bid, ask = d.x("bid_volume"), d.x("ask_volume")
    return d.div(d.mean(d.sub(bid, ask), n), d.mean(d.add(bid, ask), n))


def ofi_score(d: DSL, n: int, z: int) -> int:
    return d.zscore(orderflow_imbalance(d, n), z)


def delta_momentum(d: DSL, fast: int, slow: int) -> int:
    return d.sub(orderflow_imbalance(d, fast), orderflow_imbalance(d, slow))


def ofi_return_corr(d: DSL, n: int) -> int:
    return d.corr(_imbalance(d), d.logret(1), n)


def trade_aggressiveness(d: DSL) -> int:
    return d.div(d.x("taker_volume"), d.volume)


def trade_aggressiveness_ema(d: DSL, span: int) -> int:
    return d.ema(trade_aggressiveness(d), span)


def slippage_estimate(d: DSL) -> int:
    return d.mul(d.x("bid_ask_spread"), d.x("order_volume"))


def spread_ticks(d: DSL) -> int:
    return d.scale(d.x("bid_ask_spread"), 4.0)  # ES and MNQ both tick 0.25


def spread_zscore(d: DSL, n: int) -> int:
    return d.zscore(d.x("bid_ask_spread"), n)


def spread_ema(d: DSL, span: int) -> int:
    return d.ema(spread_ticks(d), span)


def depth_zscore(d: DSL, n: int) -> int:
    return d.zscore(d.log1p(d.x("order_volume")), n)


def log_depth(d: DSL) -> int:
    return d.log1p(d.x("order_volume"))


def volume_per_depth(d: DSL) -> int:
    return d.div(d.volume, d.x("order_volume"))


def iv_skew(d: DSL) -> int:
    return d.div(d.sub(d.x("iv_call"), d.x("iv_put")), d.x("strike"))


def iv_term_structure(d: DSL) -> int:
    return d.sub(d.x("iv_3m"), d.x("iv_1m"))


def iv_level(d: DSL, tenor: str) -> int:
    return d.x(tenor)


def iv_put_call(d: DSL) -> int:
    return d.div(d.x("iv_put"), d.x("iv_call"))


def iv_change(d: DSL, n: int) -> int:
    iv = d.x("iv_1m")
    return d.sub(iv, d.lag(iv, n))


def iv_skew_zscore(d: DSL, n: int) -> int:
    return d.zscore(iv_skew(d), n)


def iv_rv_spread(d: DSL, n: int) -> int:
    # implied minus realised, both annualised fractions
    return d.sub(d.x("iv_1m"), d.scale(f.rvol(d, n), BARS_PER_YEAR**0.5 / f.BP))


def term_change(d: DSL, n: int) -> int:
    t = iv_term_structure(d)
    return d.sub(t, d.lag(t, n))


def strike_dist(d: DSL) -> int:
    return d.subdiv(d.close, d.x("strike"), d.atr(f.ATR_N))


def level_dist(d: DSL, level: str) -> int:
    return d.subdiv(d.close, d.x(level), d.atr(f.ATR_N))


def net_gamma(d: DSL) -> int:
    return d.x("net_gamma")


def net_gamma_change(d: DSL, n: int) -> int:
    g = d.x("net_gamma")
    return d.sub(g, d.lag(g, n))


def above_zero_gamma(d: DSL) -> int:
    return d.above(d.sub(d.close, d.x("zero_gamma")))


def gamma_range_pos(d: DSL) -> int:
    zg = d.x("zero_gamma")
    return d.subdiv(d.close, zg, d.sub(d.x("call_wall"), zg))


def vix(d: DSL) -> int:
    return d.x("vix")


def vix_change(d: DSL, n: int) -> int:
    v = d.x("vix")
    return d.sub(v, d.lag(v, n))


def vix_zscore(d: DSL, n: int) -> int:
    return d.zscore(d.x("vix"), n)


def vix_ema_dist(d: DSL, span: int) -> int:
    v = d.x("vix")
    return d.ratio_m1(v, d.ema(v, span))


def vix_es_correlation(d: DSL, n: int) -> int:
    v = d.x("vix")
    return d.corr(d.sub(v, d.lag(v, 1)), d.logret(1), n)


def vix_rv_ratio(d: DSL, n: int) -> int:
    rv = d.scale(f.rvol(d, n), BARS_PER_YEAR**0.5 / f.BP * 100.0)  # VIX points
    return d.div(d.x("vix"), rv)


def news_impact(d: DSL) -> int:
    return d.x("news_impact")


def news_ema(d: DSL, span: int) -> int:
    return d.ema(d.x("news_impact"), span)


def news_abs_ema(d: DSL, span: int) -> int:
    return d.ema(d.abs(d.x("news_impact")), span)


def bars_since_news(d: DSL, cap: int) -> int:
    return d.since(d.x("news_impact"), cap)


def _xret(d: DSL, n: int) -> int:
    return d.logret(n, price=d.x("xclose"))


def cross_ret(d: DSL, n: int) -> int:
    return _xret(d, n)


def cross_spread(d: DSL, n: int) -> int:
    return d.sub(d.logret(n), _xret(d, n))


def cross_corr(d: DSL, n: int) -> int:
    return d.corr(d.logret(1), _xret(d, 1), n)


def cross_beta(d: DSL, n: int) -> int:
    return d.beta(d.logret(1), _xret(d, 1), n)


def cross_ratio_zscore(d: DSL, n: int) -> int:
    ratio = d.sub(d.log(d.close), d.log(d.x("xclose")))
    return d.zscore(ratio, n)


def cross_lead_corr(d: DSL, n: int) -> int:
    # does the other symbol's last bar lead this one's?
    return d.corr(d.logret(1), d.lag(_xret(d, 1), 1), n)


def _hmm_init(d: DSL) -> tuple[float, ...]:
    from mia.errors import OperationalError
    from mia.features import ops as op
    from mia.regime.filter import HMMParams

    if d.regime is None:
        raise OperationalError("regime features need fitted HMM parameters")
    p = HMMParams.from_dict(d.regime)
    if p.n_states != op.HMM_K or p.n_features != 2:
        raise OperationalError(
            f"regime features need a {op.HMM_K}-state HMM over 2 observations, "
            f"got {p.n_states} states over {p.n_features}"
        )
    values = np.concatenate([p.transmat.ravel(), p.means.ravel(), p.variances.ravel(), p.startprob])
    return tuple(float(v) for v in values)


def regime_prob(d: DSL, k: int) -> int:
    # filtered probability of regime k (0 trend, 1 range, 2 defensive) given bars <= t
    from mia.features import ops as op

    return d.b.op(op.HMM, d.close, n=k, init=_hmm_init(d))


def regime_hmm(d: DSL) -> int:
    from mia.features import ops as op

    return d.b.op(op.ARGMAX3, regime_prob(d, 0), regime_prob(d, 1), regime_prob(d, 2))
