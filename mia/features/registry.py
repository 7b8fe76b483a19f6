"""The registry: every feature MIA can build, with a stable name, its family and parameters.

Names are part of the contract (bundles, selection reports and the executor refer to them):
never rename one; add new ones. ``groups`` lists the optional input groups a feature needs
(``cross`` = the other symbol's close, ``regime`` = fitted HMM parameters); a feature whose groups
are missing is not built and the build report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mia.features import families as f
from mia.features import families_ext as g
from mia.features.dsl import DSL


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One registered feature.

    :param name: stable name.
    :param family: the family function's name.
    :param groups: optional input groups needed (empty: OHLCV + timestamps only).
    :param params: keyword parameters of the family.
    """

    name: str
    family: str
    groups: tuple[str, ...]
    params: dict[str, Any] = field(hash=False)
    build: Callable[..., int] = field(hash=False, repr=False, compare=False)

    def emit(self, d: DSL) -> int:
        """:return: the register holding this feature, built into ``d``'s program."""
        return self.build(d, **self.params)


def _defs() -> Iterator[FeatureDef]:
    def F(
        name: str, fn: Callable[..., int], groups: tuple[str, ...] = (), **params: Any
    ) -> FeatureDef:
        return FeatureDef(name, fn.__name__, groups, params, fn)

    lags = (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480)
    for n in lags:
        yield F(f"ret_{n}", f.ret, n=n)
    for n in lags:
        yield F(f"logret_{n}", f.logret, n=n)
    for n in (5, 10, 15, 20, 30, 60, 120, 240, 480, 720, 1380):
        yield F(f"rvol_{n}", f.rvol, n=n)
    for n in (10, 30, 60, 120, 240):
        yield F(f"parkinson_{n}", f.parkinson, n=n)
    for n in (30, 60, 240):
        yield F(f"garman_klass_{n}", f.garman_klass, n=n)
    for a, b in ((5, 30), (10, 60), (30, 240), (60, 480)):
        yield F(f"vol_ratio_{a}_{b}", f.vol_ratio, fast=a, slow=b)
    for n in (60, 240, 480):
        yield F(f"ret_skew_{n}", f.ret_skew, n=n)
        yield F(f"ret_kurt_{n}", f.ret_kurt, n=n)
    for s in (5, 10, 20, 30, 50, 100, 200, 400):
        yield F(f"ema_dist_{s}", f.ema_dist, span=s)
    for s in (10, 20, 50, 100, 200):
        yield F(f"ema_dist_atr_{s}", f.ema_dist_atr, span=s)
    for n in (5, 10, 20, 50, 100, 200):
        yield F(f"sma_dist_{n}", f.sma_dist, n=n)
    for s in (10, 20, 50, 100, 200):
        yield F(f"ema_slope_{s}", f.ema_slope, span=s)
    for n in (20, 100):
        yield F(f"sma_slope_{n}", f.sma_slope, n=n)
    for a, b in ((5, 20), (10, 50), (12, 26), (20, 100), (50, 200)):
        yield F(f"ema_cross_{a}_{b}", f.ema_cross, fast=a, slow=b)
    for n in (5, 7, 9, 14, 21, 28, 50):
        yield F(f"rsi_{n}", f.rsi, n=n)
    yield F("rsi_volume_14", f.rsi_volume, n=14)
    yield F("stoch_rsi_14", f.stoch_rsi, n=14)
    for n in (5, 10, 14, 20, 50, 100):
        yield F(f"atr_{n}", f.atr, n=n)
        yield F(f"natr_{n}", f.natr, n=n)
    for k in (1, 2, 3, 4):
        yield F(f"atr_dynamic_{k}", f.atr_dynamic, k=k)
    yield F("atr_dynamic", f.atr_dynamic, k=5)
    for a, b in ((5, 50), (14, 100)):
        yield F(f"atr_ratio_{a}_{b}", f.atr_ratio, fast=a, slow=b)
    for n in (7, 14, 21, 28, 50):
        yield F(f"adx_{n}", f.adx, n=n)
        yield F(f"plus_di_{n}", f.plus_di, n=n)
        yield F(f"minus_di_{n}", f.minus_di, n=n)
    for a, b, s in ((12, 26, 9), (5, 35, 5), (8, 17, 9), (19, 39, 9)):
        yield F(f"macd_{a}_{b}", f.macd, fast=a, slow=b)
        yield F(f"macd_signal_{a}_{b}_{s}", f.macd_signal, fast=a, slow=b, signal=s)
        yield F(f"macd_hist_{a}_{b}_{s}", f.macd_hist, fast=a, slow=b, signal=s)
    for a, b in ((12, 26), (5, 35)):
        yield F(f"ppo_{a}_{b}", f.ppo, fast=a, slow=b)
    for n in (15, 30):
        yield F(f"trix_{n}", f.trix, n=n)
    for n in (10, 20, 50, 100):
        yield F(f"bb_pctb_{n}", f.bb_pctb, n=n)
        yield F(f"bb_width_{n}", f.bb_width, n=n)
    for k, s in ((5, 3), (14, 3), (21, 5), (60, 5)):
        yield F(f"stoch_k_{k}_{s}", f.stoch_k, k=k, smooth=s)
        yield F(f"stoch_d_{k}_{s}", f.stoch_d, k=k, smooth=s)
    for n in (14, 28, 60):
        yield F(f"williams_r_{n}", f.williams_r, n=n)
    for n in (14, 20, 50, 100):
        yield F(f"cci_{n}", f.cci, n=n)
    for n in (5, 10, 20, 30, 60, 120, 240, 480):
        yield F(f"momentum_{n}", f.momentum, n=n)
    for n in (10, 30, 60):
        yield F(f"efficiency_ratio_{n}", f.efficiency_ratio, n=n)
    for n in (20, 50, 100, 240):
        yield F(f"zscore_close_{n}", f.zscore_close, n=n)
    for n in (30, 60, 240, 480):
        yield F(f"zscore_ret_{n}", f.zscore_ret, n=n)
    for n in (30, 120, 480):
        yield F(f"ret_sharpe_{n}", f.ret_sharpe, n=n)
    for n in (30, 60, 240, 480):
        yield F(f"ret_autocorr_{n}", f.ret_autocorr, n=n)
    for n in (10, 30, 60, 240, 480):
        yield F(f"up_ratio_{n}", f.up_ratio, n=n)
    for n in (30, 120):
        yield F(f"max_ret_{n}", f.max_ret, n=n)
        yield F(f"min_ret_{n}", f.min_ret, n=n)
    for n in (5, 10, 20, 60, 240, 480):
        yield F(f"volume_ratio_{n}", f.volume_ratio, n=n)
    yield F("log_volume", f.log_volume)
    for n in (20, 60, 240):
        yield F(f"volume_zscore_{n}", f.volume_zscore, n=n)
    yield F("volume_anomaly", f.volume_zscore, n=480)
    for n in (1, 5):
        yield F(f"volume_change_{n}", f.volume_change, n=n)
    for a, b in ((5, 60), (20, 240)):
        yield F(f"volume_ema_ratio_{a}_{b}", f.volume_ema_ratio, fast=a, slow=b)
    yield F("trade_velocity", f.volume_ema_ratio, fast=1, slow=60)
    for n in (20, 60, 240, 480):
        yield F(f"vwap_dist_{n}", f.vwap_dist, n=n)
    for n in (20, 60):
        yield F(f"amihud_{n}", f.amihud, n=n)
    for n in (10, 30, 60):
        yield F(f"signed_volume_{n}", f.signed_volume, n=n)
    for n in (14, 28, 60):
        yield F(f"mfi_{n}", f.mfi, n=n)
    yield F("hl_range", f.hl_range)
    for n in (5, 20, 60, 240):
        yield F(f"range_mean_{n}", f.range_mean, n=n)
    for n in (60, 240):
        yield F(f"range_vol_ratio_{n}", f.range_vol_ratio, n=n)
    for n in (60, 240):
        yield F(f"range_zscore_{n}", f.range_zscore, n=n)
    yield F("clv", f.clv)
    yield F("body", f.body)
    yield F("upper_shadow", f.upper_shadow)
    yield F("lower_shadow", f.lower_shadow)
    for n in (20, 60, 240):
        yield F(f"hi_dist_{n}", f.hi_dist, n=n)
        yield F(f"lo_dist_{n}", f.lo_dist, n=n)
        yield F(f"donchian_{n}", f.donchian, n=n)
    yield F("breakout_score", f.breakout, n=60)
    for n in (20, 240):
        yield F(f"breakout_{n}", f.breakout, n=n)
    yield F("session_sin", f.session_cycle, cos=False)
    yield F("session_cos", f.session_cycle, cos=True)
    yield F("weekday_sin", f.weekday_cycle, cos=False)
    yield F("weekday_cos", f.weekday_cycle, cos=True)
    yield F("is_cash_session", f.is_cash_session)
    yield F("minutes_to_close", f.minutes_to_close)
    yield F("gap_minutes", f.gap_minutes)

    of = ("orderflow",)
    yield F("bid_ask_imbalance", g.bid_ask_imbalance, of)
    yield F("orderflow_imbalance", g.orderflow_imbalance, of, n=5)
    for n in (10, 20, 60, 240):
        yield F(f"orderflow_imbalance_{n}", g.orderflow_imbalance, of, n=n)
    yield F("ofi_score", g.ofi_score, of, n=10, z=240)
    for s in (10, 30, 120):
        yield F(f"bid_ask_imbalance_ema_{s}", g.bid_ask_imbalance_ema, of, span=s)
    yield F("delta_momentum", g.delta_momentum, of, fast=10, slow=60)
    for n in (60, 240):
        yield F(f"ofi_return_corr_{n}", g.ofi_return_corr, of, n=n)
    yield F("trade_aggressiveness", g.trade_aggressiveness, of)
    for s in (10, 60, 240):
        yield F(f"trade_aggressiveness_ema_{s}", g.trade_aggressiveness_ema, of, span=s)
    yield F("slippage_estimate", g.slippage_estimate, of)
    yield F("spread_ticks", g.spread_ticks, of)
    yield F("spread_zscore_60", g.spread_zscore, of, n=60)
    yield F("spread_ema_60", g.spread_ema, of, span=60)
    yield F("depth_zscore_60", g.depth_zscore, of, n=60)
    yield F("log_depth", g.log_depth, of)
    yield F("volume_per_depth", g.volume_per_depth, of)

    opt = ("options",)
    yield F("iv_skew", g.iv_skew, opt)
    yield F("iv_term_structure", g.iv_term_structure, opt)
    yield F("iv_1m", g.iv_level, opt, tenor="iv_1m")
    yield F("iv_3m", g.iv_level, opt, tenor="iv_3m")
    yield F("iv_put_call", g.iv_put_call, opt)
    for n in (15, 60, 240, 480):
        yield F(f"iv_change_{n}", g.iv_change, opt, n=n)
    for n in (60, 240):
        yield F(f"iv_skew_zscore_{n}", g.iv_skew_zscore, opt, n=n)
    yield F("iv_rv_spread_240", g.iv_rv_spread, opt, n=240)
    yield F("term_change_60", g.term_change, opt, n=60)
    yield F("strike_dist", g.strike_dist, opt)

    gam = ("gamma",)
    for level in ("max_pain", "zero_gamma", "call_wall"):
        yield F(f"dist_{level}", g.level_dist, gam, level=level)
    yield F("net_gamma", g.net_gamma, gam)
    yield F("net_gamma_change_60", g.net_gamma_change, gam, n=60)
    yield F("above_zero_gamma", g.above_zero_gamma, gam)
    yield F("gamma_range_pos", g.gamma_range_pos, gam)

    vx = ("vix",)
    yield F("vix", g.vix, vx)
    for n in (1, 15, 60, 240, 480):
        yield F(f"vix_change_{n}", g.vix_change, vx, n=n)
    for n in (240, 1380):
        yield F(f"vix_zscore_{n}", g.vix_zscore, vx, n=n)
    for s in (60, 240):
        yield F(f"vix_ema_dist_{s}", g.vix_ema_dist, vx, span=s)
    yield F("vix_es_correlation", g.vix_es_correlation, vx, n=240)
    yield F("vix_es_correlation_60", g.vix_es_correlation, vx, n=60)
    yield F("vix_rv_ratio_240", g.vix_rv_ratio, vx, n=240)

    nw = ("news",)
    yield F("news_impact_score", g.news_impact, nw)
    for s in (30, 240):
        yield F(f"news_ema_{s}", g.news_ema, nw, span=s)
    yield F("news_abs_ema_240", g.news_abs_ema, nw, span=240)
    yield F("bars_since_news", g.bars_since_news, nw, cap=1380)

    cx = ("cross",)
    for n in (1, 5, 15, 60):
        yield F(f"cross_ret_{n}", g.cross_ret, cx, n=n)
        yield F(f"cross_spread_{n}", g.cross_spread, cx, n=n)
    for n in (60, 240, 1380):
        yield F(f"cross_corr_{n}", g.cross_corr, cx, n=n)
    for n in (240, 1380):
        yield F(f"cross_beta_{n}", g.cross_beta, cx, n=n)
        yield F(f"cross_ratio_zscore_{n}", g.cross_ratio_zscore, cx, n=n)
    yield F("cross_lead_corr_60", g.cross_lead_corr, cx, n=60)

    rg = ("regime",)
    for k, label in enumerate(("trend", "range", "defensive")):  # mia.types.REGIMES order
        yield F(f"regime_p_{label}", g.regime_prob, rg, k=k)
    yield F("regime_hmm", g.regime_hmm, rg)


@cache
def registry() -> dict[str, FeatureDef]:
    """:return: every registered feature by name, in registry order."""
    out: dict[str, FeatureDef] = {}
    for d in _defs():
        if d.name in out:
            raise RuntimeError(f"feature {d.name!r} registered twice")  # a coding error
        out[d.name] = d
    return out
