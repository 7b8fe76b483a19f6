"""Recovery: the newest valid snapshot + journal replay + reconciliation with the broker.

Startup and crash recovery are one code path (design.md section 8): a clean start is a recovery
with no snapshot and an empty journal. Every step journals what it does through
:meth:`executor.state.LiveState.commit`, so a crash *during* recovery is recovered again the same
way, and nothing it books is booked twice.

What it repairs, crash point by crash point (the loop per bar: ``broker.on_bar`` -> poll and
journal fills -> journal each order, then submit it -> journal the bar -> ack the feed):

- after the broker filled, before the fill was journaled: the broker delivers unconfirmed fills
  again (:mod:`executor.broker.base`); recovery books them.
- after an order was journaled, before the broker got it: recovery submits it (idempotent).
- after a cancel was journaled, before the broker got it: recovery sends the cancel.
- before the bar was journaled: the feed redelivers the bar; ``LiveState.seen`` says whether it
  was processed, and the broker ignores a bar it has seen.

A position the journal and the broker disagree on is the broker's (it is where the money is):
recovery adopts it into the ``production`` book, journals a critical alert and the state
REDUCING, and a person must look at the fills. Given the risk rules (:class:`MismatchHold`),
the REDUCING reaches the risk engines: the ``production`` book's engine takes the
:data:`MISMATCH_HOLD` latch (journaled as a risk event, so the loop restores it and trades only
what reduces) until a person releases it.

Every alert recovery journals (``order_rejected``, ``unknown_order``, ``reconcile_mismatch``, and
``unknown_fill`` for a drained fill of an order the journal does not know) also goes to the
``alert`` callback (the live process's alerter: the log, the webhook, ``mia_alerts_total``), also
when recovery stops half-way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Final, NamedTuple

from executor.broker.base import Broker, OrderRejected
from executor.calendar import trade_date
from executor.journal import Journal
from executor.snapshots import Loaded, SnapshotStore
from executor.state import (
    ADOPT_BOOK,
    BROKER_BOOKS,
    LiveState,
    alert_entry,
    order_entry,
    position_entry,
    risk_entry,
    state_entry,
)
from mia.risk import RiskEngine, RiskRules
from mia.risk import restore as risk_restore
from mia.risk.state import Mode, engage

_SEVERITY: Final[dict[str, int]] = {"RUNNING": 0, "REDUCING": 1, "HALTED": 2}
# a latch a person releases (``python -m executor release --cause limit.reconcile_mismatch``)
MISMATCH_HOLD: Final[str] = "limit.reconcile_mismatch"
_log = logging.getLogger("executor.recovery")

AlertSink = Callable[[str, str, str], None]  # (level, code, message)


class MismatchHold(NamedTuple):
    """What recovery needs to put the risk engines in REDUCING after a position mismatch.

    :param rules: risk rules per traded symbol.
    :param equity: the ``production`` book's capital, USD (an engine that does not exist yet
        starts from it, as the loop would start it).
    :param now_ns: now, ns since the epoch (the hold's time; a new engine's stale-feed clock).
    """

    rules: Mapping[str, RiskRules]
    equity: float
    now_ns: int


class Mismatch(NamedTuple):
    """A position the journal and the broker disagree on (the broker's was adopted).

    :param symbol: contract.
    :param journal: net contracts by the journal.
    :param broker: net contracts at the broker.
    """

    symbol: str
    journal: int
    broker: int


class Recovered(NamedTuple):
    """What :func:`recover` rebuilt and did.

    :param state: the state, ready to trade from.
    :param loaded: the snapshot used (``path`` None: clean start) and the ones skipped.
    :param replayed: journal records replayed after the snapshot.
    :param drained: fills the broker delivered during recovery that the journal lacked.
    :param resubmitted: client ids of journaled orders the broker did not hold, sent again.
    :param unknown: client ids working at the broker that the journal does not know.
    :param mismatches: positions adopted from the broker.
    """

    state: LiveState
    loaded: Loaded
    replayed: int
    drained: int
    resubmitted: tuple[str, ...]
    unknown: tuple[str, ...]
    mismatches: tuple[Mismatch, ...]


def recover(journal: Journal, broker: Broker, snapshots: SnapshotStore, *,
            multipliers: Mapping[str, float],
            books: Sequence[str] = BROKER_BOOKS,
            hold: MismatchHold | None = None,
            alert: AlertSink | None = None) -> Recovered:
    """Startup and crash recovery, one path: snapshot + journal replay + broker reconciliation.

    1. Load the newest valid snapshot of this journal at or before its last record (none:
       empty state). 2. Replay the journal records after it. 3. Book the fills the broker
    delivers now and the journal lacks (a crash between fill and journal). 4. Send again the
    journaled open orders the broker does not hold (a crash between journal and submit; submits
    are idempotent). 5. Compare net positions with ``broker.positions()``: on a difference adopt
    the broker's into the ``production`` book, journal an alert and go REDUCING (with ``hold``,
    the ``production`` engine latches :data:`MISMATCH_HOLD` first). Every step journals through
    :meth:`LiveState.commit`, so a crash during recovery is recovered again.

    :param journal: the journal (writable).
    :param broker: the broker holding ``books``.
    :param snapshots: the snapshot folder.
    :param multipliers: USD per point for every traded symbol.
    :param books: the books this broker carries (``shadow`` never trades at it).
    :param hold: the risk rules and capital that put the engines in REDUCING after a
        mismatch; ``None``: only the journal's trading state says REDUCING.
    :param alert: called with (level, code, message) for every alert recovery journaled.
    :return: the recovered state and a report.
    :raises TemporaryError: the broker is unreachable (retry ``recover``: it is idempotent).
    :raises OperationalError: a damaged journal or a fill in a symbol without a multiplier.
    """
    loaded = snapshots.latest(journal_id=journal.journal_id, max_seq=journal.last_seq)
    state = (LiveState(multipliers) if loaded.snapshot is None
             else LiveState.from_snapshot(loaded.snapshot, multipliers))
    replayed = 0
    for record in journal.read(since_seq=state.seq):
        state.replay(record)
        replayed += 1
    start = journal.last_seq
    try:
        return _repair(journal, broker, state, loaded, replayed, books, hold)
    finally:
        if alert is not None:
            _forward_alerts(journal, start, alert)


def _repair(journal: Journal, broker: Broker, state: LiveState, loaded: Loaded, replayed: int,
            books: Sequence[str], hold: MismatchHold | None) -> Recovered:
    drained = sum(state.commit_fill(journal, f) for f in broker.poll_fills())
    working = {o.client_id for o in broker.working()}
    resubmitted: list[str] = []
    for cid, open_ in list(state.open_orders.items()):
        if cid in working or open_.order.book not in books:
            continue
        try:
            broker.submit(open_.order)
            resubmitted.append(cid)
        except OrderRejected as exc:
            state.commit(journal, order_entry(open_.order, "reject", str(exc)))
            state.commit(journal, alert_entry("critical", "order_rejected", str(exc)))
    unknown: list[str] = []
    for cid in sorted(working - set(state.open_orders)):
        if journal.get("order", f"{cid}:cancel") is not None:
            broker.cancel(cid)  # the loop journals a cancel before sending it: finish it
        else:
            unknown.append(cid)
    if unknown:
        state.commit(journal, alert_entry("critical", "unknown_order", "working at the broker "
                                          f"but not in the journal: {', '.join(unknown)}"))
    mismatches = _reconcile(journal, state, broker.positions(), books, hold)
    return Recovered(state, loaded, replayed, drained, tuple(resubmitted), tuple(unknown),
                     mismatches)


def _forward_alerts(journal: Journal, since_seq: int, alert: AlertSink) -> None:
    # the alerts this recovery journaled (LiveState.commit_fill journals unknown_fill itself)
    try:
        for record in journal.read("alert", since_seq=since_seq):
            p = record.payload
            alert(str(p["level"]), str(p["code"]), str(p["message"]))
    except Exception as exc:  # noqa: BLE001 - they are journaled; never mask recovery's error
        _log.error("recovery: its journaled alerts could not be sent on (%s); read them in "
                   "the journal", exc)


def _reconcile(journal: Journal, state: LiveState, held: Mapping[str, int],
               books: Sequence[str], hold: MismatchHold | None) -> tuple[Mismatch, ...]:
    symbols = sorted({s for (_, s) in state.books} | set(held))
    found = tuple(Mismatch(s, state.net(s, books), int(held.get(s, 0))) for s in symbols
                  if state.net(s, books) != int(held.get(s, 0)))
    if found and hold is not None:
        # before the adoption: a crash between the two finds the mismatch again, and the
        # latch, once journaled, is not engaged twice
        _latch(journal, state, found, hold)
    for m in found:
        adopted = state.position(ADOPT_BOOK, m.symbol) + m.broker - m.journal
        why = (f"{m.symbol}: the journal nets {m.journal:+d} over {list(books)}, the broker "
               f"holds {m.broker:+d}; adopted the broker's position ({ADOPT_BOOK} now "
               f"{adopted:+d}) and reducing until a person checks the fills")
        state.commit(journal, position_entry(ADOPT_BOOK, m.symbol, adopted, "reconcile"))
        state.commit(journal, alert_entry("critical", "reconcile_mismatch", why))
    if found and _SEVERITY.get(state.trading_state, -1) < _SEVERITY["REDUCING"]:
        state.commit(journal, state_entry(state.trading_state, "REDUCING",
                                          f"position mismatch at recovery: {found}"))
    return found


def _latch(journal: Journal, state: LiveState, found: Sequence[Mismatch],
           hold: MismatchHold) -> None:
    # The production engine of each mismatched symbol it trades (of every traded symbol when
    # the mismatch is in one it does not trade): restored from the state, or new, as the loop
    # would build it; the risk event carries the engine, which the loop restores.
    traded = sorted({m.symbol for m in found} & set(hold.rules)) or sorted(hold.rules)
    what = ", ".join(f"{m.symbol} journal {m.journal:+d} broker {m.broker:+d}" for m in found)
    for symbol in traded:
        key = f"{ADOPT_BOOK}/{symbol}"
        raw = state.risk.get(key)
        if raw is not None:
            engine = risk_restore(hold.rules[symbol], raw)
        else:
            # the day of the newest journaled bar (the feed resumes after it); before any bar,
            # the earliest: the first bar's mark then rolls the day to it with the day's start
            # at the capital, as the engine the loop would build at that bar
            last = state.last_bar_ns.get(symbol)
            day = trade_date(last) if last is not None else date.min
            engine = RiskEngine(hold.rules[symbol], equity=hold.equity, trade_date=day,
                                now_ns=hold.now_ns)
        engine.state, event = engage(
            engine.state, MISMATCH_HOLD, Mode.REDUCING, "person", at_ns=hold.now_ns,
            by="recovery", why=f"position mismatch at recovery ({what}): the broker's "
            f"position was adopted; reducing only until a person checks the fills and "
            f"releases {MISMATCH_HOLD}")
        if event is not None:
            entry = risk_entry(ADOPT_BOOK, symbol, event, engine)
            if raw is not None:  # keep what the loop records beside the engine's own state
                entry.payload["engine"] = {**raw, **entry.payload["engine"]}
            state.commit(journal, entry)
