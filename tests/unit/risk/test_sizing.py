"""Sizing: risk per trade over the ATR stop, the reference's reductions, leverage by regime."""

from __future__ import annotations

import math

import pytest

from mia.config import RiskConfig
from mia.risk import Book, Mode, RiskFeatures, check, classify_regime, leverage, size_entry
from mia.risk.reasons import TEMPLATES, Reason
from tests.unit.risk._rules import DEFENSIVE, PARAMS, RANGE, TREND, codes, quiet, rules

ES = rules("ES")
EQUITY = 250_000.0


def _size(f: RiskFeatures, price: float = 4000.0, equity: float = EQUITY, r=ES):
    out: list[Reason] = []
    lev = leverage(r, f, classify_regime(r, f), out)
    return size_entry(r, equity, price, f, lev, out), out


def test_repo_risk_defaults_are_the_reference_numbers():
    c = PARAMS.risk
    assert (c.risk_per_trade, c.hot_atr_risk, c.hot_skew_risk) == (0.01, 0.005, 0.003)
    assert (c.hot_flow_imbalance, c.hot_flow_aggressiveness, c.hot_skew) == (0.9, 0.5, 0.02)
    assert c.max_leverage == {"trend": 5.0, "range": 3.0, "defensive": 1.0}
    assert (c.cut_leverage, c.cut_vix_es_correlation, c.cut_cvar_loss,
            c.cut_bid_ask_imbalance) == (1.0, 0.8, 0.1, 0.9)
    assert (c.stop_atr, c.trail_atr, c.wide_stop_atr, c.wide_stop_iv_term) == (2, 1.5, 3, 0.05)
    assert (c.take_profit_r, c.take_profit_fractions) == ((2.0, 4.0), (0.5, 0.5))
    assert (c.exit_adx, c.exit_spoofing, c.exit_reversed_imbalance, c.exit_news_impact) == (
        20.0, 0.7, 0.2, 0.5)
    assert set(c.breaker_actions) == set(RiskConfig.BREAKERS)


def test_stop_two_atr_away_sizes_six_es_contracts():
    # equity 250k, risk 1 %, ATR 4 pts -> stop 8 pts, ES $50: floor(2500 / (8 x 50)) = 6
    sz, out = _size(quiet())
    assert (sz.risk, sz.stop_distance, sz.risk_contracts) == (0.01, 8.0, 6)
    # trend 5x at 4000: floor(250k x 5 / (4000 x 50)) = 6 -> the risk size stands
    assert (sz.notional_contracts, sz.contracts) == (6, 6)
    assert Reason("size.risk", 6, 8.0) in out


def test_notional_cap_binds_at_higher_price():
    # at 5000 the trend cap is floor(1.25M / 250k) = 5 < 6 risk contracts
    sz, out = _size(quiet(), price=5000.0)
    assert (sz.risk_contracts, sz.notional_contracts, sz.contracts) == (6, 5, 5)
    assert "cap.notional" in codes(out)


def test_hot_atr_dynamic_cuts_risk_to_half_percent():
    # atr_dynamic / atr_14 = 7 / 4 = 1.75 > 1.5: 0.5 % -> floor(1250 / 400) = 3
    sz, out = _size(quiet(atr_dynamic=7.0))
    assert (sz.risk, sz.risk_contracts) == (0.005, 3)
    assert Reason("risk.hot_atr", 1.75, 1.5) in out
    assert _size(quiet(atr_dynamic=6.0))[0].risk == 0.01  # ratio 1.5 is not above 1.5


@pytest.mark.parametrize("kw", [{"orderflow_imbalance": 0.95}, {"orderflow_imbalance": -0.95},
                                {"trade_aggressiveness": 0.6}])
def test_hot_flow_cuts_risk_below_half_percent(kw):
    # 0.4 %: floor(1000 / 400) = 2 contracts; a one-sided sell book is as hot as a buy book
    sz, _ = _size(quiet(**kw))
    assert (sz.risk, sz.risk_contracts) == (0.004, 2)


def test_hot_iv_skew_cuts_risk_to_three_tenths_percent():
    sz, out = _size(quiet(iv_skew=0.03))  # floor(750 / 400) = 1
    assert (sz.risk, sz.risk_contracts) == (0.003, 1)
    assert "risk.hot_skew" in codes(out)


def test_several_reductions_take_the_lowest_level_not_the_product():
    sz, out = _size(quiet(atr_dynamic=8.0, trade_aggressiveness=0.7, iv_skew=0.05))
    assert sz.risk == 0.003
    assert codes(out)[1:4] == ["risk.hot_atr", "risk.hot_flow_aggressiveness", "risk.hot_skew"]


def test_high_iv_term_structure_widens_the_stop_and_shrinks_the_size():
    # 3 x ATR = 12 pts: floor(2500 / (12 x 50)) = 4
    sz, out = _size(quiet(iv_term_structure=0.06))
    assert (sz.stop_distance, sz.risk_contracts) == (12.0, 4)
    assert "stop.wide" in codes(out)


@pytest.mark.parametrize(("regime", "lev", "cap"),
                         [(TREND, 5.0, 5), (RANGE, 3.0, 3), (DEFENSIVE, 1.0, 1)])
def test_leverage_cap_by_regime(regime, lev, cap):
    # 5000 x $50 = $250k a contract = 1x of 250k equity
    sz, _ = _size(quiet(**regime), price=5000.0)
    assert (sz.leverage, sz.notional_contracts) == (lev, cap)


@pytest.mark.parametrize(("kw", "code"), [
    ({"vix_es_correlation": 0.85}, "leverage.cut_vix"),
    ({"cvar_loss": 0.12}, "leverage.cut_cvar"),
    ({"bid_ask_imbalance": 0.95}, "leverage.cut_bid_ask"),
    ({"bid_ask_imbalance": -0.95}, "leverage.cut_bid_ask"),
])
def test_stress_cuts_trend_leverage_to_one(kw, code):
    sz, out = _size(quiet(**kw), price=5000.0)
    assert (sz.leverage, sz.contracts) == (1.0, 1)
    assert code in codes(out)


def test_no_confirmed_regime_uses_the_fallback_regime():
    f = quiet(regime_p_trend=0.65, regime_p_range=0.2, regime_p_defensive=0.15)  # 0.65 < 0.7
    assert classify_regime(ES, f) is None
    sz, out = _size(f, price=5000.0)
    assert sz.leverage == 1.0
    assert Reason("leverage.fallback", 1.0, note="defensive") in out
    assert classify_regime(ES, quiet(regime_p_trend=0.1, regime_p_range=0.61,
                                     regime_p_defensive=0.29)) == "range"  # range needs > 0.6


def test_max_contracts_caps_mnq():
    # MNQ $2: ATR 20 -> stop 40 pts, floor(2500 / 80) = 31; trend 5x at 17000: 36; max 10
    sz, out = _size(quiet(atr_14=20.0, atr_dynamic=20.0), price=17_000.0, r=rules("MNQ"))
    assert (sz.risk_contracts, sz.notional_contracts, sz.contracts) == (31, 36, 10)
    assert Reason("cap.contracts", 10) in out


def test_ohlcv_only_features_trigger_nothing_and_say_so():
    # only atr_14 known: no reduction, fallback leverage, and a skip reason for every other rule
    d = check(ES, 1.0, Book(0, EQUITY), 1000.0, RiskFeatures(atr_14=4.0), Mode.RUNNING)
    assert d.plan is not None
    assert d.plan.risk == 0.01
    assert d.order == 5
    skipped = {c.removeprefix("skip.") for c in codes(d) if c.startswith("skip.")}
    assert skipped == set(RiskFeatures._fields) - {"atr_14"}
    assert not any(c.startswith(("risk.hot", "leverage.cut", "block.")) for c in codes(d))


def test_missing_atr_means_no_new_exposure():
    for atr in (math.nan, 0.0):
        d = check(ES, 1.0, Book(0, EQUITY), 4000.0, quiet(atr_14=atr), Mode.RUNNING)
        assert (d.order, d.allowed, d.plan) == (0, 0, None)
        assert "size.no_atr" in codes(d)


def test_reason_texts_render_for_every_code():
    for code in TEMPLATES:
        text = Reason(code, 1.25, 2.0, "trend -> range").text
        assert text
        assert "{" not in text
    d = check(ES, 1.0, Book(0, EQUITY), 4000.0,
              quiet(atr_dynamic=9.0, iv_term_structure=0.1, vix_es_correlation=0.9),
              Mode.RUNNING)
    assert "atr_dynamic / atr_14 = 2.25 > 1.5: risk cut to hot_atr_risk" in d.texts
    assert "risk per trade 0.500%" in d.texts
