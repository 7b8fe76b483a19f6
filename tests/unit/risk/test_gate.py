"""The pre-trade check: entries, holding, reductions, exits, flips, states, and its invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mia.risk import Book, EntryPlan, Mode, RiskFeatures, RiskInputError, check
from mia.risk.stops import open_trade
from tests.unit.risk._rules import DEFENSIVE, QUIET, RANGE, TREND, codes, quiet, rules

ES = rules("ES")
EQ = 250_000.0
PRICE = 4000.0  # trend 5x at 4000 allows 6 ES, the risk size of ATR 4 too


def _held(qty: int, entry: float = 4000.0, allowed: int = 6, regime: str | None = "trend"):
    plan = EntryPlan(stop_distance=8.0, regime=regime, allowed=allowed, risk=0.01)
    side = 1 if qty > 0 else -1
    return Book(qty, EQ, open_trade(ES, side, abs(qty), entry, plan, at_ns=0))


def test_flat_full_target_enters_the_allowed_size_with_its_plan():
    d = check(ES, 1.0, Book(0, EQ), PRICE, quiet(), Mode.RUNNING)
    assert (d.order, d.target, d.action, d.allowed, d.cap, d.regime) == (6, 6, "enter", 6, 6,
                                                                          "trend")
    assert d.plan == EntryPlan(stop_distance=8.0, regime="trend", allowed=6, risk=0.01)


def test_fractional_target_floors_to_whole_contracts():
    assert check(ES, -0.5, Book(0, EQ), PRICE, quiet(), Mode.RUNNING).order == -3
    assert check(ES, 0.49, Book(0, EQ), PRICE, quiet(), Mode.RUNNING).order == 2  # 2.94
    d = check(ES, 0.1, Book(0, EQ), PRICE, quiet(), Mode.RUNNING)  # 0.6 contracts
    assert (d.order, d.plan) == (0, None)
    assert "size.zero" in codes(d)


def test_same_target_in_a_trade_holds_without_scaling_in():
    d = check(ES, 1.0, _held(3), PRICE, quiet(), Mode.RUNNING)
    assert (d.order, d.action) == (0, "none")
    assert "hold.no_scale_in" in codes(d)  # 6 allowed at entry, 3 held: no add


def test_smaller_target_reduces_against_the_size_allowed_at_entry():
    d = check(ES, 0.5, _held(6), PRICE, quiet(), Mode.RUNNING)
    assert (d.order, d.target, d.action) == (-3, 3, "reduce")


def test_zero_target_exits():
    d = check(ES, 0.0, _held(-4), PRICE, quiet(), Mode.RUNNING)
    assert (d.order, d.target, d.action) == (4, 0, "exit")


def test_opposite_target_flips_into_a_new_trade():
    d = check(ES, -1.0, _held(4), PRICE, quiet(), Mode.RUNNING)
    assert (d.order, d.target, d.action) == (-10, -6, "flip")
    assert d.plan is not None
    assert d.plan.allowed == 6


@pytest.mark.parametrize(("kw", "code"), [
    ({**DEFENSIVE}, "exit.regime"),
    ({**RANGE}, "exit.regime"),
    ({"adx_14": 18.0}, "exit.adx"),
    ({"spoofing_score": 0.75}, "exit.spoofing"),
    ({"orderflow_imbalance": -0.25}, "exit.reversed_imbalance"),
    ({"orderflow_imbalance": -0.1, "trade_aggressiveness": 0.6}, "exit.opposite_flow"),
    ({"news_impact_score": -0.6}, "exit.news"),
])
def test_exit_rules_close_a_long_trend_trade(kw, code):
    d = check(ES, 1.0, _held(6), PRICE, quiet(**kw), Mode.RUNNING)
    assert (d.order, d.action) == (-6, "exit")
    assert code in codes(d)


def test_exit_rules_read_signs_for_shorts():
    # bad news and selling flow favour a short; good news and buying flow exit it
    favour = quiet(news_impact_score=-0.8, orderflow_imbalance=-0.5)
    assert check(ES, -1.0, _held(-6), PRICE, favour, Mode.RUNNING).order == 0
    d = check(ES, -1.0, _held(-6), PRICE, quiet(news_impact_score=0.6), Mode.RUNNING)
    assert d.order == 6
    assert "exit.news" in codes(d)
    d = check(ES, -1.0, _held(-6), PRICE, quiet(orderflow_imbalance=0.3), Mode.RUNNING)
    assert d.order == 6
    assert "exit.reversed_imbalance" in codes(d)


def test_trade_without_a_confirmed_entry_regime_exits_only_into_defensive():
    book = _held(3, regime=None)  # 3 ES at 4000 fit the range cap of 3x
    assert check(ES, 1.0, book, PRICE, quiet(**RANGE), Mode.RUNNING).order == 0
    d = check(ES, 1.0, book, PRICE, quiet(**DEFENSIVE), Mode.RUNNING)
    assert d.order == -3
    assert "exit.regime" in codes(d)
    # an unconfirmed bar (no regime above its threshold) is no evidence of a change
    unconfirmed = {"regime_p_trend": 0.5, "regime_p_range": 0.3, "regime_p_defensive": 0.2}
    assert check(ES, 1.0, _held(6), PRICE, quiet(**unconfirmed), Mode.RUNNING).order == 0


@pytest.mark.parametrize(("kw", "code"), [
    ({"spoofing_score": 0.8}, "block.spoofing"),
    ({"news_impact_score": -0.7}, "block.news"),
    ({"adx_14": 15.0}, "block.adx"),
])
def test_entry_into_a_warning_is_blocked(kw, code):
    d = check(ES, 1.0, Book(0, EQ), PRICE, quiet(**kw), Mode.RUNNING)
    assert (d.order, d.plan) == (0, None)
    assert code in codes(d)


def test_bad_news_blocks_a_long_but_lets_a_short_in():
    assert check(ES, -1.0, Book(0, EQ), PRICE, quiet(news_impact_score=-0.7, **RANGE),
                 Mode.RUNNING).order == -3  # range 3x at 4000: floor(750k / 200k)


def test_flip_enters_the_other_side_when_the_exit_rule_fires_for_the_old_one():
    d = check(ES, -1.0, _held(6), PRICE, quiet(orderflow_imbalance=-0.3), Mode.RUNNING)
    assert (d.order, d.target, d.action) == (-12, -6, "flip")
    assert "exit.reversed_imbalance" in codes(d)


def test_early_take_profit_on_strong_imbalance_in_profit():
    d = check(ES, 1.0, _held(6), 4010.0, quiet(orderflow_imbalance=0.95), Mode.RUNNING)
    assert (d.order, d.target) == (-3, 3)
    assert "tp.early" in codes(d)
    # not in profit: no early exit
    assert check(ES, 1.0, _held(6), 3999.0, quiet(orderflow_imbalance=0.95),
                 Mode.RUNNING).order == 0


def test_leverage_cut_trims_an_open_position():
    d = check(ES, 1.0, _held(6), 5000.0, quiet(vix_es_correlation=0.9), Mode.RUNNING)
    assert (d.order, d.target, d.cap) == (-5, 1, 1)
    assert "cap.trim" in codes(d)


def test_reducing_allows_reductions_and_refuses_entries_and_flips():
    d = check(ES, 1.0, Book(0, EQ), PRICE, quiet(), Mode.REDUCING)
    assert d.order == 0
    assert "reducing" in codes(d)
    d = check(ES, -1.0, _held(6), PRICE, quiet(), Mode.REDUCING)
    assert (d.order, d.target, d.action) == (-6, 0, "exit")
    assert "reducing" in codes(d)
    assert check(ES, 0.5, _held(6), PRICE, quiet(), Mode.REDUCING).order == -3


def test_halted_answers_every_call_with_flatten():
    for target in (1.0, 0.0, -1.0):
        d = check(ES, target, _held(-4), PRICE, RiskFeatures(), Mode.HALTED)
        assert (d.order, d.target, d.action, d.plan) == (4, 0, "flatten", None)
    assert check(ES, 1.0, Book(0, EQ), PRICE, quiet(), Mode.HALTED).order == 0


@pytest.mark.parametrize(("target", "equity", "price", "match"), [
    (math.nan, EQ, PRICE, "target"), (1.5, EQ, PRICE, "target"), (-1.01, EQ, PRICE, "target"),
    (0.5, 0.0, PRICE, "equity"), (0.5, math.inf, PRICE, "equity"),
    (0.5, EQ, math.nan, "price"), (0.5, EQ, -1.0, "price"),
])
def test_bad_inputs_raise_and_place_no_order(target, equity, price, match):
    with pytest.raises(RiskInputError, match=match):
        check(ES, target, Book(0, equity), price, quiet(), Mode.RUNNING)


def test_position_and_trade_record_must_agree():
    with pytest.raises(RiskInputError, match="trade record holds none"):
        check(ES, 1.0, Book(2, EQ), PRICE, quiet(), Mode.RUNNING)
    with pytest.raises(RiskInputError, match=r"position \+5 but the trade record holds \+6"):
        check(ES, 1.0, _held(6)._replace(position=5), PRICE, quiet(), Mode.RUNNING)
    with pytest.raises(TypeError):
        check(ES, 1.0, Book(2.5, EQ), PRICE, quiet(), Mode.RUNNING)  # type: ignore[arg-type]


# --- property: no exposure increase unless RUNNING, never beyond max_contracts -------------

_maybe = st.one_of(st.just(math.nan), st.floats(-1.5, 1.5))
_features = st.builds(
    RiskFeatures,
    atr_14=st.one_of(st.just(math.nan), st.floats(0.0, 40.0)),
    atr_dynamic=st.one_of(st.just(math.nan), st.floats(0.0, 80.0)),
    orderflow_imbalance=_maybe, bid_ask_imbalance=_maybe,
    trade_aggressiveness=st.one_of(st.just(math.nan), st.floats(0.0, 1.0)),
    iv_skew=st.floats(-0.05, 0.05), iv_term_structure=st.floats(-0.1, 0.1),
    vix_es_correlation=_maybe, spoofing_score=st.floats(0.0, 1.0),
    news_impact_score=_maybe, adx_14=st.floats(0.0, 60.0),
    regime_p_trend=st.floats(0.0, 1.0), regime_p_range=st.floats(0.0, 1.0),
    regime_p_defensive=st.floats(0.0, 1.0), cvar_loss=st.floats(0.0, 0.3),
)


@st.composite
def _books(draw: st.DrawFn) -> Book:
    equity = draw(st.floats(1_000.0, 50_000_000.0))
    qty = draw(st.integers(-40, 40))  # also beyond max_contracts, as after a reconcile
    if qty == 0:
        return Book(0, equity)
    plan = EntryPlan(stop_distance=draw(st.floats(0.25, 50.0)),
                     regime=draw(st.sampled_from(["trend", "range", "defensive", None])),
                     allowed=draw(st.integers(1, 40)), risk=0.01)
    trade = open_trade(ES, 1 if qty > 0 else -1, abs(qty), draw(st.floats(100.0, 20_000.0)),
                       plan, at_ns=0)
    return Book(qty, equity, trade)


@settings(max_examples=400, deadline=None)
@given(target=st.floats(-1.0, 1.0), book=_books(), price=st.floats(100.0, 20_000.0),
       f=_features, mode=st.sampled_from(list(Mode)))
def test_gate_never_adds_exposure_unless_running_and_never_exceeds_max_contracts(
    target, book, price, f, mode
):
    d = check(ES, target, book, price, f, mode)
    pos = book.position
    assert d.target == pos + d.order
    assert abs(d.target) <= ES.cfg.max_contracts
    if mode is not Mode.RUNNING:
        assert abs(d.target) <= abs(pos)
        assert d.target == 0 or d.target * pos > 0  # no flip
        assert d.plan is None
    if mode is Mode.HALTED:
        assert d.target == 0
    if abs(d.target) > abs(pos) or d.target * pos < 0:  # exposure added: a sized entry
        assert d.plan is not None
        assert abs(d.target) <= d.allowed <= d.cap


def test_quiet_features_trigger_no_rule():
    d = check(ES, 1.0, Book(0, EQ), PRICE, RiskFeatures(**QUIET), Mode.RUNNING)
    assert codes(d) == ["leverage", "risk.base", "size.risk"]
    assert TREND["regime_p_trend"] > 0.7
