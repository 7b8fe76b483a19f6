"""Per-trade stop, trailing stop and take-profit ladder, advanced bar by bar.

A trade is a run of fills on one side. It opens with the :class:`EntryPlan` the gate sized it
with: R = the planned stop distance in points (``stop_atr`` or ``wide_stop_atr`` x atr_14 at the
decision bar), the initial stop at ``entry - side x R``, take-profit levels at
``entry + side x k x R`` for each ``k`` of ``take_profit_r`` (reference line 52-54). Levels are
rounded to the tick. The ladder is kept as *sizes*: once level ``i`` is reached the trade may
hold at most ``RiskRules.remaining_after(peak, i)`` contracts (50 %/50 % of 6 contracts: 3 after
2R, 0 after 4R), so a reduction the policy made earlier counts towards it and the ladder needs
no memory of which orders filled.

**Inside a bar** (:func:`bar_exits`), with only open, high, low, close known:

1. the open is through the stop (a gap): everything exits at the *open*, a worse price than the
   stop, as a stop order would fill;
2. take-profit levels the open is already through fill at the *open* (a better price);
3. the stop inside the bar (long: low <= stop) exits the rest *at the stop*; when both the stop
   and a take-profit level lie inside the same bar the path is unknown and the stop is assumed
   first — the conservative reading;
4. otherwise levels inside the bar (long: high >= level) fill *at the level*.

Exit prices are references; the caller's cost model adds spread and slippage as for any fill.
:func:`bar_exits` only proposes exits: sizes change when the caller reports the fills through
:func:`apply_fill` (backtest: at once; executor: when the broker confirms), so a stop that did not
fill is proposed again at the next bar. :func:`trail` then moves the stop for the *next* bar:
in a confirmed trend to ``extreme - side x trail_atr x atr_14`` (chandelier exit, extreme = the
highest high of a long since entry), never loosening it. Using the bar's high to move the stop
that bar's low is checked against would assume the high came first.
"""

from __future__ import annotations

from typing import NamedTuple

from mia.risk.rules import RiskRules
from mia.risk.state import RiskInputError


class EntryPlan(NamedTuple):
    """What the gate sized a new trade with; travels from the decision to the entry fill.

    :param stop_distance: R, points (> 0).
    :param regime: confirmed regime at the decision (``None``: none).
    :param allowed: contracts the sizing allowed; later policy fractions refer to it.
    :param risk: equity fraction risked.
    """

    stop_distance: float
    regime: str | None
    allowed: int
    risk: float


class TradeRisk(NamedTuple):
    """Risk state of the open trade.

    :param side: +1 long, -1 short.
    :param qty: contracts held (> 0).
    :param peak_qty: largest ``qty`` of the trade, the base of the take-profit ladder.
    :param entry_price: average entry fill price, points.
    :param r_points: R, the planned stop distance, points.
    :param stop: current stop level, points (tick-rounded).
    :param extreme: best price since entry (long: highest high), points.
    :param entry_regime: confirmed regime at entry.
    :param allowed: contracts allowed at entry.
    :param opened_ns: entry fill time, ns since the epoch.
    """

    side: int
    qty: int
    peak_qty: int
    entry_price: float
    r_points: float
    stop: float
    extreme: float
    entry_regime: str | None
    allowed: int
    opened_ns: int

    def take_profit_price(self, rules: RiskRules, level: int) -> float:
        """:param rules: the rules. :param level: index into ``take_profit_r``.
        :return: the level's price, points (tick-rounded)."""
        k = rules.cfg.take_profit_r[level]
        return rules.round_tick(self.entry_price + self.side * k * self.r_points)

    def next_level(self, rules: RiskRules) -> int | None:
        """:param rules: the rules. :return: the first take-profit level whose size the trade
        still exceeds, or ``None`` when the ladder is done."""
        for i in range(len(rules.take_profit_done)):
            if self.qty > rules.remaining_after(self.peak_qty, i):
                return i
        return None


class Exit(NamedTuple):
    """An exit proposed inside a bar.

    :param quantity: signed contracts to trade (opposite to the trade's side).
    :param price: reference fill price, points.
    :param reason: ``stop_gap``, ``stop``, ``take_profit_gap`` or ``take_profit``.
    :param level: take-profit level index, ``-1`` for stops.
    """

    quantity: int
    price: float
    reason: str
    level: int


def open_trade(rules: RiskRules, side: int, qty: int, price: float, plan: EntryPlan,
               at_ns: int) -> TradeRisk:
    """:param rules: the rules. :param side: +1 / -1. :param qty: contracts (> 0).
    :param price: entry fill price, points. :param plan: the gate's plan.
    :param at_ns: fill time. :return: the new trade.
    :raises RiskInputError: ``plan.stop_distance`` is not a positive number."""
    if not plan.stop_distance > 0.0:
        raise RiskInputError(f"entry plan stop distance {plan.stop_distance!r} must be > 0 "
                             "points; open trades only with a Decision's plan")
    stop = rules.round_tick(price - side * plan.stop_distance)
    return TradeRisk(side, qty, qty, price, plan.stop_distance, stop, price, plan.regime,
                     plan.allowed, at_ns)


def apply_fill(rules: RiskRules, trade: TradeRisk | None, quantity: int, price: float,
               plan: EntryPlan | None, at_ns: int) -> TradeRisk | None:
    """Book a fill into the trade record.

    :param rules: the rules.
    :param trade: the open trade, ``None`` when flat.
    :param quantity: signed contracts filled.
    :param price: fill price, points.
    :param plan: the plan of the decision that opened (or flipped into) the trade; needed when
        the fill opens one.
    :param at_ns: fill time, ns since the epoch.
    :return: the trade after the fill, ``None`` when flat.
    :raises RiskInputError: a fill opens a trade without a plan, or the price is not positive.
    """
    if quantity == 0:
        return trade
    if not price > 0.0:
        raise RiskInputError(f"fill price {price!r} must be a positive number of points")
    before = trade.side * trade.qty if trade is not None else 0
    after = before + quantity
    if after == 0:
        return None
    side = 1 if after > 0 else -1
    if trade is None or side != trade.side:  # opens, or flips into a new trade
        if plan is None:
            raise RiskInputError(f"a fill of {quantity:+d} at {price} opens a {side:+d} trade "
                                 "without an entry plan; pass the Decision's plan")
        return open_trade(rules, side, abs(after), price, plan, at_ns)
    qty = abs(after)
    if qty < trade.qty:
        return trade._replace(qty=qty)
    # more fills of the same entry (a partial fill completing): average the price, re-place the
    # initial stop R from it, never loosening the stop already held
    entry = (trade.entry_price * trade.qty + price * (qty - trade.qty)) / qty
    fresh = rules.round_tick(entry - side * trade.r_points)
    stop = max(trade.stop, fresh) if side > 0 else min(trade.stop, fresh)
    extreme = max(trade.extreme, price) if side > 0 else min(trade.extreme, price)
    return trade._replace(qty=qty, peak_qty=max(trade.peak_qty, qty), entry_price=entry,
                          stop=stop, extreme=extreme)


def bar_exits(rules: RiskRules, trade: TradeRisk, open_: float, high: float,
              low: float) -> tuple[Exit, ...]:
    """Exits the bar's path triggers (module doc, "Inside a bar").

    :param rules: the rules.
    :param trade: the open trade.
    :param open_: bar open, points.
    :param high: bar high, points.
    :param low: bar low, points.
    :return: exits in fill order; empty when nothing triggered.
    """
    s, q, stop = trade.side, trade.qty, trade.stop
    if s * (open_ - stop) <= 0.0:
        return (Exit(-s * q, open_, "stop_gap", -1),)
    adverse, favourable = (low, high) if s > 0 else (high, low)
    out: list[Exit] = []
    n_levels = len(rules.take_profit_done)
    level = 0
    while level < n_levels:  # levels the open already passed
        rest = rules.remaining_after(trade.peak_qty, level)
        if q > rest:
            if s * (open_ - trade.take_profit_price(rules, level)) < 0.0:
                break
            out.append(Exit(-s * (q - rest), open_, "take_profit_gap", level))
            q = rest
        level += 1
    if q == 0:
        return tuple(out)
    if s * (adverse - stop) <= 0.0:
        out.append(Exit(-s * q, stop, "stop", -1))
        return tuple(out)
    while level < n_levels:
        rest = rules.remaining_after(trade.peak_qty, level)
        if q > rest:
            price = trade.take_profit_price(rules, level)
            if s * (favourable - price) < 0.0:
                break
            out.append(Exit(-s * (q - rest), price, "take_profit", level))
            q = rest
        level += 1
    return tuple(out)


def trail(rules: RiskRules, trade: TradeRisk, high: float, low: float, atr: float,
          trending: bool) -> TradeRisk:
    """Carry the extreme and, in a confirmed trend, the trailing stop to the next bar.

    :param rules: the rules.
    :param trade: the open trade.
    :param high: bar high, points.
    :param low: bar low, points.
    :param atr: the bar's atr_14, points (NaN: the stop stays).
    :param trending: :func:`mia.risk.sizing.trend_confirmed` at this bar.
    :return: the trade with the new extreme and stop (the same record if nothing moved).
    """
    s = trade.side
    extreme = max(trade.extreme, high) if s > 0 else min(trade.extreme, low)
    stop = trade.stop
    if trending and atr > 0.0:
        level = rules.round_tick(extreme - s * rules.cfg.trail_atr * atr)
        stop = max(stop, level) if s > 0 else min(stop, level)
    if extreme == trade.extreme and stop == trade.stop:
        return trade
    return trade._replace(extreme=extreme, stop=stop)
