"""Sizing of a new trade: risk per trade over the ATR stop distance, capped by leverage.

reference.md "Position management":

* contracts = floor(equity x risk / (stop distance in points x multiplier)); the stop distance
  is ``stop_atr`` x atr_14, or ``wide_stop_atr`` x atr_14 when iv_term_structure >
  ``wide_stop_iv_term`` (a wider stop means fewer contracts for the same risk);
* risk falls from ``risk_per_trade`` to the *lowest* reduced level whose trigger holds
  (``hot_atr_risk`` when atr_dynamic / atr_14 > ``hot_atr_ratio``, ``hot_flow_risk`` when
  |orderflow_imbalance| > ``hot_flow_imbalance`` or trade_aggressiveness >
  ``hot_flow_aggressiveness``, ``hot_skew_risk`` when iv_skew > ``hot_skew``); reductions do not
  multiply: the reference names levels, not factors;
* the notional cap uses the confirmed regime's ``max_leverage`` (``fallback_regime`` when no
  regime is confirmed; an open trade keeps its entry regime's until another is confirmed),
  cut to ``cut_leverage`` when vix_es_correlation, cvar_loss or |bid_ask_imbalance| exceed
  their ``cut_*`` thresholds; and ``max_contracts`` caps it all.

Imbalances are signed (+ buying, - selling); "flow running hot" is one-sided flow either way, so
the imbalance triggers compare |x|. iv_skew is compared signed, as the reference writes it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from mia.risk.inputs import RiskFeatures
from mia.risk.limits import notional_contracts
from mia.risk.reasons import NO_ATR, Reason
from mia.risk.rules import RiskRules, floor_size
from mia.types import REGIMES


def classify_regime(rules: RiskRules, f: RiskFeatures) -> str | None:
    """The confirmed regime: the most probable one above its threshold.

    :param rules: rules holding ``features.regime_thresholds``.
    :param f: the bar's features (``regime_p_*``).
    :return: ``trend``, ``range``, ``defensive``, or ``None`` when none is confirmed (or the
        probabilities are unavailable).
    """
    best, best_p = None, -1.0
    for name, p, threshold in zip(REGIMES, (f.regime_p_trend, f.regime_p_range,
                                            f.regime_p_defensive), rules.regime_thresholds,
                                  strict=True):
        if p > threshold and p > best_p:  # NaN compares False: unavailable never confirms
            best, best_p = name, p
    return best


def trend_confirmed(rules: RiskRules, f: RiskFeatures, regime: str | None) -> bool:
    """Whether the trailing stop applies: trend regime, and adx_14 >= ``trend_adx`` when known.

    :param rules: the rules.
    :param f: the bar's features.
    :param regime: :func:`classify_regime` of the bar.
    :return: ``True`` in a confirmed trend.
    """
    return regime == "trend" and not f.adx_14 < rules.cfg.trend_adx


def risk_fraction(rules: RiskRules, f: RiskFeatures, out: list[Reason]) -> float:
    """Risk per trade after the reference's reductions.

    :param rules: the rules.
    :param f: the bar's features.
    :param out: reasons are appended here.
    :return: equity fraction to risk between entry and stop.
    """
    c = rules.cfg
    risk = c.risk_per_trade
    if f.atr_14 > 0.0 and f.atr_dynamic > c.hot_atr_ratio * f.atr_14:
        risk = min(risk, c.hot_atr_risk)
        out.append(Reason("risk.hot_atr", f.atr_dynamic / f.atr_14, c.hot_atr_ratio))
    if abs(f.orderflow_imbalance) > c.hot_flow_imbalance:
        risk = min(risk, c.hot_flow_risk)
        out.append(Reason("risk.hot_flow_imbalance", abs(f.orderflow_imbalance),
                          c.hot_flow_imbalance))
    if f.trade_aggressiveness > c.hot_flow_aggressiveness:
        risk = min(risk, c.hot_flow_risk)
        out.append(Reason("risk.hot_flow_aggressiveness", f.trade_aggressiveness,
                          c.hot_flow_aggressiveness))
    if f.iv_skew > c.hot_skew:
        risk = min(risk, c.hot_skew_risk)
        out.append(Reason("risk.hot_skew", f.iv_skew, c.hot_skew))
    out.append(Reason("risk.base", risk))
    return risk


def stop_distance(rules: RiskRules, f: RiskFeatures, out: list[Reason]) -> float:
    """Initial stop distance R in points.

    :param rules: the rules.
    :param f: the bar's features.
    :param out: reasons are appended here.
    :return: ``stop_atr`` (or ``wide_stop_atr``) x atr_14; NaN when atr_14 is unavailable or
        not positive (no stop can be sized, so no entry).
    """
    c = rules.cfg
    if not f.atr_14 > 0.0:
        out.append(NO_ATR)
        return math.nan
    if f.iv_term_structure > c.wide_stop_iv_term:
        out.append(Reason("stop.wide", f.iv_term_structure, c.wide_stop_iv_term))
        return c.wide_stop_atr * f.atr_14
    return c.stop_atr * f.atr_14


def leverage(rules: RiskRules, f: RiskFeatures, regime: str | None, out: list[Reason], *,
             held: bool = False) -> float:
    """Max notional / equity for this bar.

    :param rules: the rules.
    :param f: the bar's features.
    :param regime: :func:`classify_regime` of the bar, or for an open trade on a bar with no
        confirmed regime, the trade's entry regime.
    :param out: reasons are appended here.
    :param held: ``regime`` is an open trade's entry regime (for the reason only).
    :return: the regime's ``max_leverage``, cut to ``cut_leverage`` under stress.
    """
    c = rules.cfg
    if regime is None:
        lev = c.max_leverage[c.fallback_regime]
        out.append(Reason("leverage.fallback", lev, note=c.fallback_regime))
    else:
        lev = c.max_leverage[regime]
        out.append(Reason("leverage.held" if held else "leverage", lev, note=regime))
    cut = c.cut_leverage
    if f.vix_es_correlation > c.cut_vix_es_correlation:
        lev = min(lev, cut)
        out.append(Reason("leverage.cut_vix", f.vix_es_correlation, c.cut_vix_es_correlation))
    if f.cvar_loss > c.cut_cvar_loss:
        lev = min(lev, cut)
        out.append(Reason("leverage.cut_cvar", f.cvar_loss, c.cut_cvar_loss))
    if abs(f.bid_ask_imbalance) > c.cut_bid_ask_imbalance:
        lev = min(lev, cut)
        out.append(Reason("leverage.cut_bid_ask", abs(f.bid_ask_imbalance),
                          c.cut_bid_ask_imbalance))
    return lev


class Sizing(NamedTuple):
    """The size a new trade may take at this bar.

    :param contracts: min(risk contracts, notional cap, ``max_contracts``), >= 0.
    :param risk_contracts: floor(equity x risk / (stop distance x multiplier)).
    :param risk: equity fraction risked (after reductions).
    :param stop_distance: R in points (NaN when atr_14 is unavailable: ``contracts`` is 0).
    :param notional_contracts: floor(equity x leverage / (price x multiplier)).
    :param leverage: max notional / equity used.
    """

    contracts: int
    risk_contracts: int
    risk: float
    stop_distance: float
    notional_contracts: int
    leverage: float


def size_entry(rules: RiskRules, equity: float, price: float, f: RiskFeatures,
               lev: float, out: list[Reason]) -> Sizing:
    """Size a new trade.

    :param rules: the rules.
    :param equity: USD at the decision bar, > 0.
    :param price: reference price (decision bar close), points, > 0.
    :param f: the bar's features.
    :param lev: :func:`leverage` of the bar.
    :param out: reasons are appended here (the binding cap among them).
    :return: the sizing.
    """
    risk = risk_fraction(rules, f, out)
    dist = stop_distance(rules, f, out)
    by_risk = floor_size(equity * risk / (dist * rules.multiplier)) if dist == dist else 0
    by_notional = notional_contracts(equity, price, lev, rules.multiplier)
    cap = rules.cfg.max_contracts
    contracts = min(by_risk, by_notional, cap)
    if dist == dist:
        out.append(Reason("size.risk", by_risk, dist))
    if contracts < by_risk:
        out.append(Reason("cap.notional", by_notional, lev) if by_notional <= cap
                   else Reason("cap.contracts", cap))
    return Sizing(contracts, by_risk, risk, dist, by_notional, lev)
