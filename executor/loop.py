"""The live loop: one thread, one bar at a time, a small state machine (issue 7, item 1).

States: STARTING (recover, warm) -> RUNNING <-> REDUCING (risk-reducing orders only) ->
HALTED (flatten, nothing else) -> STOPPING. REDUCING and HALTED are the risk engines' trading
states (:mod:`mia.risk.state`); the loop reports the worst of its books.

Per accepted bar, in the order the durable state requires (executor.state) and the backtest
follows (mia.backtest.bundle_eval), so a replay decides what the backtest decided:

1. the broker fills last bar's orders at this open; each fill is journaled before the next poll;
   the shadow book's orders are filled here too, hypothetically (below);
2. the features of every slot advance (executor.slot), then each book's risk engine takes its
   stops and take-profits inside the bar (filled at their levels), told the previous tick's
   latency (live only: the latency breaker);
3. equity is marked at the close (limits, breakers);
4. production and canary decide, the router maps decisions to books, each book's risk engine
   turns its target into an order: journaled, then sent;
5. the bar is journaled, then acknowledged to the feed, and with it the cross symbol's bar that
   completed it (acked earlier, a crash would lose that close).

Books trade while they have capital (executor.router): under ``split`` at share 1 production
has none and does not trade; a book no model trades (or without capital) is closed between
bars. A change of a book's capital (a share step, a canary arriving or leaving) is a transfer,
not PnL: its risk engine's equity track moves by the amount (:meth:`Executor._rebase`), so a
share stepped 5 -> 15 -> 50 -> 100 % and back trips no loss limit. The capital each track holds
is kept beside it (``capital`` in the journaled and snapshotted risk state), so a share changed
while the process was down is a transfer too.

The ``shadow`` book (routing ``shadow``) never reaches the broker: its orders are journaled and
filled by the loop at the next bar's open (stops at their levels), priced by the paper broker's
cost model (``CostModel.fill_price``, commission as the fee), and booked through
``LiveState.commit_fill``: its positions, cash and hypothetical PnL are in the journal.

Between bars (after every bar, accepted, rejected or redelivered, and on every idle tick):
model swaps prepared by the watcher, the kill file, the trading state, snapshots, and the books
closed that nothing trades; the canary rollback rules after accepted bars. On an idle tick the
stale-feed clock runs while the CME session is open (executor.calendar.session_open), connected
or not. Bad bars never reach the features: the inline validator rejects them (a bar older than
the newest one journaled included: only the same message again is a redelivery) and the risk
engines of the trading books count the fault (data-quality breaker), as they count a malformed
feed message.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from threading import Event, Lock
from typing import Any

import numpy as np

from executor import release
from executor.broker.base import BrokerTimeout, Fill, Order, OrderRejected, client_id
from executor.calendar import session_open, trade_date
from executor.canary import CanaryWatch
from executor.feeds.base import BadMessage, FeedItem, Idle
from executor.journal import JournalError
from executor.router import Routing
from executor.rows import input_row
from executor.settings import RollbackSettings
from executor.slot import ModelSlot
from executor.state import (
    LiveState,
    alert_entry,
    alias_entry,
    bar_entry,
    model_entry,
    order_entry,
    risk_entry,
    state_entry,
)
from executor.stats import TickStats
from mia.envs.costs import CostModel
from mia.errors import MiaError, OperationalError
from mia.risk import RiskEngine, RiskInputError, RiskRules
from mia.risk import snapshot as risk_snapshot
from mia.risk.limits import start_track
from mia.validation.inline import InlineValidator

log = logging.getLogger("mia.executor")
SEVERITY = {"RUNNING": 0, "REDUCING": 1, "HALTED": 2}


@dataclass(kw_only=True)
class Services:
    """What the loop talks to (built by executor.__main__; tests pass their own).

    :param journal: the journal. :param broker: the broker. :param snapshots: snapshot store.
    :param metrics: ExecutorMetrics or None. :param alerter: Alerter or None.
    :param features: a FeatureLog or None. :param watcher: a ModelWatcher or None (local).
    """

    journal: Any
    broker: Any
    snapshots: Any
    metrics: Any = None
    alerter: Any = None
    features: Any = None
    watcher: Any = None


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Executor:
    """The loop (module docstring).

    :param symbol: the contract traded. :param cross_symbol: the other symbol, or None.
    :param params: MIA parameters (risk, env, executor).
    :param state: the recovered state (executor.recovery.recover).
    :param slots: ``production`` (required) and ``canary`` model slots.
    :param services: journal, broker, snapshots and optional metrics / alerts / watcher.
    :param routing: book routing. :param rollback: automatic canary rollback rules.
    :param capital: the account's capital, USD. :param kill_file: its existence kills.
    :param record: keep every decision in :attr:`stats` (replay).
    :param replay: stored bars (a replay, or ``feed.kind: replay``): a bar's own ``ts`` is "now"
        (the staleness check and the risk clock), so a replay decides as the backtest does.
    :param flatten_on_stop: :meth:`run` closes every book's position when it stops.
    :param history_bars: input rows kept for warming a new model (:meth:`history`); at least
        twice the slots' warm-up.
    :param snapshot_ns: ns between snapshots.
    :param wall_ns: the wall clock, ns since the epoch (live "now"; tests pass their own).
    :param perf_ns: the monotonic counter timing a tick, ns (tests pass their own).
    """

    def __init__(self, *, symbol: str, cross_symbol: str | None, params: Any, state: LiveState,
                 slots: dict[str, ModelSlot | None], services: Services, routing: Routing,
                 rollback: RollbackSettings, capital: float, kill_file: Path | None = None,
                 record: bool = False, replay: bool = False, flatten_on_stop: bool = False,
                 history_bars: int = 0, snapshot_ns: int = 60_000_000_000,
                 wall_ns: Callable[[], int] = time.time_ns,
                 perf_ns: Callable[[], int] = time.perf_counter_ns,
                 release_dir: Path | None = None) -> None:
        if slots.get("production") is None:
            raise OperationalError("executor: no production model; set the production alias "
                                   "or pass a local bundle")
        self.symbol, self.cross = symbol, cross_symbol
        self.params, self.state, self.slots = params, state, dict(slots)
        self.svc, self.routing, self.capital = services, routing, capital
        self.release_dir = release_dir  # where `python -m executor release` writes (release.py)
        self._refused: dict[str, str] = {}  # book -> the risk gate's last refusal
        self._cvar_high: set[str] = set()  # books whose trades' CVaR is above the cut
        self._unsent: dict[str, Order] = {}  # journaled orders whose submit timed out
        self.kill_file, self.record = kill_file, record
        self._wall_ns, self._perf_ns = wall_ns, perf_ns
        c = params.env
        self.costs = CostModel.from_config(_contract(symbol), c)
        self.mult = _contract(symbol).multiplier
        self.rules = RiskRules.from_config(params.risk, spec=_contract(symbol),
                                           regime_thresholds=params.features.regime_thresholds)
        self.engines: dict[str, RiskEngine] = state.restore_engines({symbol: self.rules})
        # a jump must exceed the volatility breaker's multiple, or a real crash would be
        # rejected as bad data before the breaker sees it (docs/risk.md)
        r = params.risk
        self.validator = InlineValidator(max_staleness_s=r.stale_feed_seconds,
                                         max_jump_atr=2.0 * r.volatility_breaker_atr)
        # after a restart a bar older than the journal's newest is late, not new: the validator
        # judges it against that bar (its close is unknown: no jump check until the next one)
        self.validator.reset(state.last_bar_ns.get(symbol))
        self.replay, self.flatten_on_stop = replay, flatten_on_stop
        self.canary_watch = CanaryWatch(rules=rollback)
        self.stats = TickStats()
        self.phase = "STARTING"
        self.stop_event = Event()
        self._cross_close: dict[int, float] = {}
        self._cross_acks: list[tuple[int, Callable[[], None]]] = []  # (ts, ack), ts order
        self._pending: FeedItem | None = None
        self._ring: deque[tuple[int, np.ndarray]] = deque(
            maxlen=max(self._ring_size(), history_bars))
        self._ring_lock = Lock()
        self._seq = 0
        self._trades: dict[str, int] = {}
        self._canary_ms = 0.0
        self._snapshot_every, self._last_snapshot = snapshot_ns, 0
        self._bar_ns = state.last_bar_ns.get(symbol, 0)  # the last accepted bar's ts
        self._orphans = True  # check for a book nothing trades (a restart may leave one)
        self._bad_share: str | None = None  # the invalid share alerted last (_share)
        self._latency_ms: float | None = None  # the last accepted tick's, for the next on_bar
        # a start catches up on the bars published while the process was down (_catch_up)
        # until the first fresh one; a replay's clock is its bars': none is ever stale
        self._catching_up = not replay
        self._feed_lost: int | None = None  # when the feed lost its source (feed_down)
        # the capital each engine's equity track holds (_rebase); a risk state journaled
        # before it was recorded holds today's capital
        self._basis: dict[str, float] = {
            key: float(state.risk.get(key, {}).get("capital", self._capital(key.split("/")[0])))
            for key in self.engines}

    # --- lifecycle -------------------------------------------------------------------------

    def warm(self, items: Iterable[Any]) -> int:
        """Advance the slots' features over history bars (no trading). :return: bars used."""
        n = 0
        for event in items:
            if isinstance(event, FeedItem):
                for _, row in self._join(event):
                    self._advance(row)
                    n += 1
        for _, row in self._flush():
            self._advance(row)
            n += 1
        return n

    def run(self, feed: Iterable[Any]) -> TickStats:
        """Trade until the feed ends or :meth:`request_stop`; then stop gracefully
        (:meth:`shutdown`, flattening with ``flatten_on_stop``)."""
        # bundles, feature states and sessions live as long as the process: moved out of the
        # collector's generations, a collection no longer walks them inside a tick (p99)
        gc.collect()
        gc.freeze()
        self._set_phase(self._worst_mode(), "started")
        try:
            for event in feed:
                if self.stop_event.is_set():
                    break
                self.handle(event)
            for item, row in self._flush():
                self._tick(item, row)
        except JournalError as exc:  # the process stops (exit 2): say so where people look
            self._journal_lost(exc)
            raise
        self.shutdown(flatten=self.flatten_on_stop)
        return self.stats

    def _journal_lost(self, exc: JournalError) -> None:
        # a failed journal write latched the state HALTED (executor.state): nothing more can be
        # journaled, so the alert goes to the log, the metrics and the webhook only
        message = (f"the journal cannot be written ({exc}); trading stopped, the process exits. "
                   "Free the disk or fix the volume, then restart: recovery resumes from the "
                   "journal as it is")
        log.critical("emergency journal_error: %s", message)
        if self.svc.metrics is not None:
            self.svc.metrics.set_trading_state("HALTED")
        if self.svc.alerter is not None:
            from executor.alerts import Alert

            self.svc.alerter.send(Alert(level="emergency", code="journal_error",
                                        message=message, ts_ns=self._now_ns()))
            self.svc.alerter.flush(5.0)

    def request_stop(self) -> None:
        """Ask for a graceful stop (SIGTERM / SIGINT): no new orders after the current bar."""
        self.stop_event.set()

    def shutdown(self, flatten: bool = False) -> None:
        """Cancel working orders, optionally flatten (through the broker, journaled), take a
        final snapshot.

        :param flatten: send the order that closes each book's position.
        """
        self._set_phase("STOPPING", "stop requested")
        for book in ("production", "canary", "shadow"):
            self._cancel_working(book, "executor stopping")  # a fill meanwhile: on restart
        if flatten:
            for book in ("production", "canary"):
                q = self.state.position(book, self.symbol)
                if q:
                    ts = self._now_ns()
                    self._send(Order(self._order_id(ts, book, 9), self.symbol, -q, book,
                                     "flatten on stop", ts))
        self._snapshot(force=True)

    # --- events ----------------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        """One feed event: a bar, a bad message, or an idle tick."""
        if isinstance(event, Idle):
            self._between_bars(None)
            # the exchange's calendar says whether bars are due, not the connection: a feed
            # down in the session is as stale as a silent one, and the break and the weekend
            # are quiet whatever the connection (docs/executor.md, Known gaps)
            now = self._now_ns()
            is_open = session_open(now)
            for key, engine in self._trading_engines():
                self._journal_events(key, engine.heartbeat(now_ns=now, session_open=is_open))
            self._feed_link(event.connected, event.reason)
            return
        if isinstance(event, BadMessage):
            self._fault(event.code, f"{event.symbol} entry {event.source_id}: {event.reason}",
                        self._now_ns())
            self._between_bars(None)  # a storm of bad entries still sees the kill file
            return
        if self._feed_lost is not None:
            self._feed_link(True, "")
        for item, row in self._join(event):
            self._tick(item, row)

    def _feed_link(self, connected: bool, reason: str) -> None:
        # feed_down once when the source becomes unreachable, feed_restored when it answers
        # again (a bar, or an idle tick while connected); the stale-feed breaker judges the
        # silence itself, in the session only
        if not connected and self._feed_lost is None:
            self._feed_lost = self._now_ns()
            self.alert("critical", "feed_down", f"the feed cannot reach its source ({reason}); "
                       "reconnecting. No bar, no decision: in the CME session the stale-feed "
                       "breaker reduces after risk.stale_feed_seconds")
        elif connected and self._feed_lost is not None:
            down = (self._now_ns() - self._feed_lost) / 1e9
            self._feed_lost = None
            self.alert("info", "feed_restored", f"the feed reaches its source again after "
                       f"{down:.0f} s")

    def _join(self, item: FeedItem) -> list[tuple[FeedItem, np.ndarray]]:
        # The traded symbol's bar waits for the other symbol's bar of the same minute (the
        # cross features). A bar whose partner never comes is processed without it when the
        # next bar arrives: its cross features are NaN, so it does not trade (and says why).
        ready: list[tuple[FeedItem, np.ndarray]] = []
        if item.bar.symbol == self.cross:
            self._cross_close[item.ts_ns] = item.bar.close
            if item.ack is not None:  # acked with the traded bar it completes (_ack_cross)
                self._cross_acks.append((item.ts_ns, item.ack))
            if self._pending is not None and self._pending.ts_ns <= item.ts_ns:
                ready.append((self._pending, self._row_of(self._pending)))
                self._pending = None
            return ready
        if item.bar.symbol != self.symbol:
            if item.ack is not None:
                item.ack()
            return ready
        ready += self._flush()
        if self.cross is None or item.ts_ns in self._cross_close:
            ready.append((item, self._row_of(item)))
        else:
            self._pending = item
        return ready

    def _flush(self) -> list[tuple[FeedItem, np.ndarray]]:
        if self._pending is None:
            return []
        item, self._pending = self._pending, None
        return [(item, self._row_of(item))]

    def _row_of(self, item: FeedItem) -> np.ndarray:
        cross = self._cross_close.pop(item.ts_ns, None) if self.cross else None
        for stale in [ts for ts in self._cross_close if ts < item.ts_ns]:
            del self._cross_close[stale]
        return input_row(item.bar, cross)  # a new row: the ring keeps it

    def _advance(self, row: np.ndarray) -> None:
        for slot in self.slots.values():
            if slot is not None:
                slot.update(row)
        with self._ring_lock:
            self._seq += 1
            self._ring.append((self._seq, row))

    def history(self) -> tuple[int, np.ndarray]:
        """:return: (last row seq, a copy of the recent input rows) for warming a new slot."""
        with self._ring_lock:  # the loop waits for this copy of references only
            seq, rows = self._seq, [r for _, r in self._ring]
        return seq, np.array(rows) if rows else np.empty((0, 23))

    def _ring_size(self) -> int:
        warm = max((s.warmup for s in self.slots.values() if s is not None), default=0)
        return max(warm * 2 + 10, 1000)

    # --- one bar -----------------------------------------------------------------------------

    def _tick(self, item: FeedItem, row: np.ndarray) -> None:
        t0 = self._perf_ns()
        bar, ts = item.bar, item.ts_ns
        st, j, sym = self.state, self.svc.journal, self.symbol
        if st.seen(sym, ts) and st.redelivered(j, sym, ts, item.source_id):
            self._acked(item, ts)  # redelivered after a crash: processed already
            self._between_bars(ts)
            return
        atr = self._atr()
        now = ts if self.replay else self._now_ns()
        # mia_stage_seconds "validate" and "risk" (the engines' calls, summed; the journal and
        # broker calls between them are stages of their own): plain ints until the tick ends
        clock = time.perf_counter_ns
        t = clock()
        fault = self.validator.check(ts, bar.open, bar.high, bar.low, bar.close, bar.volume,
                                     now_ns=now, atr=atr)
        validate_ns = clock() - t
        if fault is not None and fault.code == "stale" and self._catching_up:
            # every other rule still holds for a backlog bar: judged as if it were fresh
            fault = self.validator.check(ts, bar.open, bar.high, bar.low, bar.close,
                                         bar.volume, now_ns=ts, atr=atr)
            if fault is None:
                self._catch_up(item, row, now)
                return
        if fault is not None:
            self._reject(item, fault.code, fault.message)
            return
        if self._catching_up:
            self._caught_up(ts, now)
        self._bar_ns = ts
        self._advance(row)
        self._broker_bar(bar)
        day = trade_date(ts)
        self._poll(ts, ref_price=bar.open)  # last bar's orders, filled at this open
        spread = (bar.extra or {}).get("bid_ask_spread")
        self._fill_shadow(ts, bar.open, spread)  # the shadow book's, hypothetically
        seq: dict[str, int] = {}
        equity: dict[str, float] = {}
        books = self._books()
        # the latency breaker judges the previous tick (mia.risk.engine.on_bar); a replay
        # passes none: the backtest it must equal measures none (test_replay_equals_backtest)
        latency = None if self.replay else self._latency_ms
        risk_ns = 0
        for book, slot_name in books:  # stops and take-profits inside the bar, then the marks
            engine = self._engine(book, day, ts)
            self._rebase(book, engine)
            feats = self.slots[slot_name].risk_features()  # type: ignore[union-attr]
            t = clock()
            risk = engine.on_bar(now_ns=ts, open=bar.open, high=bar.high, low=bar.low,
                                 close=bar.close, features=feats, latency_ms=latency)
            risk_ns += clock() - t
            self._journal_events(book, risk.events)
            for e in risk.exits:
                n = seq.get(book, 0)
                seq[book] = n + 1
                order = Order(client_id(sym, ts, book, n), sym, e.quantity, book, e.reason, ts)
                self._send(order, stop_level=e.price, spread=spread)
                self.stats.exits += 1
                self._poll(ts, ref_price=e.price)
            equity[book] = self._equity(book, bar.close)
            t = clock()
            marked = engine.on_equity(now_ns=ts, trade_date=day, equity=equity[book])
            risk_ns += clock() - t
            self._journal_events(book, marked)
        decisions = self._decide_all(ts)  # on the positions the exits left
        for book, slot_name in books:
            target = decisions.get(book)
            if target is None:
                continue
            engine = self.engines[f"{book}/{sym}"]
            feats = self.slots[slot_name].risk_features()  # type: ignore[union-attr]
            position = st.position(book, sym) + st.pending(book, sym)
            t = clock()
            try:
                d = engine.decide(target, position=position, equity=equity[book],
                                  price=bar.close, features=feats)
            except RiskInputError as exc:  # an alert, not a stop (mia.risk.state): no order
                risk_ns += clock() - t
                self._risk_refused(book, str(exc))
                continue
            risk_ns += clock() - t
            if book in self._refused:
                del self._refused[book]
            if self.record:
                self.stats.decisions.append((ts, book, int(d.target)))
            if d.order:
                n = seq.get(book, 0)
                seq[book] = n + 1
                self._send(Order(client_id(sym, ts, book, n), sym, int(d.order), book,
                                 d.action, ts))
        st.commit(j, bar_entry(sym, ts, item.source_id))
        self._acked(item, ts)
        self.stats.bars += 1
        m = self.svc.metrics
        if m is not None:  # observed with the tick (_after_bar); a rejected bar is no tick
            m.add_stage("validate", validate_ns * 1e-9)
            if books:  # no book traded: no risk engine ran
                m.add_stage("risk", risk_ns * 1e-9)
        elapsed = self._perf_ns() - t0
        self.stats.latency_ns.append(elapsed)
        self._latency_ms = elapsed / 1e6
        self._after_bar(ts, bar.close, elapsed)

    def _catch_up(self, item: FeedItem, row: np.ndarray, now: int) -> None:
        # A bar published while the process was down (an in-session restart): too old to
        # decide on, and no fault either (the feed is fine, this process was away). It
        # advances the features and the broker's fills as every bar does and is journaled and
        # acked; no stop, decision or order uses its price. The first fresh bar ends the
        # catch-up; a feed that stays stale trips the stale-feed breaker meanwhile.
        ts = item.ts_ns
        if self.stats.backlog == 0:
            self.alert("info", "backlog", f"catching up on the bars published while the "
                       f"executor was down, from {_iso(ts)} ({(now - ts) / 1e9:.0f} s old); "
                       "no decision until a bar is fresher than risk.stale_feed_seconds")
        self.stats.backlog += 1
        self._bar_ns = ts
        self._advance(row)
        self._broker_bar(item.bar)
        self._poll(ts, ref_price=item.bar.open)
        self.state.commit(self.svc.journal, bar_entry(self.symbol, ts, item.source_id))
        self._acked(item, ts)
        self._between_bars(ts)

    def _caught_up(self, ts: int, now: int) -> None:
        self._catching_up = False
        if self.stats.backlog:
            self.alert("info", "backlog", f"caught up: {self.stats.backlog} bars published while "
                       f"the executor was down advanced the features without trading; trading "
                       f"resumes at {_iso(ts)} ({(now - ts) / 1e9:.1f} s old)")

    def _risk_refused(self, book: str, why: str) -> None:
        # alerted when the reason changes, not on every bar it repeats
        if self._refused.get(book) != why:
            self._refused[book] = why
            self.alert("critical", "risk_input", f"{book}: the risk gate refused the decision "
                       f"({why}); no order for this book until it accepts one")

    def _reject(self, item: FeedItem, code: str, message: str) -> None:
        # a rejected bar reaches no feature, broker or decision; its fault counts, it is
        # journaled (never judged again) and acked, and the between-bars work runs as after any
        # bar: in a storm of bad bars the trading state, the kill file and snapshots go on
        ts = item.ts_ns
        self._fault(code, message, ts)
        self.state.commit(self.svc.journal, bar_entry(self.symbol, ts, item.source_id))
        self._acked(item, ts)
        self._between_bars(ts)

    def _fault(self, code: str, message: str, now_ns: int) -> None:
        # a rejected bar or a malformed feed message: counted by the trading books' engines
        # (data-quality breaker), journaled, alerted (rate-limited per code by the alerter)
        self.stats.faults += 1
        for key, engine in self._trading_engines():
            self._journal_events(key, engine.on_fault(now_ns=now_ns, code=code))
        self.state.commit(self.svc.journal, alert_entry("warning", f"data_{code}", message))
        if self.svc.metrics is not None:
            self.svc.metrics.data_fault(code)
        if self.svc.alerter is not None:
            from executor.alerts import Alert

            self.svc.alerter.send(Alert(level="warning", code="data_fault",
                                        message=f"{code}: {message}", ts_ns=self._now_ns()))

    def _acked(self, item: FeedItem, ts: int) -> None:
        # the traded bar is journaled: ack it, then the cross bars up to it (the close it used,
        # or ones whose traded bar never came)
        if item.ack is not None:
            item.ack()
        acks = self._cross_acks
        if acks:
            n = 0
            while n < len(acks) and acks[n][0] <= ts:
                acks[n][1]()
                n += 1
            del acks[:n]

    def _books(self) -> list[tuple[str, str]]:
        # (book, the slot whose features and decision it trades): the books that trade. A book
        # without capital does not (split at share 1: production); an engine at equity 0 is
        # refused by the risk gate (docs/executor.md, Known gaps)
        books = [("production", "production")] if self._capital("production") > 0 else []
        if self.slots.get("canary") is not None and self.routing.share > 0:
            if self.routing.mode == "split":
                books.append(("canary", "canary"))
            elif self.routing.mode == "shadow":
                books.append(("shadow", "canary"))
        return books

    def _trading_engines(self) -> list[tuple[str, RiskEngine]]:
        # the engines of the books that trade: an idle book's engine sees no bar, so it would
        # count stale feeds and data faults that no bar ever clears
        keys = (f"{book}/{self.symbol}" for book, _ in self._books())
        return [(k, self.engines[k]) for k in keys if k in self.engines]

    def _decide_all(self, ts: int) -> dict[str, float]:
        prod = (self._decide("production", "production") if self._capital("production") > 0
                else None)
        canary = None
        if self.slots.get("canary") is not None and self.routing.share > 0:
            book = "canary" if self.routing.mode == "split" else "production"
            canary = self._decide("canary", book if self.routing.mode != "shadow" else "shadow")
        out = self.routing.targets(0.0 if prod is None else prod, canary, ts)
        if prod is None:
            out.pop("production", None)
        return out

    def _decide(self, slot_name: str, book: str) -> float | None:
        slot = self.slots[slot_name]
        if slot is None or not slot.ready:
            return None
        t0 = self._perf_ns()
        try:
            d = slot.decide(self.state.position(book, self.symbol))
        except MiaError as exc:
            self.alert("warning", f"{slot_name}_decision_failed", str(exc))
            if slot_name == "canary":
                self.canary_watch.errors += 1
            return None
        if slot_name == "canary":
            self._canary_ms = (self._perf_ns() - t0) / 1e6
        return d.fraction

    def _engine(self, book: str, day: Any, ts: int) -> RiskEngine:
        key = f"{book}/{self.symbol}"
        if key not in self.engines:
            self._basis[key] = self._capital(book)
            self.engines[key] = RiskEngine(self.rules, equity=self._basis[key],
                                           trade_date=day, now_ns=ts)
        return self.engines[key]

    def _rebase(self, book: str, engine: RiskEngine) -> None:
        # A change of the book's capital (a share step, a canary arriving or leaving) moves
        # money between books: the equity track moves by the amount, or the next mark would
        # read a share stepped 5 -> 15 % as a 10 % loss of production's (loss breaker, daily
        # loss, drawdown) and a gain of the canary's.
        key = f"{book}/{self.symbol}"
        cap = self._capital(book)
        delta = cap - self._basis.get(key, cap)
        self._basis[key] = cap
        if abs(delta) <= 1e-9 * self.capital:
            return
        t = engine.track
        moved = t._replace(day_start=t.day_start + delta, peak=t.peak + delta,
                           last=t.last + delta)
        if moved.day_start <= 0.0 < moved.last:  # it lost more before today than it keeps
            moved = start_track(t.trade_date, moved.last)
        engine.track = moved
        if book == "canary":
            self.canary_watch.transfer(delta)
        log.info("%s book: capital %+.2f USD to %.2f (routing %s, canary share %g); its equity "
                 "track moves with it", book, delta, cap, self.routing.mode, self.routing.share)

    def _capital(self, book: str) -> float:
        shares = self.routing.capital(self.slots.get("canary") is not None)
        return self.capital * shares.get(book, 0.0)

    def _equity(self, book: str, price: float) -> float:
        p = self.state.books.get((book, self.symbol))
        cash, q = (0.0, 0) if p is None else (p.cash, p.quantity)
        return float(self._capital(book) + cash + q * price * self.mult)

    def _atr(self) -> float:
        f = self.slots["production"].risk_features()  # type: ignore[union-attr]
        return float(f.atr_14) if f.atr_14 == f.atr_14 else 0.0

    def _send(self, order: Order, *, stop_level: float | None = None,
              spread: float | None = None) -> None:
        st, j = self.state, self.svc.journal
        if not st.commit(j, order_entry(order)):
            return  # journaled before a crash: recovery resubmitted it
        if order.book == "shadow":  # never at the broker: filled by the loop
            if self.svc.metrics is not None:
                self.svc.metrics.order(order.book)
            if stop_level is not None:  # a stop the bar traded through: at its level, now
                self._shadow_fill(order, order.quantity, stop_level, order.created_ns, spread)
            return
        try:
            if stop_level is not None and hasattr(self.svc.broker, "fill_stop"):
                self.svc.broker.fill_stop(order, stop_level, order.created_ns, spread)
            else:
                self.svc.broker.submit(order)
        except OrderRejected as exc:
            st.commit(j, order_entry(order, "reject", str(exc)))
            self.alert("critical", "order_rejected", str(exc))
            return
        except BrokerTimeout as exc:
            # it may or may not have reached the broker: sent again between bars until the
            # broker answers (idempotent on client_id); a stop goes again as a market order
            self._unsent[order.client_id] = order
            self._execution_error(f"order {order.client_id} ({order.quantity:+d} "
                                  f"{order.symbol}, {order.reason}) timed out ({exc}); it is "
                                  "sent again between bars until the broker answers")
            return
        self._sent(order)

    def _broker_bar(self, bar: Any) -> None:
        try:
            self.svc.broker.on_bar(bar)
        except BrokerTimeout as exc:  # the broker did not see the bar: its fills come later
            self._execution_error(f"the broker did not take the {bar.symbol} bar of "
                                  f"{bar.ts:%Y-%m-%d %H:%M} ({exc}); orders due at it fill at "
                                  "a later bar")

    def _sent(self, order: Order) -> None:
        self.stats.orders += 1
        if self.svc.metrics is not None:
            self.svc.metrics.order(order.book)

    def _resend(self) -> None:
        # the orders whose submit timed out, while the journal still has them open (a cancel
        # or a fill meanwhile ends them); a repeat that reached the broker already is a no-op
        for cid, order in list(self._unsent.items()):
            if cid not in self.state.open_orders:
                del self._unsent[cid]
                continue
            try:
                self.svc.broker.submit(order)
            except BrokerTimeout:
                return  # still unreachable: the next time between bars
            except OrderRejected as exc:
                del self._unsent[cid]
                self.state.commit(self.svc.journal, order_entry(order, "reject", str(exc)))
                self.alert("critical", "order_rejected", str(exc))
                continue
            del self._unsent[cid]
            self._sent(order)
            log.info("order %s reached the broker on a retry", cid)

    def _execution_error(self, message: str) -> None:
        # a broker call that timed out: alerted (the alerter rate-limits it per code) and the
        # loop goes on; not a canary error (the broker is both books'; rollback.max_error_rate
        # judges the model's decisions)
        self.alert("critical", "execution_error", message)

    def _poll(self, ts: int, *, ref_price: float) -> None:
        # Journal each new fill (before the next poll confirms it), then tell its book's risk
        # engine, at the reference price the decision used (the open, or the stop's level) as
        # the backtest does; the broker's fill price carries the costs, booked in the cash.
        try:
            fills: list[Fill] = self.svc.broker.poll_fills()
        except BrokerTimeout as exc:  # nothing confirmed: the fills come with the next poll
            self._execution_error(f"poll for fills timed out ({exc}); they are booked at the "
                                  "next poll, at that poll's reference price")
            return
        for f in fills:
            before = {b: self.state.position(b, f.symbol) for b in ("production", "canary")}
            if not self.state.commit_fill(self.svc.journal, f, self._journaled_alert):
                continue
            self.stats.fills += 1
            book = next((b for b, q in before.items()
                         if self.state.position(b, f.symbol) != q), "production")
            if all(book != b for b, _ in self._books()):
                self._orphans = True  # a late fill after a rollback or a share step: closed
            engine = self.engines.get(f"{book}/{f.symbol}")
            if engine is not None:
                try:
                    engine.on_fill(f.quantity, ref_price, now_ns=ts)
                except RiskInputError as exc:  # a fill no decision planned (a hand trade)
                    self._risk_refused(book, f"fill {f.fill_id} ({f.quantity:+d} {f.symbol}) "
                                             f"has no trade plan: {exc}")
            after = self.state.position(book, f.symbol)
            if before[book] != 0 and (after == 0 or (after > 0) != (before[book] > 0)):
                self._trades[book] = self._trades.get(book, 0) + 1
                if engine is not None:
                    self._check_cvar(book, engine)
        if fills and self.svc.metrics is not None:
            self.svc.metrics.fill(len(fills))

    def _check_cvar(self, book: str, engine: RiskEngine) -> None:
        # a trade closed: the CVaR of the book's last trades (mia.risk.cvar) crossing the cut
        # is alerted once (the gate cuts leverage from the next decision), its return logged
        c, cvar = self.rules.cfg, engine.cvar_loss
        if cvar > c.cut_cvar_loss and book not in self._cvar_high:
            self._cvar_high.add(book)
            self.alert("critical", "cvar_limit", f"{book}: CVaR loss of its last "
                       f"{len(engine.record.returns)} trades is {cvar:.2%} of equity > "
                       f"risk.cut_cvar_loss {c.cut_cvar_loss:.0%}; leverage is cut to "
                       f"{c.cut_leverage:g}x. Review the model: a rollback or a retrain "
                       "(mia_retrain)")
        elif not cvar > c.cut_cvar_loss and book in self._cvar_high:
            self._cvar_high.discard(book)
            log.info("%s book: CVaR loss of its last trades is back to %.2f%% <= "
                     "risk.cut_cvar_loss; leverage by regime again", book, 100 * cvar)

    def _fill_shadow(self, ts: int, open_: float, spread: float | None) -> None:
        # the shadow book's orders sent before this bar fill at its open, as the paper broker
        # fills the others (executor.broker.paper: bars_left, created_ns < ts)
        for open_order in list(self.state.open_orders.values()):
            o = open_order.order
            if o.book == "shadow" and o.symbol == self.symbol and o.created_ns < ts:
                self._shadow_fill(o, o.quantity - open_order.filled, open_, ts, spread)

    def _shadow_fill(self, order: Order, quantity: int, ref: float, ts: int,
                     spread: float | None) -> None:
        # priced like the paper broker (the reference moved against the order, the commission
        # as the fee); the risk engine books it at the reference, as _poll does
        c = self.costs
        fill = Fill(f"shadow-{order.client_id}", order.client_id, order.symbol, quantity,
                    c.fill_price(ref, quantity, spread), abs(quantity) * c.commission_per_side,
                    ts)
        before = self.state.position("shadow", order.symbol)
        if not self.state.commit_fill(self.svc.journal, fill, self._journaled_alert):
            return
        self.stats.shadow_fills += 1
        engine = self.engines.get(f"shadow/{order.symbol}")
        if engine is not None:
            engine.on_fill(quantity, ref, now_ns=ts)
        after = self.state.position("shadow", order.symbol)
        if before != 0 and (after == 0 or (after > 0) != (before > 0)):
            self._trades["shadow"] = self._trades.get("shadow", 0) + 1
            if engine is not None:
                self._check_cvar("shadow", engine)
        book = self.state.books.get(("shadow", order.symbol))
        cash = 0.0 if book is None else book.cash
        log.info("shadow fill %+d %s at %.2f (%s): position %+d, hypothetical PnL %.2f USD "
                 "marked at the fill", quantity, order.symbol, fill.price, order.reason, after,
                 cash + after * fill.price * self.mult)

    # --- between bars ------------------------------------------------------------------------

    def _after_bar(self, ts: int, close: float, elapsed_ns: int) -> None:
        m = self.svc.metrics
        if m is not None:
            m.observe_tick(elapsed_ns / 1e9)
            m.bar()
            # production always: without capital it may still hold what is being closed
            for book in dict.fromkeys(["production", *(b for b, _ in self._books())]):
                eq = self._equity(book, close)
                m.set_book(book, self.state.position(book, self.symbol),
                           eq - self._capital(book), self._book_drawdown(book, eq))
        if self.svc.features is not None:
            self.svc.features.append(ts, self.slots["production"].raw_features())  # type: ignore[union-attr]
        self._check_canary(ts, close)
        self._between_bars(ts)

    def _book_drawdown(self, book: str, equity: float) -> float:
        engine = self.engines.get(f"{book}/{self.symbol}")
        return 0.0 if engine is None else float(engine.track.drawdown)

    def _between_bars(self, ts: int | None) -> None:
        self._apply_swaps()
        if self._unsent:
            self._resend()
        if self._orphans:
            self._close_orphans()
        if self.kill_file is not None and self.kill_file.exists():
            for book, engine in self.engines.items():
                event = engine.kill(by="kill_file", why=f"{self.kill_file} exists",
                                    now_ns=self._now_ns())
                if event is not None:
                    self._journal_events(book, (event,))
        if self.release_dir is not None:
            self._release(release.take(self.release_dir))
        self._set_phase(self._worst_mode(), "risk state")
        self._snapshot()

    def _release(self, request: release.ReleaseRequest | str | None) -> None:
        # a person's release request (executor.release): every book holding it, or none
        if request is None:
            return
        if isinstance(request, str):
            self.alert("warning", "release_refused", request)
            return
        done, refused = release.apply(request, self.engines, kill_file=self.kill_file,
                                      now_ns=self._now_ns())
        if refused is not None:
            self.alert("warning", "release_refused", f"{request.cause}: {refused}")
            return
        for key, event in done:
            self._journal_events(key, (event,))
        if request.cause == "breaker.data_quality":  # or the validator keeps rejecting
            self.validator.reset(self._bar_ns or None)
        self.alert("info", "hold_released", f"{request.cause} released by {request.by} in "
                   f"{', '.join(k for k, _ in done)}: {request.why}")

    def _check_canary(self, ts: int, close: float) -> None:
        if self.slots.get("canary") is None or self.routing.mode != "split" \
                or self.routing.share <= 0:
            return
        eq, cap = self._equity("canary", close), self._capital("canary")
        self.canary_watch.observe(equity=eq, decided=True, latency_ms=self._canary_ms,
                                  trades=self._trades.get("canary", 0))
        prod_cap = self._capital("production")  # 0 at share 1: production made nothing
        prod_return = self._equity("production", close) / prod_cap - 1.0 if prod_cap > 0 else 0.0
        why = self.canary_watch.verdict(equity=eq, capital=cap, production_return=prod_return)
        if why is not None:
            self.rollback(why)

    def rollback(self, why: str) -> None:
        """Stop the canary at once: share 0, its working orders cancelled, its position closed
        (a fill that still arrives is closed too), the alias cleared upstream.

        :param why: the reason (journaled, alerted, written to the registry).
        """
        st, j = self.state, self.svc.journal
        self._cancel_working("canary", "canary rollback")
        q = st.position("canary", self.symbol)
        if q:
            ts = self._now_ns()
            self._send(Order(self._order_id(ts, "canary", 8), self.symbol, -q, "canary",
                             "canary rollback", ts))
        self.routing = Routing(mode=self.routing.mode, share=0.0,
                               overlap_days=self.routing.overlap_days)
        st.commit(j, alias_entry("canary", None, 0.0, why))
        self.alert("critical", "canary_rollback", why)
        if self.svc.watcher is not None:
            self.svc.watcher.clear_canary(why)
        self.slots["canary"] = None
        self._orphans = True

    def _close_orphans(self) -> None:
        # A book that nothing trades has no stops and no decisions: close what it holds or will
        # hold. The canary's and the shadow's when no canary trades them (rolled back, swapped
        # out, not loaded after a restart, another routing), production's without capital.
        self._orphans = False
        trading = {book for book, _ in self._books()}
        st = self.state
        for book, why in (("production", "production has no capital (canary share 1)"),
                          ("canary", "no canary trades this book"),
                          ("shadow", "no canary trades this book")):
            if book in trading:
                continue
            q = st.position(book, self.symbol) + st.pending(book, self.symbol)
            if q:
                ts = self._now_ns()
                self._send(Order(self._order_id(ts, book, 7), self.symbol, -q, book,
                                 f"flatten: {why}", ts))

    def _cancel_working(self, book: str, why: str) -> None:
        # journal the cancel, then send it; a rejected cancel (filled meanwhile) is alerted,
        # and the fill is booked when it arrives
        st, j = self.state, self.svc.journal
        for cid, open_ in list(st.open_orders.items()):
            if open_.order.book != book:
                continue
            if st.commit(j, order_entry(open_.order, "cancel", why)) and book != "shadow":
                try:
                    self.svc.broker.cancel(cid)
                except OrderRejected as exc:
                    self.alert("warning", "cancel_rejected", str(exc))
                except BrokerTimeout as exc:  # a fill of it, if any, is booked (and closed)
                    self._execution_error(f"cancel of {cid} timed out ({exc}); if the order "
                                          "still fills, the fill is booked and the book's "
                                          "orphan position closed")

    def _order_id(self, ts: int, book: str, seq: int) -> str:
        # orders sent between bars: an id no order used yet (a replay's clock can stand still)
        cid = client_id(self.symbol, ts, book, seq)
        while self.svc.journal.get("order", cid) is not None:
            seq += 10
            cid = client_id(self.symbol, ts, book, seq)
        return cid

    def _apply_swaps(self) -> None:
        w = self.svc.watcher
        if w is None:
            return
        for swap in w.take():
            slot = swap.slot
            if slot is not None:
                with self._ring_lock:
                    missed = [r for s, r in self._ring if s > swap.warmed_to]
                for row in missed:  # the bars that arrived while it warmed
                    slot.update(row)
            self.slots[swap.slot_name] = slot
            self._orphans = True
            self.state.commit(self.svc.journal, model_entry(swap.slot_name,
                                                            "none" if slot is None else
                                                            slot.version))
            if swap.slot_name == "canary":
                self.routing = Routing(mode=self.routing.mode,
                                       share=self._share(w.share) if slot is not None else 0.0,
                                       overlap_days=self.routing.overlap_days,
                                       canary_since_ns=self._now_ns())
                self.canary_watch = CanaryWatch(rules=self.canary_watch.rules)
            w.running(swap.slot_name, None if slot is None else slot.version)
        share = self._share(w.share)
        if self.slots.get("canary") is not None and share != self.routing.share:
            self.routing = Routing(mode=self.routing.mode, share=share,
                                   overlap_days=self.routing.overlap_days,
                                   canary_since_ns=self.routing.canary_since_ns)
            self._orphans = True  # at share 1 production has nothing left to trade with

    def _share(self, wanted: float) -> float:
        # a share outside [0, 1] (a canary_share tag set by hand) would give a book negative
        # capital: keep the running share and say so, once per value
        if 0.0 <= wanted <= 1.0:
            return wanted
        if repr(wanted) != self._bad_share:  # repr: NaN equals itself
            self._bad_share = repr(wanted)
            self.alert("critical", "canary_share_invalid",
                       f"canary share {wanted!r} from the registry is outside [0, 1]; keeping "
                       f"{self.routing.share:g}: fix the tag with `mia registry set-share S "
                       "--reason ...`")
        return self.routing.share

    def _snapshot(self, force: bool = False) -> None:
        now = self._now_ns()
        if not force and now - self._last_snapshot < self._snapshot_every:
            return
        # the engines' state with the capital each track holds (_rebase), as _journal_events
        self.state.risk.update({k: self._risk_state(k, e) for k, e in self.engines.items()})
        snap = self.state.snapshot(self.svc.journal, taken_ns=now)
        self.svc.snapshots.write(snap)
        self._last_snapshot = now

    # --- helpers -----------------------------------------------------------------------------

    def _journal_events(self, book: str, events: Iterable[Any]) -> None:
        key = book if "/" in book else f"{book}/{self.symbol}"
        engine = self.engines.get(key)
        for ev in events:
            if engine is not None:
                entry = risk_entry(key.split("/")[0], self.symbol, ev, engine)
                entry.payload["engine"] = self._risk_state(key, engine)
                self.state.commit(self.svc.journal, entry)
            if self.svc.metrics is not None and ev.cause.startswith("breaker."):
                self.svc.metrics.trip(ev.cause.removeprefix("breaker."))

    def _risk_state(self, key: str, engine: RiskEngine) -> dict[str, Any]:
        # mia.risk.snapshot plus the capital its equity track holds (restored in __init__)
        raw = risk_snapshot(engine)
        raw["capital"] = self._basis.get(key, self._capital(key.split("/")[0]))
        return raw

    def _worst_mode(self) -> str:
        modes = [str(e.mode.name if hasattr(e.mode, "name") else e.mode).upper()
                 for e in self.engines.values()]
        return max(modes or ["RUNNING"], key=lambda m: SEVERITY.get(m, 0))

    def _set_phase(self, phase: str, why: str) -> None:
        if phase == self.phase:
            return
        self.state.commit(self.svc.journal, state_entry(self.phase, phase, why))
        self.phase = phase
        if self.svc.metrics is not None:
            self.svc.metrics.set_trading_state(phase)

    def alert(self, level: str, code: str, message: str, *, journal: bool = True) -> None:
        """Log, journal and send (webhook, rate-limited) an alert; the loop thread only.

        :param level: info, warning, critical or emergency. :param code: the alert's code.
        :param message: what happened and what to do.
        :param journal: ``False`` for an alert in the journal already (``LiveState.commit_fill``
            journals its ``unknown_fill``): logged and sent only, never journaled twice.
        """
        log.log(logging.CRITICAL if level in ("critical", "emergency") else logging.WARNING,
                "%s %s: %s", level, code, message)
        if journal:
            self.state.commit(self.svc.journal, alert_entry(level, code, message))
        if self.svc.alerter is not None:
            from executor.alerts import Alert

            self.svc.alerter.send(Alert(level=level, code=code, message=message,
                                        ts_ns=self._now_ns()))

    def _journaled_alert(self, level: str, code: str, message: str) -> None:
        # LiveState.commit_fill's alert sink: its unknown_fill is journaled, the rest of alert()
        # (log line, webhook, mia_alerts_total) is the loop's, as for every other alert
        self.alert(level, code, message, journal=False)

    def _now_ns(self) -> int:
        # a replay's clock is its bars' (orders between bars, kills, alerts at the last bar)
        return self._bar_ns if self.replay else self._wall_ns()


def _contract(symbol: str) -> Any:
    from mia.data.contracts import contract

    return contract(symbol)
