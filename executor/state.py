"""The executor's durable state: books, open orders, models, trading state, and their recovery.

:class:`LiveState` changes in one place, :meth:`LiveState.apply`, which folds one journal record
into it. The loop changes it only through :meth:`LiveState.commit` (append the record, then
apply it if it was new), and recovery rebuilds it by applying the journal's records after the
newest snapshot, so the state a crash recovers is, by construction, the state the loop had
(design.md section 8: startup and crash recovery are one code path,
:func:`executor.recovery.recover`).

Records that change the state, built by the ``*_entry`` functions below so writer and reader
agree on their payloads:

==============  ================================================================================
``bar``         the bar's symbol and ``ts_ns``: the newest processed bar per symbol (feature
                warm-up position; a redelivered bar is not processed again)
``order``       ``submit`` opens an order, ``cancel`` / ``reject`` close it
``fill``        position += quantity and cash -= quantity x price x multiplier + fee, for the
                fill's book; the order closes when fully filled
``position``    sets a book's position (reconciliation adopting the broker's)
``risk_event``  the risk engine's whole state right after the event (``mia.risk.snapshot``), so
                a kill switch or a breaker trip after the last snapshot survives a crash
``state``       the trading state (``to``)
``model_swap``  the model version serving a slot; ``alias_change`` may set the canary share
==============  ================================================================================

Cash is the USD the book's fills moved (0 at the start): equity = the book's capital + cash +
position x price x multiplier. Books: ``production`` and ``canary`` trade at the broker,
``shadow`` never does (its hypothetical fills come from its own paper broker, if any).

Risk engines after a crash. A book's risk state (``risk``) is the engine as it was when a risk
event was journaled or a snapshot taken; the fills journaled after that are kept beside it
(``risk_fills``) and :meth:`LiveState.restore_engines` books them into the restored engine, so
its trade record holds the book's position again. Without that, a crash after a fill and before
the next risk state left the gate refusing every decision of the book (position and trade
record disagree) and no stop guarding it (``tests/e2e/test_chaos_journal.py``).

A failed journal write latches (:attr:`LiveState.journal_failed`): the state reads ``HALTED``
and every later :meth:`LiveState.commit` refuses before writing, so nothing journals first and
sends after on a state that may lack the record that failed (a fill the broker made, say). A
restart recovers from the journal as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from executor.broker.base import Fill, Order
from executor.journal import Journal, JournalError, Record
from executor.snapshots import Snapshot
from mia.errors import OperationalError
from mia.risk import EntryPlan, RiskFeatures, RiskInputError
from mia.risk import restore as risk_restore
from mia.risk import snapshot as risk_snapshot
from mia.risk.sizing import stop_distance

if TYPE_CHECKING:
    from mia.risk import RiskEngine, RiskEvent, RiskRules

log = logging.getLogger(__name__)

BROKER_BOOKS: Final[tuple[str, ...]] = ("production", "canary")
ADOPT_BOOK: Final[str] = "production"  # takes a position difference found at reconciliation


class Entry(NamedTuple):
    """A record to append: ``journal.append(kind, payload, key=key)``.

    :param kind: the journal kind.
    :param payload: its data.
    :param key: its idempotency key, or ``None``.
    """

    kind: str
    payload: dict[str, Any]
    key: str | None


class BookPosition(NamedTuple):
    """One book's holding of one symbol.

    :param quantity: signed contracts.
    :param cash: USD moved by the book's fills of this symbol (module doc).
    """

    quantity: int = 0
    cash: float = 0.0


class OpenOrder(NamedTuple):
    """An order sent and not yet fully filled, cancelled or rejected.

    :param order: the order.
    :param filled: signed contracts filled so far.
    """

    order: Order
    filled: int = 0


# --- entries: what the loop journals -------------------------------------------------------

def bar_entry(symbol: str, ts_ns: int, source_id: str) -> Entry:
    """:param symbol: contract. :param ts_ns: bar ts, ns. :param source_id: the feed's id.
    :return: the bar's record, keyed ``<symbol>:<ts_ns>``."""
    return Entry("bar", {"symbol": symbol, "ts_ns": ts_ns, "source_id": source_id},
                 f"{symbol}:{ts_ns}")


def order_entry(order: Order, action: str = "submit", why: str = "") -> Entry:
    """:param order: the order. :param action: ``submit``, ``cancel`` or ``reject``.
    :param why: the reason of a cancel or reject.
    :return: the record, keyed ``client_id`` (submit) or ``client_id:action``."""
    if action not in ("submit", "cancel", "reject"):
        raise OperationalError(f"order action {action!r}: use submit, cancel or reject")
    key = order.client_id if action == "submit" else f"{order.client_id}:{action}"
    return Entry("order", {**order._asdict(), "action": action, "why": why}, key)


def fill_entry(fill: Fill, book: str) -> Entry:
    """:param fill: the broker's fill. :param book: the book it is booked to.
    :return: the record, keyed ``fill_id``."""
    return Entry("fill", {**fill._asdict(), "book": book}, fill.fill_id)


def position_entry(book: str, symbol: str, quantity: int, reason: str) -> Entry:
    """:param book: the book. :param symbol: contract. :param quantity: its new position.
    :param reason: why it is set. :return: the record (not keyed)."""
    return Entry("position", {"book": book, "symbol": symbol, "quantity": quantity,
                              "reason": reason}, None)


def risk_entry(book: str, symbol: str, event: RiskEvent, engine: RiskEngine) -> Entry:
    """:param book: the book. :param symbol: contract. :param event: the risk event.
    :param engine: the engine right after it. :return: the record (not keyed)."""
    return Entry("risk_event", {"book": book, "symbol": symbol, "event": event.to_dict(),
                                "engine": risk_snapshot(engine)}, None)


def state_entry(old: str, new: str, why: str) -> Entry:
    """:param old: trading state before. :param new: after. :param why: the reason.
    :return: the record (not keyed)."""
    return Entry("state", {"from": old, "to": new, "why": why}, None)


def model_entry(slot: str, version: str) -> Entry:
    """:param slot: ``production`` or ``canary``. :param version: the model version now
    serving it. :return: the ``model_swap`` record (not keyed)."""
    return Entry("model_swap", {"slot": slot, "version": version}, None)


def alias_entry(alias: str, version: str | None, canary_share: float | None = None,
                why: str = "") -> Entry:
    """:param alias: the registry alias. :param version: its version (``None``: cleared).
    :param canary_share: the canary's capital share now, if it changed. :param why: reason.
    :return: the ``alias_change`` record (not keyed)."""
    return Entry("alias_change", {"alias": alias, "version": version,
                                  "canary_share": canary_share, "why": why}, None)


def alert_entry(level: str, code: str, message: str) -> Entry:
    """:param level: info, warning, critical or emergency. :param code: alert code.
    :param message: text. :return: the record (not keyed)."""
    return Entry("alert", {"level": level, "code": code, "message": message}, None)


# --- the state -----------------------------------------------------------------------------

class RiskStates(dict[str, dict[str, Any]]):
    """Risk states by ``"<book>/<symbol>"`` (``mia.risk.snapshot``) that know what they miss.

    Setting a book's state (a risk event folded in, the loop's refresh before a snapshot)
    starts its list of later fills afresh: :meth:`fills` are the fills journaled after it,
    which the restored engine must still book (module doc).
    """

    def __init__(self, fills: Mapping[str, Sequence[Sequence[Any]]] | None = None) -> None:
        super().__init__()
        self.after: dict[str, list[list[Any]]] = {k: [list(f) for f in v]
                                                  for k, v in (fills or {}).items()}

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        super().__setitem__(key, value)
        self.after[key] = []

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several books' states (each starts its list of later fills afresh)."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def fill(self, key: str, quantity: int, price: float, ts_ns: int) -> None:
        """Note a fill of a book that has a state (books without one start fresh anyway)."""
        if key in self:
            self.after.setdefault(key, []).append([quantity, price, ts_ns])

    def fills(self, key: str) -> list[list[Any]]:
        """:return: ``[quantity, price, ts_ns]`` of the book's fills after its state."""
        return self.after.get(key, [])


class LiveState:
    """Everything recovery restores (module doc); owned by the loop thread.

    :param multipliers: USD per point for every symbol traded (ES 50, MNQ 2).
    """

    def __init__(self, multipliers: Mapping[str, float]) -> None:
        self.multipliers = dict(multipliers)
        self.seq = 0  # last journal record folded in
        self.books: dict[tuple[str, str], BookPosition] = {}
        self.open_orders: dict[str, OpenOrder] = {}
        self.last_bar_ns: dict[str, int] = {}
        self.model_versions: dict[str, str] = {}
        self.canary_share: float | None = None
        self.trading_state = "STARTING"
        self.risk = RiskStates()  # "<book>/<symbol>" -> mia.risk.snapshot (and later fills)
        self.journal_failed: str | None = None  # the failed write that latched (module doc)

    # --- reads ----------------------------------------------------------------------------

    def position(self, book: str, symbol: str) -> int:
        """:return: the book's signed contracts of ``symbol``."""
        return self.books.get((book, symbol), BookPosition()).quantity

    def net(self, symbol: str, books: Sequence[str] = BROKER_BOOKS) -> int:
        """:return: contracts of ``symbol`` summed over ``books`` (what the broker holds)."""
        return sum(p.quantity for (b, s), p in self.books.items() if s == symbol and b in books)

    def pending(self, book: str, symbol: str) -> int:
        """:return: signed contracts of the book's open orders in ``symbol`` not yet filled."""
        return sum(o.order.quantity - o.filled for o in self.open_orders.values()
                   if o.order.book == book and o.order.symbol == symbol)

    def seen(self, symbol: str, ts_ns: int) -> bool:
        """:return: whether a bar of ``symbol`` at or after ``ts_ns`` was processed already."""
        return ts_ns <= self.last_bar_ns.get(symbol, -1)

    def redelivered(self, journal: Journal, symbol: str, ts_ns: int, source_id: str) -> bool:
        """Whether this very bar (symbol, ts and the feed's id) was journaled already: a feed
        delivering it again after a crash. Ask only when :meth:`seen` (one read of the journal).

        A bar at or before the newest one that is *not* journaled under its id (a late bar, or
        another message for a minute already processed) is no redelivery: it goes to the inline
        validator, which rejects it loudly (``non_monotonic``) instead of it vanishing here.

        :param journal: the journal holding the ``bar`` records.
        :param symbol: contract. :param ts_ns: the bar's ts. :param source_id: the feed's id.
        :return: ``True`` for a redelivery (skip it, ack it), ``False`` for a new message.
        """
        record = journal.get("bar", f"{symbol}:{ts_ns}")
        return record is not None and record.payload.get("source_id") == source_id

    # --- the one place the state changes --------------------------------------------------

    def commit(self, journal: Journal, entry: Entry) -> bool:
        """Journal a record (durable on return), then fold it in if it was new.

        :param journal: the journal.
        :param entry: the record.
        :return: ``True`` if new, ``False`` if its key was journaled before (state unchanged).
        :raises JournalError: the write failed, now or at an earlier commit: halt; the state is
            what the journal holds, and it stays ``HALTED`` until a restart (module doc).
        """
        if self.journal_failed is not None:
            raise JournalError(f"not journaling a {entry.kind} record: a journal write failed "
                               f"before ({self.journal_failed}); nothing more is journaled or "
                               "sent until a restart recovers from the journal")
        if entry.kind == "fill":
            self._multiplier(str(entry.payload["symbol"]))  # refuse before journaling it
        try:
            new = journal.append(entry.kind, entry.payload, key=entry.key)
        except JournalError as exc:
            self.journal_failed = str(exc)
            self.trading_state = "HALTED"
            raise
        if not new:
            return False
        self.apply(entry.kind, entry.payload)
        self.seq = journal.last_seq
        return True

    def commit_fill(self, journal: Journal, fill: Fill,
                    alert: Callable[[str, str, str], None] | None = None) -> bool:
        """Journal and book a fill to the book of its order (a fill delivered twice: once).

        A fill for an order the journal does not know is booked to ``production`` with a
        critical ``unknown_fill`` alert (someone traded the account by hand, or the journal
        lost an order): reconciliation must not hide it. The alert is journaled here and, once
        journaled, handed to ``alert`` (the running loop's: log, webhook, metric); recovery
        passes none and sends on the alerts it journaled itself.

        :param journal: the journal.
        :param fill: the broker's fill.
        :param alert: called with (level, code, message) after the alert is journaled.
        :return: ``True`` if new, ``False`` if journaled before.
        :raises JournalError: the write failed.
        """
        self._multiplier(fill.symbol)
        open_ = self.open_orders.get(fill.client_id)
        if open_ is not None:
            return self.commit(journal, fill_entry(fill, open_.order.book))
        if journal.get("fill", fill.fill_id) is not None:
            return False
        order = journal.get("order", fill.client_id)
        if order is not None:
            return self.commit(journal, fill_entry(fill, str(order.payload["book"])))
        entry = alert_entry(
            "critical", "unknown_fill", f"fill {fill.fill_id} ({fill.quantity:+d} {fill.symbol})"
            f" is for order {fill.client_id}, which the journal does not know; booked to "
            f"{ADOPT_BOOK}")
        self.commit(journal, entry)
        if alert is not None:  # journaled: a failed fill write below cannot unsay it
            p = entry.payload
            alert(p["level"], p["code"], p["message"])
        return self.commit(journal, fill_entry(fill, ADOPT_BOOK))

    def replay(self, record: Record) -> None:
        """Fold in a record read back from the journal (recovery).

        :param record: the record.
        :raises OperationalError: a malformed record (the message names its seq).
        """
        try:
            self.apply(record.kind, record.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise OperationalError(f"journal record {record.seq} ({record.kind}) is malformed "
                                   f"({exc!r}); the journal was edited or written by another "
                                   "version: restore it from the backup") from exc
        self.seq = record.seq

    def apply(self, kind: str, p: Mapping[str, Any]) -> None:
        """Fold one record's payload into the state (module doc for each kind).

        :param kind: the journal kind (kinds not listed in the module doc change nothing).
        :param p: its payload.
        """
        if kind == "bar":
            sym = p["symbol"]
            self.last_bar_ns[sym] = max(int(p["ts_ns"]), self.last_bar_ns.get(sym, -1))
        elif kind == "order":
            if p["action"] == "submit":
                fields = {k: p[k] for k in Order._fields}
                self.open_orders[p["client_id"]] = OpenOrder(Order(**fields))
            else:
                self.open_orders.pop(p["client_id"], None)
        elif kind == "fill":
            self._book_fill(p)
        elif kind == "position":
            old = self.books.get((p["book"], p["symbol"]), BookPosition())
            self.books[(p["book"], p["symbol"])] = old._replace(quantity=int(p["quantity"]))
        elif kind == "risk_event":
            self.risk[f"{p['book']}/{p['symbol']}"] = dict(p["engine"])
        elif kind == "state":
            self.trading_state = str(p["to"])
        elif kind == "model_swap":
            self.model_versions[str(p["slot"])] = str(p["version"])
        elif kind == "alias_change" and p.get("canary_share") is not None:
            self.canary_share = float(p["canary_share"])

    def _book_fill(self, p: Mapping[str, Any]) -> None:
        sym, q = p["symbol"], int(p["quantity"])
        mult = self._multiplier(sym)
        self.risk.fill(f"{p['book']}/{sym}", q, float(p["price"]), int(p["ts_ns"]))
        old = self.books.get((p["book"], sym), BookPosition())
        self.books[(p["book"], sym)] = BookPosition(
            old.quantity + q, old.cash - q * float(p["price"]) * mult - float(p["fee"]))
        open_ = self.open_orders.get(p["client_id"])
        if open_ is not None:
            filled = open_.filled + q
            if filled == open_.order.quantity:
                del self.open_orders[p["client_id"]]
            else:
                self.open_orders[p["client_id"]] = open_._replace(filled=filled)

    def _multiplier(self, symbol: str) -> float:
        mult = self.multipliers.get(symbol)
        if mult is None:
            raise OperationalError(f"a fill in {symbol}, which has no multiplier; pass "
                                   "multipliers for every traded symbol (have "
                                   f"{sorted(self.multipliers)})")
        return mult

    # --- snapshots ------------------------------------------------------------------------

    def snapshot(self, journal: Journal, *, taken_ns: int,
                 engines: Mapping[str, RiskEngine] | None = None) -> Snapshot:
        """Capture the state (cheap: plain copies; write it with ``SnapshotStore.write``).

        :param journal: the journal the state follows (its id goes into the snapshot).
        :param taken_ns: now, ns since the epoch.
        :param engines: the live risk engines by ``"<book>/<symbol>"``; their state replaces
            what the last risk events recorded.
        :return: the snapshot at :attr:`seq`.
        """
        if engines:
            self.risk.update({k: risk_snapshot(e) for k, e in engines.items()})
        return Snapshot(journal_id=journal.journal_id, seq=self.seq, taken_ns=taken_ns,
                        state=self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """:return: the state as plain JSON-able data (the snapshot body)."""
        return {
            "books": [[b, s, p.quantity, p.cash] for (b, s), p in sorted(self.books.items())],
            "open_orders": [[*o.order, o.filled] for o in self.open_orders.values()],
            "last_bar_ns": dict(self.last_bar_ns), "model_versions": dict(self.model_versions),
            "canary_share": self.canary_share, "trading_state": self.trading_state,
            "risk": dict(self.risk),
            "risk_fills": {k: [list(f) for f in v] for k, v in self.risk.after.items() if v},
        }

    @classmethod
    def from_snapshot(cls, snap: Snapshot, multipliers: Mapping[str, float]) -> LiveState:
        """:param snap: a snapshot. :param multipliers: USD per point per symbol.
        :return: the state it holds, at its seq.
        :raises OperationalError: a malformed state (skip to an older snapshot)."""
        s, d = cls(multipliers), snap.state
        try:
            s.books = {(b, sym): BookPosition(int(q), float(c)) for b, sym, q, c in d["books"]}
            s.open_orders = {o[0]: OpenOrder(Order(*o[:6]), int(o[6]))
                             for o in d["open_orders"]}
            s.last_bar_ns = {k: int(v) for k, v in d["last_bar_ns"].items()}
            s.model_versions = {k: str(v) for k, v in d["model_versions"].items()}
            share = d["canary_share"]
            s.canary_share = None if share is None else float(share)
            s.trading_state = str(d["trading_state"])
            # risk_fills: absent from snapshots of earlier versions (their engines then miss
            # the fills since their last state, as those versions did)
            s.risk = RiskStates()
            for k, v in d["risk"].items():
                s.risk[k] = dict(v)
            s.risk.after.update({k: [[int(q), float(px), int(t)] for q, px, t in v]
                                 for k, v in d.get("risk_fills", {}).items()})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise OperationalError(f"snapshot at seq {snap.seq} has a malformed state "
                                   f"({exc!r})") from exc
        s.seq = snap.seq
        return s

    def restore_engines(self, rules: Mapping[str, RiskRules]) -> dict[str, RiskEngine]:
        """Rebuild the risk engines the state recorded (books without one start fresh).

        :param rules: risk rules per symbol.
        :return: engines by ``"<book>/<symbol>"``.
        :raises OperationalError: a recorded symbol has no rules.
        """
        out: dict[str, RiskEngine] = {}
        for key, raw in self.risk.items():
            sym = key.split("/", 1)[1]
            if sym not in rules:
                raise OperationalError(f"risk state for {key} but no rules for {sym}; pass "
                                       f"rules for every traded symbol (have {sorted(rules)})")
            engine = risk_restore(rules[sym], raw)
            for quantity, price, ts_ns in self.risk.fills(key):
                _book_into(engine, key, int(quantity), float(price), int(ts_ns))
            # an order working at the crash that opens or flips a trade: the plan of its
            # decision lived in the engine only, so its fill would find none
            book = key.split("/", 1)[0]
            pos = self.position(book, sym)
            after = pos + self.pending(book, sym)
            if engine.plan is None and after != 0 and (pos == 0 or (after > 0) != (pos > 0)):
                engine.plan = _fallback_plan(engine, key, abs(after))
            out[key] = engine
        return out


def _fallback_plan(engine: RiskEngine, key: str, allowed: int) -> EntryPlan | None:
    # The plan of an entry whose decision the journal does not hold (module doc): sized as the
    # gate sizes one (stop_atr x the last ATR, mia.risk.sizing.stop_distance), no regime, the
    # fill's size as allowed. None (with a warning) when no ATR is known.
    dist = stop_distance(engine.rules, RiskFeatures(atr_14=engine.last_atr), [])
    if not dist > 0.0:
        log.warning("recovery: %s opens a trade whose stop cannot be sized (no ATR known); the "
                    "risk gate refuses the book's decisions until it is flat", key)
        return None
    log.info("recovery: %s opens a trade after its last risk state; its stop is %.2f points "
             "(stop_atr x the last ATR)", key, dist)
    return EntryPlan(dist, None, allowed, engine.rules.cfg.risk_per_trade)


def _book_into(engine: RiskEngine, key: str, quantity: int, price: float, ts_ns: int) -> None:
    # A fill journaled after the engine's state, booked at recovery. The fill price stands in
    # for the decision's reference price the loop books live (the open, a stop's level): the
    # journal keeps only the former, so the entry and its stop sit the fill's cost away. A fill
    # that opens a trade needs the plan of the decision behind it: the engine's own when that
    # decision came before its state, else a fallback (_fallback_plan).
    try:
        engine.on_fill(quantity, price, now_ns=ts_ns)
        return
    except RiskInputError:
        pass
    held = engine.trade.side * engine.trade.qty if engine.trade is not None else 0
    plan = _fallback_plan(engine, key, abs(held + quantity))
    if plan is None:
        return
    try:
        engine.on_fill(quantity, price, now_ns=ts_ns, plan=plan)
    except RiskInputError as exc:  # a start must not fail on it: the gate says so per bar
        log.warning("recovery: %s fill %+d at %s could not be booked into its risk engine "
                    "(%s); the risk gate refuses the book's decisions until it is flat", key,
                    quantity, price, exc)
