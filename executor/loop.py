"""The live loop: one thread, one bar at a time, a small state machine (issue 7, item 1).

States: STARTING (recover, warm) -> RUNNING <-> REDUCING (risk-reducing orders only) ->
HALTED (flatten, nothing else) -> STOPPING. REDUCING and HALTED are the risk engines' trading
states (:mod:`mia.risk.state`); the loop reports the worst of its books.

Per accepted bar, in the order the durable state requires (executor.state) and the backtest
follows (mia.backtest.bundle_eval), so a replay decides what the backtest decided:

1. the broker fills last bar's orders at this open; each fill is journaled before the next poll;
2. the features of every slot advance (executor.slot), then each book's risk engine takes its
   stops and take-profits inside the bar (filled at their levels);
3. equity is marked at the close (limits, breakers);
4. production and canary decide, the router maps decisions to books, each book's risk engine
   turns its target into an order: journaled, then sent;
5. the bar is journaled, then acknowledged to the feed, and with it the cross symbol's bar that
   completed it (acked earlier, a crash would lose that close).

Between bars (after every bar, accepted, rejected or redelivered, and on every idle tick):
model swaps prepared by the watcher, the kill file, the trading state, snapshots, and the
canary book closed when no canary trades it; the canary rollback rules after accepted bars.
Bad bars never reach the features: the inline validator rejects them (a bar older than the
newest one journaled included: only the same message again is a redelivery) and the risk
engines count the fault (data-quality breaker).
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event, Lock
from typing import Any

import numpy as np

from executor.broker.base import Fill, Order, OrderRejected, client_id
from executor.calendar import trade_date
from executor.canary import CanaryWatch
from executor.feeds.base import BadMessage, FeedItem, Idle
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
from mia.envs.costs import CostModel
from mia.errors import MiaError, OperationalError
from mia.risk import RiskEngine, RiskRules
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


@dataclass(kw_only=True)
class TickStats:
    """What a run did (replay summaries, benchmarks)."""

    bars: int = 0
    faults: int = 0
    orders: int = 0
    exits: int = 0  # stop / take-profit orders among them
    fills: int = 0
    latency_ns: list[int] = field(default_factory=list)
    decisions: list[tuple[int, str, int]] = field(default_factory=list)  # ts, book, target


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
    """

    def __init__(self, *, symbol: str, cross_symbol: str | None, params: Any, state: LiveState,
                 slots: dict[str, ModelSlot | None], services: Services, routing: Routing,
                 rollback: RollbackSettings, capital: float, kill_file: Path | None = None,
                 record: bool = False, replay: bool = False, flatten_on_stop: bool = False,
                 history_bars: int = 0, snapshot_ns: int = 60_000_000_000) -> None:
        if slots.get("production") is None:
            raise OperationalError("executor: no production model; set the production alias "
                                   "or pass a local bundle")
        self.symbol, self.cross = symbol, cross_symbol
        self.params, self.state, self.slots = params, state, dict(slots)
        self.svc, self.routing, self.capital = services, routing, capital
        self.kill_file, self.record = kill_file, record
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
        self._orphans = True  # check for a canary book nothing trades (a restart may leave one)

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
        for event in feed:
            if self.stop_event.is_set():
                break
            self.handle(event)
        for item, row in self._flush():
            self._tick(item, row)
        self.shutdown(flatten=self.flatten_on_stop)
        return self.stats

    def request_stop(self) -> None:
        """Ask for a graceful stop (SIGTERM / SIGINT): no new orders after the current bar."""
        self.stop_event.set()

    def shutdown(self, flatten: bool = False) -> None:
        """Cancel working orders, optionally flatten (through the broker, journaled), take a
        final snapshot.

        :param flatten: send the order that closes each book's position.
        """
        self._set_phase("STOPPING", "stop requested")
        for book in ("production", "canary"):
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
            for book, engine in self.engines.items():
                self._journal_events(book, engine.heartbeat(now_ns=self._now_ns(),
                                                            session_open=event.connected))
            return
        if isinstance(event, BadMessage):
            self.stats.faults += 1
            if self.svc.metrics is not None:
                self.svc.metrics.data_fault(event.code)
            self._between_bars(None)  # a storm of bad entries still sees the kill file
            return
        for item, row in self._join(event):
            self._tick(item, row)

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
        return input_row(item.bar, cross).copy()

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
        t0 = time.perf_counter_ns()
        bar, ts = item.bar, item.ts_ns
        st, j, sym = self.state, self.svc.journal, self.symbol
        if st.seen(sym, ts) and st.redelivered(j, sym, ts, item.source_id):
            self._acked(item, ts)  # redelivered after a crash: processed already
            self._between_bars(ts)
            return
        atr = self._atr()
        now = ts if self.replay else self._now_ns()
        fault = self.validator.check(ts, bar.open, bar.high, bar.low, bar.close, bar.volume,
                                     now_ns=now, atr=atr)
        if fault is not None:
            self._reject(item, fault.code, fault.message)
            return
        self._bar_ns = ts
        self._advance(row)
        self.svc.broker.on_bar(bar)
        day = trade_date(ts)
        self._poll(ts, ref_price=bar.open)  # last bar's orders, filled at this open
        spread = (bar.extra or {}).get("bid_ask_spread")
        seq: dict[str, int] = {}
        equity: dict[str, float] = {}
        books = self._books()
        for book, slot_name in books:  # stops and take-profits inside the bar, then the marks
            engine = self._engine(book, day, ts)
            feats = self.slots[slot_name].risk_features()  # type: ignore[union-attr]
            risk = engine.on_bar(now_ns=ts, open=bar.open, high=bar.high, low=bar.low,
                                 close=bar.close, features=feats)
            self._journal_events(book, risk.events)
            for e in risk.exits:
                n = seq.get(book, 0)
                seq[book] = n + 1
                order = Order(client_id(sym, ts, book, n), sym, e.quantity, book, e.reason, ts)
                self._send(order, stop_level=e.price, spread=spread)
                self.stats.exits += 1
                self._poll(ts, ref_price=e.price)
            equity[book] = self._equity(book, bar.close)
            self._journal_events(book, engine.on_equity(now_ns=ts, trade_date=day,
                                                        equity=equity[book]))
        decisions = self._decide_all(ts)  # on the positions the exits left
        for book, slot_name in books:
            target = decisions.get(book)
            if target is None:
                continue
            engine = self.engines[f"{book}/{sym}"]
            feats = self.slots[slot_name].risk_features()  # type: ignore[union-attr]
            position = st.position(book, sym) + st.pending(book, sym)
            d = engine.decide(target, position=position, equity=equity[book], price=bar.close,
                              features=feats)
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
        elapsed = time.perf_counter_ns() - t0
        self.stats.latency_ns.append(elapsed)
        self._after_bar(ts, bar.close, elapsed)

    def _reject(self, item: FeedItem, code: str, message: str) -> None:
        # a rejected bar reaches no feature, broker or decision; its fault counts, it is
        # journaled (never judged again) and acked, and the between-bars work runs as after any
        # bar: in a storm of bad bars the trading state, the kill file and snapshots go on
        ts = item.ts_ns
        self.stats.faults += 1
        for book, engine in self.engines.items():
            self._journal_events(book, engine.on_fault(now_ns=ts, code=code))
        self.state.commit(self.svc.journal, alert_entry("warning", f"data_{code}", message))
        if self.svc.metrics is not None:
            self.svc.metrics.data_fault(code)
        if self.svc.alerter is not None:  # rate-limited per code by the alerter
            from executor.alerts import Alert

            self.svc.alerter.send(Alert(level="warning", code="data_fault",
                                        message=f"{code}: {message}", ts_ns=self._now_ns()))
        self.state.commit(self.svc.journal, bar_entry(self.symbol, ts, item.source_id))
        self._acked(item, ts)
        self._between_bars(ts)

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
        # (book, the slot whose features and decision it trades)
        books = [("production", "production")]
        if self.slots.get("canary") is not None and self.routing.share > 0:
            if self.routing.mode == "split":
                books.append(("canary", "canary"))
            elif self.routing.mode == "shadow":
                books.append(("shadow", "canary"))
        return books

    def _decide_all(self, ts: int) -> dict[str, float]:
        prod = self._decide("production", "production")
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
        t0 = time.perf_counter_ns()
        try:
            d = slot.decide(self.state.position(book, self.symbol))
        except MiaError as exc:
            self.alert("warning", f"{slot_name}_decision_failed", str(exc))
            if slot_name == "canary":
                self.canary_watch.errors += 1
            return None
        if slot_name == "canary":
            self._canary_ms = (time.perf_counter_ns() - t0) / 1e6
        return d.fraction

    def _engine(self, book: str, day: Any, ts: int) -> RiskEngine:
        key = f"{book}/{self.symbol}"
        if key not in self.engines:
            self.engines[key] = RiskEngine(self.rules, equity=self._capital(book),
                                           trade_date=day, now_ns=ts)
        return self.engines[key]

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
        if order.book == "shadow":
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
        self.stats.orders += 1
        if self.svc.metrics is not None:
            self.svc.metrics.order(order.book)

    def _poll(self, ts: int, *, ref_price: float) -> None:
        # Journal each new fill (before the next poll confirms it), then tell its book's risk
        # engine, at the reference price the decision used (the open, or the stop's level) as
        # the backtest does; the broker's fill price carries the costs, booked in the cash.
        fills: list[Fill] = self.svc.broker.poll_fills()
        for f in fills:
            before = {b: self.state.position(b, f.symbol) for b in ("production", "canary")}
            if not self.state.commit_fill(self.svc.journal, f):
                continue
            self.stats.fills += 1
            book = next((b for b, q in before.items()
                         if self.state.position(b, f.symbol) != q), "production")
            if book == "canary" and not self._canary_trades():
                self._orphans = True  # a late fill after a rollback: closed between bars
            engine = self.engines.get(f"{book}/{f.symbol}")
            if engine is not None:
                engine.on_fill(f.quantity, ref_price, now_ns=ts)
            after = self.state.position(book, f.symbol)
            if before[book] != 0 and (after == 0 or (after > 0) != (before[book] > 0)):
                self._trades[book] = self._trades.get(book, 0) + 1
        if fills and self.svc.metrics is not None:
            self.svc.metrics.fill(len(fills))

    # --- between bars ------------------------------------------------------------------------

    def _after_bar(self, ts: int, close: float, elapsed_ns: int) -> None:
        m = self.svc.metrics
        if m is not None:
            m.observe_tick(elapsed_ns / 1e9)
            m.bar()
            for book, _ in self._books():
                eq = self._equity(book, close)
                cap = self._capital(book) or 1.0
                m.set_book(book, self.state.position(book, self.symbol), eq - cap,
                           self._book_drawdown(book, eq))
        if self.svc.features is not None:
            self.svc.features.append(ts, self.slots["production"].raw_features())  # type: ignore[union-attr]
        self._check_canary(ts, close)
        self._between_bars(ts)

    def _book_drawdown(self, book: str, equity: float) -> float:
        engine = self.engines.get(f"{book}/{self.symbol}")
        return 0.0 if engine is None else float(engine.track.drawdown)

    def _between_bars(self, ts: int | None) -> None:
        self._apply_swaps()
        if self._orphans:
            self._close_orphans()
        if self.kill_file is not None and self.kill_file.exists():
            for book, engine in self.engines.items():
                event = engine.kill(by="kill_file", why=f"{self.kill_file} exists",
                                    now_ns=self._now_ns())
                if event is not None:
                    self._journal_events(book, (event,))
        self._set_phase(self._worst_mode(), "risk state")
        self._snapshot()

    def _check_canary(self, ts: int, close: float) -> None:
        if self.slots.get("canary") is None or self.routing.mode != "split" \
                or self.routing.share <= 0:
            return
        eq, cap = self._equity("canary", close), self._capital("canary")
        self.canary_watch.observe(equity=eq, decided=True, latency_ms=self._canary_ms,
                                  trades=self._trades.get("canary", 0))
        prod_cap = self._capital("production") or 1.0
        why = self.canary_watch.verdict(equity=eq, capital=cap, production_return=self._equity(
            "production", close) / prod_cap - 1.0)
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

    def _canary_trades(self) -> bool:
        # the canary book has a slot and a share to trade it (split routing): _books()
        return (self.slots.get("canary") is not None and self.routing.share > 0
                and self.routing.mode == "split")

    def _close_orphans(self) -> None:
        # A canary book that no canary trades (rolled back, swapped out, not loaded after a
        # restart) has no stops and no decisions: close what it holds or will hold.
        self._orphans = False
        if self._canary_trades():
            return
        st = self.state
        q = st.position("canary", self.symbol) + st.pending("canary", self.symbol)
        if q:
            ts = self._now_ns()
            self._send(Order(self._order_id(ts, "canary", 7), self.symbol, -q, "canary",
                             "flatten: no canary trades this book", ts))

    def _cancel_working(self, book: str, why: str) -> None:
        # journal the cancel, then send it; a rejected cancel (filled meanwhile) is alerted,
        # and the fill is booked when it arrives
        st, j = self.state, self.svc.journal
        for cid, open_ in list(st.open_orders.items()):
            if open_.order.book != book:
                continue
            if st.commit(j, order_entry(open_.order, "cancel", why)):
                try:
                    self.svc.broker.cancel(cid)
                except OrderRejected as exc:
                    self.alert("warning", "cancel_rejected", str(exc))

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
                                       share=w.share if slot is not None else 0.0,
                                       overlap_days=self.routing.overlap_days,
                                       canary_since_ns=self._now_ns())
                self.canary_watch = CanaryWatch(rules=self.canary_watch.rules)
            w.running(swap.slot_name, None if slot is None else slot.version)
        if self.slots.get("canary") is not None and w.share != self.routing.share:
            self.routing = Routing(mode=self.routing.mode, share=w.share,
                                   overlap_days=self.routing.overlap_days,
                                   canary_since_ns=self.routing.canary_since_ns)

    def _snapshot(self, force: bool = False) -> None:
        now = self._now_ns()
        if not force and now - self._last_snapshot < self._snapshot_every:
            return
        snap = self.state.snapshot(self.svc.journal, taken_ns=now, engines=self.engines)
        self.svc.snapshots.write(snap)
        self._last_snapshot = now

    # --- helpers -----------------------------------------------------------------------------

    def _journal_events(self, book: str, events: Iterable[Any]) -> None:
        key = book if "/" in book else f"{book}/{self.symbol}"
        engine = self.engines.get(key)
        for ev in events:
            if engine is not None:
                self.state.commit(self.svc.journal, risk_entry(key.split("/")[0], self.symbol,
                                                               ev, engine))
            if self.svc.metrics is not None and ev.cause.startswith("breaker."):
                self.svc.metrics.trip(ev.cause.removeprefix("breaker."))

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

    def alert(self, level: str, code: str, message: str) -> None:
        """Log, journal and send (webhook, rate-limited) an alert; the loop thread only.

        :param level: info, warning, critical or emergency. :param code: the alert's code.
        :param message: what happened and what to do.
        """
        log.log(logging.CRITICAL if level in ("critical", "emergency") else logging.WARNING,
                "%s %s: %s", level, code, message)
        self.state.commit(self.svc.journal, alert_entry(level, code, message))
        if self.svc.alerter is not None:
            from executor.alerts import Alert

            self.svc.alerter.send(Alert(level=level, code=code, message=message,
                                        ts_ns=self._now_ns()))

    def _now_ns(self) -> int:
        # a replay's clock is its bars' (orders between bars, kills, alerts at the last bar)
        return self._bar_ns if self.replay else time.time_ns()


def _contract(symbol: str) -> Any:
    from mia.data.contracts import contract

    return contract(symbol)
