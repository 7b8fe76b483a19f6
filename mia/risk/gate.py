"""The pre-trade check: policy target + book + bar features + trading state -> the order.

This is the one function the backtest and the executor both call (design.md section 2, "one
risk gate"). It is pure: it reads its arguments, changes nothing, and returns a
:class:`Decision` with the order and every reason behind it.

**Target.** The policy gives ``target`` in [-1, 1]: direction and the fraction of the size the
rules allow. Flat, a non-zero target opens a trade of ``floor(|target| x allowed)`` contracts,
``allowed`` = min(risk sizing, notional cap, ``max_contracts``) (:mod:`mia.risk.sizing`). In a
trade the size is set at entry: the same target holds the position, a smaller one reduces it to
``floor(|target| x allowed at entry)``, zero or the other sign closes it (and, while RUNNING,
opens the other side as a new trade). There is no scale-in: R and the take-profit ladder belong
to the entry, re-sizing every bar as ATR moves would churn, and re-buying after a take-profit
would undo it.

**Order of the rules.**

1. HALTED: the order to go flat, nothing else.
2. In a trade: an exit rule (:mod:`mia.risk.exits`) closes it; otherwise the policy may reduce
   it; a strong imbalance in its favour while in profit takes the next take-profit level now
   (the reference's "early partial exit on strong imbalance").
3. The notional / contract cap trims any position above it (leverage cuts apply to open trades).
4. An entry (from flat or on a flip) needs RUNNING, an ATR to size the stop, no exit rule that
   would fire for the new side, and at least one contract after the fraction.

So the result never increases |position| unless RUNNING, and never exceeds ``max_contracts``.
"""

from __future__ import annotations

import math
import operator
from typing import Literal, NamedTuple

from mia.risk.exits import exit_reasons
from mia.risk.inputs import RISK_FEATURES, RiskFeatures
from mia.risk.limits import position_cap
from mia.risk.reasons import HALTED, REDUCING, SKIP, Reason
from mia.risk.rules import RiskRules, floor_size
from mia.risk.sizing import classify_regime, leverage, size_entry
from mia.risk.state import Mode, RiskInputError
from mia.risk.stops import EntryPlan, TradeRisk

Action = Literal["none", "enter", "reduce", "exit", "flip", "flatten"]
_SKIPS = tuple(SKIP[n] for n in (*RISK_FEATURES, "cvar_loss"))


class Book(NamedTuple):
    """The book of one symbol at the decision.

    :param position: signed contracts held.
    :param equity: USD, marked at the decision bar's close.
    :param trade: the open trade's risk record (``None`` when flat).
    """

    position: int
    equity: float
    trade: TradeRisk | None = None


class Decision(NamedTuple):
    """What the gate allows.

    :param order: signed contracts to trade now; 0 = no order.
    :param target: the position after the order.
    :param action: ``none``, ``enter``, ``reduce``, ``exit``, ``flip`` or ``flatten``.
    :param mode: the trading state the decision was taken under.
    :param allowed: contracts a new trade could take at this bar (0 when no entry was sized).
    :param cap: the largest |position| allowed at this bar (notional and ``max_contracts``), for
        the trade the order leaves open.
    :param regime: the confirmed regime (``None``: none confirmed).
    :param plan: the entry plan when the order opens a trade (pass it to the fill).
    :param reasons: why, in rule order; unavailable features last.
    """

    order: int
    target: int
    action: Action
    mode: Mode
    allowed: int
    cap: int
    regime: str | None
    plan: EntryPlan | None
    reasons: tuple[Reason, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        """:return: the reasons as sentences (for the journal and the log)."""
        return tuple(r.text for r in self.reasons)


def _invalid(target: float, book: Book, price: float, pos: int) -> str | None:
    if not -1.0 <= target <= 1.0:  # NaN fails both comparisons
        return f"policy target {target!r} must be a number in [-1, 1]"
    if not (book.equity > 0.0 and book.equity < math.inf):
        return f"equity {book.equity!r} must be finite and > 0 USD"
    if not (price > 0.0 and price < math.inf):
        return f"price {price!r} must be finite and > 0 points"
    trade = book.trade
    if pos == 0:
        return None if trade is None else "flat book with an open trade record; book the fills"
    if trade is None or trade.side * trade.qty != pos:
        held = "none" if trade is None else f"{trade.side * trade.qty:+d}"
        return (f"position {pos:+d} but the trade record holds {held}; report every fill "
                "through apply_fill / RiskEngine.on_fill (or adopt the position)")
    return None


def check(rules: RiskRules, target: float, book: Book, price: float, features: RiskFeatures,
          mode: Mode) -> Decision:
    """Turn a policy target into the order the risk rules allow.

    :param rules: the contract's rules.
    :param target: the policy's desired position as a fraction of the allowed size, [-1, 1].
    :param book: position, equity and the open trade's record.
    :param price: reference price of the decision (the bar's close), points.
    :param features: the bar's raw risk features.
    :param mode: the trading state (``RiskEngine.mode`` or ``TradingState.mode``).
    :return: the decision.
    :raises RiskInputError: a NaN or out-of-range target, a non-positive equity or price, or a
        book whose position and trade record disagree: no order is to be placed.
    """
    pos = operator.index(book.position)
    problem = _invalid(target, book, price, pos)
    if problem is not None:
        raise RiskInputError(f"risk gate ({rules.symbol}): {problem}; no order placed")
    if mode is Mode.HALTED:
        return Decision(-pos, 0, "flatten" if pos else "none", mode, 0, 0, None, None, (HALTED,))
    f = features
    out: list[Reason] = []
    regime = classify_regime(rules, f)
    trade = book.trade
    # an unconfirmed bar is no evidence the trade's regime ended: it keeps that leverage
    held_regime = trade.entry_regime if regime is None and trade is not None else regime
    lev = leverage(rules, f, held_regime, out, held=held_regime != regime)
    cap = position_cap(rules, book.equity, price, lev)
    side = (pos > 0) - (pos < 0)
    want = (target > 0.0) - (target < 0.0)
    new, allowed, plan = 0, 0, None
    if trade is not None:  # _invalid holds it equal to the position: side != 0
        keep = abs(pos)
        if exit_reasons(rules, side, f, regime, trade.entry_regime, out):
            keep = 0
        elif want == side:
            keep = _in_trade(rules, trade, target, price, f, keep, out)
        else:
            keep = 0
        if keep > cap:
            keep = cap
            out.append(Reason("cap.trim", cap))
        new = side * keep
    if want and want != side and new == 0:
        if mode is Mode.RUNNING:
            if held_regime != regime:
                lev = leverage(rules, f, regime, out)
                cap = position_cap(rules, book.equity, price, lev)
            new, allowed, plan = _enter(rules, want, abs(target), book.equity, price, f, regime,
                                        lev, out)
        else:
            out.append(REDUCING)
    out.extend(s for v, s in zip(f, _SKIPS, strict=True) if v != v)
    order = new - pos
    action: Action = ("none" if order == 0 else "enter" if pos == 0 else "exit" if new == 0
                      else "flip" if new * pos < 0 else "reduce")
    return Decision(order, new, action, mode, allowed, cap, regime, plan, tuple(out))


def _in_trade(rules: RiskRules, trade: TradeRisk, target: float, price: float, f: RiskFeatures,
              keep: int, out: list[Reason]) -> int:
    # policy on the trade's side: hold, or reduce to its fraction of the size allowed at entry
    by_policy = floor_size(abs(target) * trade.allowed)
    if by_policy < keep:
        keep = by_policy
        out.append(Reason("reduce.policy", target, trade.allowed))
    elif by_policy > keep:
        out.append(Reason("hold.no_scale_in", limit=trade.allowed))
    s = trade.side
    favour = s * f.orderflow_imbalance
    winning = s * (price - trade.entry_price) > 0.0
    if keep and winning and favour > rules.cfg.early_take_profit_imbalance:
        level = trade.next_level(rules)
        if level is not None:
            rest = rules.remaining_after(trade.peak_qty, level)
            if rest < keep:
                keep = rest
                out.append(Reason("tp.early", favour, rules.cfg.early_take_profit_imbalance))
    return keep


def _enter(rules: RiskRules, side: int, fraction: float, equity: float, price: float,
           f: RiskFeatures, regime: str | None, lev: float,
           out: list[Reason]) -> tuple[int, int, EntryPlan | None]:
    sz = size_entry(rules, equity, price, f, lev, out)
    allowed = sz.contracts
    if allowed == 0 or exit_reasons(rules, side, f, regime, regime, out, entry=True):
        return 0, allowed, None
    qty = floor_size(fraction * allowed)
    if qty == 0:
        out.append(Reason("size.zero", fraction, allowed))
        return 0, allowed, None
    return side * qty, allowed, EntryPlan(sz.stop_distance, regime, allowed, sz.risk)
