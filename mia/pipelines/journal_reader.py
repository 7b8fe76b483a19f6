"""The live executor's journal as the offline side reads it: read-only SQLite, by its schema.

design.md §3 rule 4: nothing in ``mia`` imports ``executor``, so this module is the other side
of a file contract, pinned by ``tests/unit/orchestration/test_journal_contract.py`` (which writes
a journal with the executor's own code and reads it here). The contract, journal schema
:data:`SCHEMA_VERSION` (``executor/journal.py``, payloads from ``executor/state.py``'s
``*_entry`` builders):

- ``meta(name, value)``: ``schema_version``, ``journal_id``;
- ``records(seq, kind, key, ts_ns, payload)``: ``seq`` increasing, ``payload`` JSON;
- ``bar``: ``symbol``, ``ts_ns`` (the bar's close); ``fill``: ``book``, ``symbol``, ``quantity``
  (signed contracts), ``price`` (points), ``fee`` (USD), ``ts_ns``; ``position``: ``book``,
  ``symbol``, ``quantity`` (reconciliation sets a book's position); ``risk_event``: ``book``,
  ``symbol``, ``event`` (``cause``, ``action``, ``why``, ``at_ns``), ``engine`` (``last_close``);
  ``alert``: ``level``, ``code``, ``message``; ``alias_change``: ``alias``, ``version``
  (``null`` = cleared), ``why``.

The file is opened with ``mode=ro`` (SQLite URI): the reader can never write the journal nor
take the executor's writer lock, and WAL lets it read while the executor appends.

Time. A record's *market time* is its payload's own time (a bar's close, a fill's, a risk
event's) or, for records without one (alerts, alias changes), the close of the bar before it:
windows are cut by market time, so a record journaled a moment after the session's last bar
still belongs to that session. Accounting: a book's fills move its position and cash (``cash
-= quantity x price x multiplier + fee``, as ``executor.state`` books them); positions are
marked at the last price the journal holds (any book's fill, a risk event's close).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from mia.errors import OperationalError
from mia.registry.canary import BookStats

SCHEMA_VERSION: Final[int] = 1
KINDS: Final[tuple[str, ...]] = ("bar", "fill", "position", "risk_event", "alert",
                                  "alias_change")
_EXCHANGE: Final = ZoneInfo("America/New_York")
# ts + 6 h moves the 18:00 ET session open to midnight: the ET date of ts + 6 h is the trade date
_TRADE_DATE_SHIFT: Final = timedelta(hours=6)


class JournalRecord(NamedTuple):
    """One record as stored: ``seq``, ``kind``, ``ts_ns`` (appended at), ``payload``."""

    seq: int
    kind: str
    ts_ns: int
    payload: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class JournalWindow:
    """One symbol's slice of the journal between two market times.

    :param journal_id: the journal's id (its ``meta``).
    :param first_seq: the first record in the window (0: none). :param last_seq: the last.
    :param bars: bars of the symbol processed. :param trade_dates: their CME trade dates.
    :param books: book -> its stats (every book given a capital).
    :param errors: alert code -> how many (e.g. ``canary_decision_failed``).
    :param holds: ``(book, "<cause>: <why>")`` of every risk hold engaged.
    :param rollbacks: why the executor cleared the canary alias, for each time it did.
    """

    journal_id: str
    first_seq: int
    last_seq: int
    bars: int
    trade_dates: tuple[date, ...]
    books: dict[str, BookStats]
    errors: dict[str, int]
    holds: tuple[tuple[str, str], ...]
    rollbacks: tuple[str, ...]


def to_ns(t: datetime) -> int:
    """:param t: a tz-aware time. :return: ns since the epoch (exact to the microsecond)."""
    if t.tzinfo is None:
        raise OperationalError(f"naive time {t.isoformat()}: pass a tz-aware time (UTC)")
    return round(t.timestamp() * 1e6) * 1000


def trade_date(ts_ns: int) -> date:
    """:param ts_ns: a bar's close, ns since the epoch. :return: its CME trade date."""
    utc = datetime.fromtimestamp(ts_ns / 1e9, tz=ZoneInfo("UTC"))
    return (utc.astimezone(_EXCHANGE) + _TRADE_DATE_SHIFT).date()


def read_records(path: Path, kinds: Sequence[str] = KINDS) -> tuple[str, list[JournalRecord]]:
    """Read a journal read-only.

    :param path: the journal file (``<state_dir>/journal.sqlite``).
    :param kinds: the kinds to read.
    :return: the journal's id and its records of those kinds, in ``seq`` order.
    :raises OperationalError: no such file, not a journal, or another schema version.
    """
    if not Path(path).is_file():
        raise OperationalError(f"no executor journal at {path}; point canary_review.journal "
                               "(relative to MIA_HOME) at the executor's state_dir/journal.sqlite")
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    marks = ", ".join("?" * len(kinds))
    try:
        with closing(sqlite3.connect(uri, uri=True)) as db:
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            if meta.get("schema_version") != str(SCHEMA_VERSION):
                raise OperationalError(
                    f"{path} has journal schema {meta.get('schema_version')!r}; this MIA reads "
                    f"schema {SCHEMA_VERSION}: upgrade mia to the executor's version")
            rows = db.execute(f"SELECT seq, kind, ts_ns, payload FROM records "  # noqa: S608
                              f"WHERE kind IN ({marks}) ORDER BY seq", tuple(kinds)).fetchall()
    except sqlite3.Error as exc:
        raise OperationalError(f"{path} is not a readable executor journal ({exc}); restore it "
                               "from the backup (mia restore --what executor)") from exc
    try:
        return str(meta["journal_id"]), [JournalRecord(int(s), str(k), int(t), json.loads(p))
                                         for s, k, t, p in rows]
    except (KeyError, ValueError, TypeError) as exc:
        raise OperationalError(f"{path}: a record is not the executor's JSON ({exc!r}); the "
                               "journal was edited or damaged") from exc


def _market_times(records: Sequence[JournalRecord], symbol: str) -> Iterator[tuple[int, Any]]:
    last_bar = -1
    for r in records:
        p = r.payload
        if r.kind == "bar":
            if p["symbol"] != symbol:
                continue
            last_bar = int(p["ts_ns"])
            yield last_bar, r
        elif r.kind == "fill":
            if p["symbol"] == symbol:
                yield int(p["ts_ns"]), r
        elif r.kind == "risk_event":
            if p["symbol"] == symbol:
                yield int(p["event"]["at_ns"]), r
        elif r.kind == "position":
            if p["symbol"] == symbol:
                yield last_bar, r
        else:
            yield last_bar, r


class _Book:
    # one book's position and cash, folded fill by fill (executor.state.LiveState._book_fill)
    def __init__(self, capital: float) -> None:
        self.capital, self.q, self.cash = capital, 0, 0.0
        self.start: float | None = None  # value at the window's start
        self.peak, self.drawdown, self.trades, self.pnl = capital, 0.0, 0, 0.0

    def fill(self, q: int, price: float, fee: float, mult: float, counted: bool) -> None:
        before = self.q
        self.q += q
        self.cash -= q * price * mult + fee
        if counted and before != 0 and (self.q == 0 or (self.q > 0) != (before > 0)):
            self.trades += 1

    def value(self, mark: float, mult: float) -> float:
        return self.cash + (self.q * mark * mult if self.q else 0.0)

    def observe(self, mark: float, mult: float) -> None:
        if self.q and not math.isfinite(mark):
            return  # a position and no price yet: nothing to mark it at
        v = self.value(mark, mult)
        if self.start is None:
            self.start = v
        self.pnl = v - self.start
        equity = self.capital + self.pnl
        self.peak = max(self.peak, equity)
        if self.peak > 0:
            self.drawdown = max(self.drawdown, 1.0 - equity / self.peak)

    def stats(self) -> BookStats:
        return BookStats(capital=self.capital, pnl=self.pnl, max_drawdown=self.drawdown,
                         trades=self.trades, position=self.q)


def window(path: Path, symbol: str, *, since: datetime, until: datetime,
           capital: Mapping[str, float], multiplier: float) -> JournalWindow:
    """One symbol's records with market time in ``(since, until]``, and its books' results.

    :param path: the journal file.
    :param symbol: the contract (``ES``).
    :param since: the window's start (exclusive), tz-aware.
    :param until: its end (inclusive), tz-aware.
    :param capital: book -> its capital over the window, USD (books not given are not kept).
    :param multiplier: USD per point of ``symbol``.
    :raises OperationalError: a missing or foreign journal, naive times, ``since >= until``.
    """
    lo, hi = to_ns(since), to_ns(until)
    if lo >= hi:
        raise OperationalError(f"journal window {since.isoformat()}..{until.isoformat()} is "
                               "empty; the start must come before the end")
    journal_id, records = read_records(path)
    books = {b: _Book(c) for b, c in capital.items()}
    mark, first, last, bars = math.nan, 0, 0, 0
    days: set[date] = set()
    errors: dict[str, int] = {}
    holds: list[tuple[str, str]] = []
    rollbacks: list[str] = []
    try:
        for at, r in _market_times(records, symbol):
            if at > hi:
                continue
            inside, p = at > lo, r.payload
            if inside and not first:  # the window opens: every book's value at its start
                for b in books.values():
                    b.observe(mark, multiplier)
            if inside:
                first, last = first or r.seq, r.seq
            if r.kind == "fill":
                book = books.get(str(p["book"]))
                if book is not None:
                    book.fill(int(p["quantity"]), float(p["price"]), float(p["fee"]),
                              multiplier, inside)
                mark = float(p["price"])
            elif r.kind == "position" and str(p["book"]) in books:
                books[str(p["book"])].q = int(p["quantity"])
            elif r.kind == "risk_event" and p["engine"].get("last_close") is not None:
                mark = float(p["engine"]["last_close"])
            if not inside:
                continue
            if r.kind == "bar":
                bars += 1
                days.add(trade_date(int(p["ts_ns"])))
            elif r.kind == "alert":
                errors[str(p["code"])] = errors.get(str(p["code"]), 0) + 1
            elif r.kind == "risk_event" and p["event"]["action"] == "engage":
                holds.append((str(p["book"]), f"{p['event']['cause']}: {p['event']['why']}"))
            elif r.kind == "alias_change" and p["alias"] == "canary" and p["version"] is None:
                rollbacks.append(str(p.get("why") or "no reason recorded"))
            for b in books.values():
                b.observe(mark, multiplier)
    except (KeyError, TypeError, ValueError) as exc:
        raise OperationalError(f"{path}: a record lacks a field of journal schema "
                               f"{SCHEMA_VERSION} ({exc!r}); the executor that wrote it speaks "
                               "another schema, or the journal was edited") from exc
    return JournalWindow(journal_id=journal_id, first_seq=first, last_seq=last, bars=bars,
                         trade_dates=tuple(sorted(days)),
                         books={b: k.stats() for b, k in books.items()}, errors=errors,
                         holds=tuple(holds), rollbacks=tuple(rollbacks))
