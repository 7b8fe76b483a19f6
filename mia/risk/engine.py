"""The per-bar risk loop of one symbol: the calls the backtest and the executor make, in order.

:class:`RiskEngine` owns the risk state (trading holds, breakers, equity track, the open trade)
and calls the pure functions of :mod:`mia.risk` in one fixed order, so the backtest and the live
executor cannot disagree about it. Per bar, at its close::

    exits, events = engine.on_bar(now_ns=..., open=..., high=..., low=..., close=...,
                                  features=tap.read(raw_row), latency_ms=last_latency)
    for e in exits:                            # stops / take-profits inside this bar
        fill e (backtest: at e.price; executor: broker) -> engine.on_fill(qty, price, now_ns=...)
    events += engine.on_equity(now_ns=..., trade_date=..., equity=equity_marked_at_close)
    decision = engine.decide(target, position=..., equity=..., price=close, features=...)
    send decision.order -> fills -> engine.on_fill(qty, price, now_ns=...)  # plan remembered

Between bars the executor calls :meth:`heartbeat` (stale feed) and, for every bar its inline
validator rejected, :meth:`on_fault` instead of :meth:`on_bar`. People act through :meth:`kill`
and :meth:`reset`. Every call returns the :class:`~mia.risk.state.RiskEvent` records to
journal. Time always comes in (``now_ns``: ns since the epoch, UTC; the bar's ``ts`` in a
backtest); nothing here reads a clock. :mod:`mia.risk.snapshot` carries the state through a
restart as plain JSON-able data.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Final, NamedTuple

from mia.risk import breakers as brk
from mia.risk.cvar import TradeRecord
from mia.risk.gate import Book, Decision, check
from mia.risk.inputs import RiskFeatures
from mia.risk.limits import EquityTrack, rebase_day, rebase_peak, start_track, update_track
from mia.risk.rules import RiskRules
from mia.risk.sizing import classify_regime, trend_confirmed
from mia.risk.state import (
    AUTO,
    Mode,
    Release,
    RiskEvent,
    RiskInputError,
    TradingState,
    engage,
    kill,
    release,
)
from mia.risk.stops import EntryPlan, Exit, TradeRisk, apply_fill, bar_exits, trail

_RELEASE: Final[dict[str, Release]] = {
    "loss": "trade_date", "volatility": "cooldown", "latency": "cooldown",
    "data_quality": "person", "stale_feed": "cooldown",
}
_WHY: Final[dict[str, str]] = {
    "loss": "loss {value:.2%} of start-of-day equity > loss_breaker {limit:.2%}",
    "volatility": "true range {value:.4g} points > {limit:.4g} (volatility_breaker_atr x atr_14)",
    "latency": "tick-to-decision {value:.1f} ms > latency_breaker_ms {limit:g}, "
               "latency_breaches bars in a row",
    "data_quality": "{value:g} consecutive inline-validation faults (data_fault_limit "
                    "{limit:g}), last {note}; reset the validator and this breaker once the "
                    "data is understood",
    "stale_feed": "no bar for {value:.1f} s > stale_feed_seconds {limit:g}",
}


class BarRisk(NamedTuple):
    """What :meth:`RiskEngine.on_bar` found.

    :param exits: stop / take-profit exits inside the bar, in fill order.
    :param events: hold changes to journal.
    """

    exits: tuple[Exit, ...]
    events: tuple[RiskEvent, ...]


class RiskEngine:
    """Risk state of one symbol's book, advanced bar by bar (module doc for the call order).

    :param rules: the contract's rules.
    :param equity: starting equity, USD.
    :param trade_date: the CME trade date of the first bar.
    :param now_ns: start time, ns since the epoch (the stale-feed clock starts here).
    """

    def __init__(self, rules: RiskRules, *, equity: float, trade_date: date,
                 now_ns: int) -> None:
        self.rules = rules
        self.state = TradingState()
        self.track: EquityTrack = start_track(trade_date, equity)
        self.breakers = {n: brk.BreakerState(n) for n in rules.cfg.BREAKERS}
        self.trade: TradeRisk | None = None
        self.plan: EntryPlan | None = None  # the last entry plan, until a fill opens a trade
        self.last_close = math.nan
        self.last_atr = math.nan
        self.feed_ns = now_ns  # last bar, or the session (re)opening, for the stale-feed clock
        self.session_open = True
        c = rules.cfg
        self.record = TradeRecord(c.cvar_trades, c.cvar_alpha, c.cvar_min_trades)

    @property
    def mode(self) -> Mode:
        """:return: the trading state."""
        return self.state.mode

    @property
    def cvar_loss(self) -> float:
        """:return: the CVaR loss of the book's last closed trades, equity fraction
        (:mod:`mia.risk.cvar`; NaN until ``risk.cvar_min_trades`` have closed)."""
        return self.record.cvar_loss

    # --- bars and faults ------------------------------------------------------------------

    def on_bar(self, *, now_ns: int, open: float, high: float, low: float, close: float,
               features: RiskFeatures, latency_ms: float | None = None) -> BarRisk:
        """Advance by one accepted bar: breakers, then stops and take-profits of the open trade.

        :param now_ns: when the bar arrived (executor) or its ``ts`` (backtest), ns.
        :param open: bar open, points.
        :param high: bar high, points.
        :param low: bar low, points.
        :param close: bar close, points.
        :param features: the bar's raw risk features.
        :param latency_ms: tick-to-decision latency of the previous decision (executor), or
            ``None`` when not measured (backtest).
        :return: exits to fill and events to journal.
        :raises RiskInputError: a non-finite, non-positive or inverted bar (the inline
            validator lets none through).
        """
        if not (0.0 < low <= min(open, close) and max(open, close) <= high < math.inf):
            raise RiskInputError(f"bar open={open!r} high={high!r} low={low!r} close={close!r} "
                                 "is not a valid bar; validate bars before the risk engine")
        c = self.rules.cfg
        ev: list[RiskEvent] = []
        self._observe("data_quality", False, c.data_fault_limit, None, now_ns, ev)
        self._observe("stale_feed", False, 1, c.breaker_cooldown_bars, now_ns, ev)
        pc = self.last_close
        tr = max(high, pc) - min(low, pc) if pc == pc else high - low
        ref = c.volatility_breaker_atr * self.last_atr
        self._observe("volatility", tr > ref, 1, c.breaker_cooldown_bars, now_ns, ev,
                      value=tr, limit=ref)
        if latency_ms is not None:
            self._observe("latency", latency_ms > c.latency_breaker_ms, c.latency_breaches,
                          c.breaker_cooldown_bars, now_ns, ev, value=latency_ms,
                          limit=c.latency_breaker_ms)
        exits: tuple[Exit, ...] = ()
        trade = self.trade
        if trade is not None:
            exits = bar_exits(self.rules, trade, open, high, low)
            trending = trend_confirmed(self.rules, features,
                                       classify_regime(self.rules, features))
            self.trade = trail(self.rules, trade, high, low, features.atr_14, trending)
        self.last_close = close
        if features.atr_14 > 0.0:
            self.last_atr = features.atr_14
        self.feed_ns = now_ns
        return BarRisk(exits, tuple(ev))

    def on_fault(self, *, now_ns: int, code: str) -> tuple[RiskEvent, ...]:
        """Count a bar the inline validator rejected (``Fault.code``).

        :param now_ns: when, ns since the epoch.
        :param code: the fault code, e.g. ``jump``.
        :return: events (the data-quality trip once ``data_fault_limit`` come in a row).
        """
        ev: list[RiskEvent] = []
        b = self.breakers["data_quality"]
        self._observe("data_quality", True, self.rules.cfg.data_fault_limit, None, now_ns, ev,
                      value=b.streak + 1, limit=self.rules.cfg.data_fault_limit, note=code)
        return tuple(ev)

    def heartbeat(self, *, now_ns: int, session_open: bool) -> tuple[RiskEvent, ...]:
        """Check the feed between bars (call it from the loop's idle timer).

        :param now_ns: now, ns since the epoch.
        :param session_open: whether the exchange session is open (no bars are due in the
            daily maintenance break or the weekend); the clock restarts when it opens.
        :return: events (the stale-feed trip).
        """
        if not session_open:
            self.session_open = False
            return ()
        if not self.session_open:
            self.session_open, self.feed_ns = True, now_ns
        age = (now_ns - self.feed_ns) / 1e9
        if age <= self.rules.cfg.stale_feed_seconds:
            return ()
        ev: list[RiskEvent] = []
        self._observe("stale_feed", True, 1, self.rules.cfg.breaker_cooldown_bars, now_ns, ev,
                      value=age, limit=self.rules.cfg.stale_feed_seconds)
        return tuple(ev)

    # --- equity, decisions, fills ---------------------------------------------------------

    def on_equity(self, *, now_ns: int, trade_date: date, equity: float) -> tuple[RiskEvent, ...]:
        """Mark equity at the bar close: trade-date roll, loss breaker, daily loss, drawdown.

        :param now_ns: when, ns since the epoch.
        :param trade_date: the bar's CME trade date (17:00 ET rolls it; the caller knows the
            calendar).
        :param equity: USD marked at the close, fills of this bar included.
        :return: events.
        """
        c = self.rules.cfg
        ev: list[RiskEvent] = []
        before = self.track
        track = self.track = update_track(before, trade_date, equity)
        if track.trade_date != before.trade_date:
            why = f"trade date rolled to {trade_date.isoformat()}"
            self.breakers["loss"] = brk.reset(self.breakers["loss"])
            for cause in ("breaker.loss", "limit.daily_loss"):
                self._apply(release(self.state, cause, why=why, at_ns=now_ns), ev)
        loss = track.daily_loss
        self._observe("loss", loss > c.loss_breaker, 1, None, now_ns, ev, value=loss,
                      limit=c.loss_breaker)
        if loss >= c.daily_loss_limit:
            self._apply(engage(self.state, "limit.daily_loss", Mode.HALTED, "trade_date",
                               why=f"daily loss {loss:.2%} of start-of-day equity "
                                   f"{track.day_start:,.2f} >= daily_loss_limit "
                                   f"{c.daily_loss_limit:.2%}", at_ns=now_ns), ev)
        if track.drawdown >= c.max_drawdown:
            self._apply(engage(self.state, "limit.max_drawdown", Mode.HALTED, "person",
                               why=f"drawdown {track.drawdown:.2%} from peak "
                                   f"{track.peak:,.2f} >= max_drawdown {c.max_drawdown:.2%}",
                               at_ns=now_ns), ev)
        return tuple(ev)

    def decide(self, target: float, *, position: int, equity: float, price: float,
               features: RiskFeatures) -> Decision:
        """The pre-trade check (:func:`mia.risk.gate.check`) on the engine's state.

        :param target: policy target in [-1, 1].
        :param position: signed contracts held (must match the fills reported).
        :param equity: USD at the close.
        :param price: the bar's close, points.
        :param features: the bar's raw risk features; a NaN ``cvar_loss`` (a
            :class:`~mia.risk.inputs.FeatureTap` row) reads the engine's own
            (:attr:`cvar_loss`).
        :return: the decision; its plan is kept for the fill that opens the trade.
        """
        if features.cvar_loss != features.cvar_loss:
            features = features._replace(cvar_loss=self.record.cvar_loss)
        d = check(self.rules, target, Book(position, equity, self.trade), price, features,
                  self.state.mode)
        if d.plan is not None:
            self.plan = d.plan
        return d

    def on_fill(self, quantity: int, price: float, *, now_ns: int,
                plan: EntryPlan | None = None) -> None:
        """Book a fill (entries, exits, stops, take-profits, flattening alike).

        :param quantity: signed contracts filled.
        :param price: fill price, points.
        :param now_ns: fill time, ns since the epoch.
        :param plan: the entry plan; default the last decision's.
        """
        before = self.trade
        self.trade = apply_fill(self.rules, before, quantity, price, plan or self.plan, now_ns)
        self.record.on_fill(before, self.trade, quantity, price, self.rules.multiplier,
                            self.track.last)
        if self.trade is not None and (before is None or before.side != self.trade.side):
            self.plan = None  # consumed: a later opening fill needs a new decision

    # --- people ---------------------------------------------------------------------------

    def kill(self, *, by: str, why: str, now_ns: int) -> RiskEvent | None:
        """Engage the kill switch (signal, file or HTTP in the executor): HALTED, latched.

        :param by: who or what pulled it.
        :param why: the reason.
        :param now_ns: when.
        :return: the event, ``None`` when it was already engaged.
        """
        self.state, event = kill(self.state, by=by, why=why, at_ns=now_ns)
        return event

    def reset(self, cause: str, *, by: str, why: str, now_ns: int) -> RiskEvent:
        """A person releases a hold (and resets what it measured).

        Releasing ``limit.max_drawdown`` restarts the peak at the current equity and
        ``limit.daily_loss`` / ``breaker.loss`` the day, or they would trip again at the next
        mark; ``breaker.*`` re-arms the breaker. After ``breaker.data_quality`` also reset the
        inline validator (``InlineValidator.reset``), or it keeps rejecting.

        :param cause: the hold, e.g. ``kill_switch`` (see :attr:`state` ``.holds``).
        :param by: the person.
        :param why: the reason.
        :param now_ns: when.
        :return: the release event.
        :raises RiskInputError: no such hold, or ``by`` / ``why`` missing or ``risk``.
        """
        if by.strip() == AUTO:
            raise RiskInputError(f"by={AUTO!r} is reserved for automatic releases; give a name")
        if self.state.held(cause) is None:
            active = ", ".join(h.cause for h in self.state.holds) or "none"
            raise RiskInputError(f"no hold {cause!r} to reset; active holds: {active}")
        self.state, event = release(self.state, cause, why=why, at_ns=now_ns, by=by)
        if event is None:  # held was checked above, so release always reports it
            raise RiskInputError(f"hold {cause!r} vanished during its reset")
        if cause.startswith("breaker."):
            name = cause.removeprefix("breaker.")
            self.breakers[name] = brk.reset(self.breakers[name])
        if cause in ("limit.daily_loss", "breaker.loss"):
            self.track = rebase_day(self.track)
        elif cause == "limit.max_drawdown":
            self.track = rebase_peak(self.track)
        return event

    # --- internals ------------------------------------------------------------------------

    def _apply(self, result: tuple[TradingState, RiskEvent | None], ev: list[RiskEvent]) -> None:
        self.state, event = result
        if event is not None:
            ev.append(event)

    def _observe(self, name: str, bad: bool, trip_after: int, cooldown: int | None,
                 at_ns: int, ev: list[RiskEvent], *, value: float = math.nan,
                 limit: float = math.nan, note: str = "") -> None:
        old = self.breakers[name]
        new, change = brk.observe(old, bad, trip_after=trip_after, cooldown=cooldown,
                                  at_ns=at_ns)
        if new is old:
            return
        self.breakers[name] = new
        cause = f"breaker.{name}"
        if change == "trip":
            why = _WHY[name].format(value=value, limit=limit, note=note)
            self._apply(engage(self.state, cause, self.rules.breaker_modes[name],
                               _RELEASE[name], why=why, at_ns=at_ns), ev)
        elif change == "reset":
            self._apply(release(self.state, cause, at_ns=at_ns,
                                why=f"{cooldown} clean bars after the trip"), ev)
