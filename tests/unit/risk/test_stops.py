"""Stops and the take-profit ladder: levels, the path inside a bar, trailing, fills."""

from __future__ import annotations

import pytest

from mia.risk import EntryPlan, Exit, RiskInputError, apply_fill, bar_exits, trail
from mia.risk.stops import open_trade
from tests.unit.risk._rules import rules

ES = rules("ES")
PLAN = EntryPlan(stop_distance=8.0, regime="trend", allowed=6, risk=0.01)  # 2 x ATR 4


def _long(qty: int = 6, r=ES, plan: EntryPlan = PLAN):
    return open_trade(r, 1, qty, 4000.0, plan, at_ns=0)


def test_long_trade_levels_are_two_atr_stop_and_two_and_four_r_targets():
    t = _long()
    assert (t.stop, t.take_profit_price(ES, 0), t.take_profit_price(ES, 1)) == (
        3992.0, 4016.0, 4032.0)
    short = open_trade(ES, -1, 4, 4000.0, PLAN, at_ns=0)
    assert (short.stop, short.take_profit_price(ES, 0), short.take_profit_price(ES, 1)) == (
        4008.0, 3984.0, 3968.0)


def test_levels_are_rounded_to_the_tick():
    t = _long(plan=PLAN._replace(stop_distance=6.6))  # 2 x ATR 3.3
    assert t.stop == 3993.5                            # 3993.4 -> nearest tick
    assert t.take_profit_price(ES, 0) == 4013.25       # 4013.2 -> nearest tick


def test_stop_hit_inside_the_bar_exits_at_the_stop():
    assert bar_exits(ES, _long(), 4001.0, 4003.0, 3991.0) == (Exit(-6, 3992.0, "stop", -1),)


def test_gap_through_the_stop_exits_at_the_open():
    assert bar_exits(ES, _long(), 3990.0, 3995.0, 3985.0) == (Exit(-6, 3990.0, "stop_gap", -1),)


def test_short_stop_gap_exits_at_the_open_above_the_stop():
    short = open_trade(ES, -1, 4, 4000.0, PLAN, at_ns=0)
    assert bar_exits(ES, short, 4001.0, 4009.0, 3999.0) == (Exit(4, 4008.0, "stop", -1),)
    assert bar_exits(ES, short, 4012.0, 4013.0, 4011.0) == (Exit(4, 4012.0, "stop_gap", -1),)


def test_first_take_profit_closes_half_at_two_r():
    assert bar_exits(ES, _long(), 4010.0, 4017.0, 4009.0) == (
        Exit(-3, 4016.0, "take_profit", 0),)


def test_stop_and_target_in_one_bar_assume_the_stop_first():
    assert bar_exits(ES, _long(), 4005.0, 4020.0, 3990.0) == (Exit(-6, 3992.0, "stop", -1),)


def test_open_above_a_target_fills_it_at_the_open_then_the_next_inside_the_bar():
    assert bar_exits(ES, _long(), 4020.0, 4035.0, 4018.0) == (
        Exit(-3, 4020.0, "take_profit_gap", 0), Exit(-3, 4032.0, "take_profit", 1))
    assert bar_exits(ES, _long(), 4040.0, 4041.0, 4039.0) == (
        Exit(-3, 4040.0, "take_profit_gap", 0), Exit(-3, 4040.0, "take_profit_gap", 1))


def test_ladder_after_a_fill_only_proposes_the_next_level():
    t = apply_fill(ES, _long(), -3, 4016.0, None, at_ns=1)
    assert t is not None
    assert (t.qty, t.peak_qty, t.next_level(ES)) == (3, 6, 1)
    assert bar_exits(ES, t, 4017.0, 4020.0, 4015.0) == ()
    assert bar_exits(ES, t, 4030.0, 4033.0, 4029.0) == (Exit(-3, 4032.0, "take_profit", 1),)


@pytest.mark.parametrize(("qty", "first", "second"), [(5, 3, 2), (1, 1, 0), (2, 1, 1)])
def test_odd_sizes_round_the_first_half_up(qty, first, second):
    exits = bar_exits(ES, _long(qty), 4040.0, 4041.0, 4039.0)
    assert [-e.quantity for e in exits] == [q for q in (first, second) if q]


def test_fractions_below_one_leave_a_runner_on_the_stop():
    r = rules("ES", take_profit_fractions=(0.5, 0.3))
    exits = bar_exits(r, _long(10, r), 4040.0, 4041.0, 4039.0)
    assert [-e.quantity for e in exits] == [5, 3]  # 10 - 5 - 3 = 2 ride the stop
    assert _long(10, r)._replace(qty=2).next_level(r) is None


def test_trailing_stop_follows_the_high_in_a_trend_and_never_loosens():
    t = trail(ES, _long(), 4020.0, 4012.0, atr=4.0, trending=True)
    assert (t.extreme, t.stop) == (4020.0, 4014.0)   # 4020 - 1.5 x 4
    t2 = trail(ES, t, 4018.0, 4015.0, atr=6.0, trending=True)
    assert (t2.extreme, t2.stop) == (4020.0, 4014.0)  # 4020 - 9 = 4011 would loosen it
    t3 = trail(ES, t2, 4030.0, 4021.0, atr=4.0, trending=True)
    assert t3.stop == 4024.0


def test_no_trailing_outside_a_confirmed_trend():
    t = trail(ES, _long(), 4020.0, 4012.0, atr=4.0, trending=False)
    assert (t.extreme, t.stop) == (4020.0, 3992.0)
    short = trail(ES, open_trade(ES, -1, 4, 4000.0, PLAN, 0), 3999.0, 3980.0, 4.0, True)
    assert (short.extreme, short.stop) == (3980.0, 3986.0)


def test_fills_open_add_reduce_flip_and_close_a_trade():
    t = apply_fill(ES, None, 3, 4000.0, PLAN, at_ns=1)
    assert t is not None
    assert (t.side, t.qty, t.stop) == (1, 3, 3992.0)
    t = apply_fill(ES, t, 3, 4002.0, None, at_ns=2)  # rest of a partially filled entry
    assert t is not None
    assert (t.qty, t.peak_qty, t.entry_price, t.stop) == (6, 6, 4001.0, 3993.0)
    t = apply_fill(ES, t, -2, 4005.0, None, at_ns=3)
    assert t is not None
    assert (t.qty, t.peak_qty) == (4, 6)
    flipped = apply_fill(ES, t, -10, 3999.0, PLAN._replace(allowed=8), at_ns=4)
    assert flipped is not None
    assert (flipped.side, flipped.qty, flipped.stop) == (-1, 6, 4007.0)
    assert flipped.allowed == 8
    assert apply_fill(ES, flipped, 6, 3990.0, None, at_ns=5) is None


def test_fill_that_opens_a_trade_without_a_plan_is_refused():
    with pytest.raises(RiskInputError, match="without an entry plan"):
        apply_fill(ES, None, 2, 4000.0, None, at_ns=0)
    with pytest.raises(RiskInputError, match="without an entry plan"):
        apply_fill(ES, _long(), -8, 4000.0, None, at_ns=0)  # a flip opens a trade too
    with pytest.raises(RiskInputError, match="positive"):
        apply_fill(ES, _long(), -1, float("nan"), None, at_ns=0)
