"""The executor's append-only journal: SQLite in WAL mode, durable before ``append`` returns.

Everything the executor must not forget goes here, in order: bars processed, decisions, orders,
fills, positions, PnL, risk events, alias changes, model swaps, alerts and trading-state
transitions (:data:`KINDS`). Startup and crash recovery read it the same way
(:func:`executor.state.recover`; design.md section 8).

Durability. ``journal_mode=WAL`` with ``synchronous=FULL``: every commit fsyncs the WAL, so a
record that :meth:`Journal.append` returned for survives a kill -9 and a power cut (SQLite's
"WAL mode" and "PRAGMA synchronous" docs). The loop acknowledges a bar to its feed only after
the bar's records are appended. ``sync="normal"`` survives a process crash but not a power cut;
``sync="off"`` is for replays, where the journal is a by-product.

Idempotency. A record may carry a key, unique per kind (``UNIQUE(kind, key)``): a bar is keyed
``<symbol>:<ts_ns>``, an order by its ``client_id``, a fill by its ``fill_id``. Appending a key
again is a no-op that returns ``False``, so a bar redelivered after a crash, a regenerated order
or a fill the broker delivers twice is booked once. Triggers refuse UPDATE and DELETE.

Failure. A write that fails (disk full, I/O error, the ``max_bytes`` budget) raises
:class:`JournalError` (an :class:`~mia.errors.OperationalError`). SQLite rolls the statement
back, so the file keeps every earlier record and no half record. The state latches HALTED and
refuses every later write (:class:`executor.state.LiveState`), so nothing more is sent; the
error leaves the loop and ``python -m executor`` exits 2 with the one-line reason; the restart
recovers from the journal as it is (``tests/e2e/test_chaos_journal.py``).

Files. The directory is made ``0700`` and the database (and SQLite's ``-wal`` / ``-shm``, which
copy its mode) ``0600``: the journal holds positions and orders. One writer at a time: the writer
holds an exclusive ``flock`` on ``<journal>.lock`` (the kernel drops it when the process dies,
so a restart after kill -9 takes it at once); readers open with ``readonly=True``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple

from mia.clock import Clock, SystemClock
from mia.errors import OperationalError

SCHEMA_VERSION: Final[int] = 1
# one encoder for every record: json.dumps with options builds a new one per call (~5 us a tick)
_ENCODE: Final = json.JSONEncoder(sort_keys=True, allow_nan=False, separators=(",", ":")).encode
KINDS: Final[tuple[str, ...]] = (
    "bar", "decision", "order", "fill", "position", "pnl", "risk_event", "alias_change",
    "model_swap", "alert", "state",
)
# fields recovery reads back (executor.state.LiveState.apply): a record without them is refused
# at append time rather than found unreadable at the next restart
REQUIRED: Final[dict[str, frozenset[str]]] = {
    "bar": frozenset({"symbol", "ts_ns"}),
    "order": frozenset({"client_id", "symbol", "quantity", "book", "reason", "created_ns",
                        "action"}),
    "fill": frozenset({"fill_id", "client_id", "symbol", "quantity", "price", "fee", "ts_ns",
                       "book"}),
    "position": frozenset({"book", "symbol", "quantity"}),
    "risk_event": frozenset({"book", "symbol", "engine"}),
    "state": frozenset({"to"}),
    "model_swap": frozenset({"slot", "version"}),
}
Sync = Literal["full", "normal", "off"]
_EPOCH: Final[datetime] = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final[timedelta] = timedelta(microseconds=1)
_SCHEMA: Final[str] = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT,
    ts_ns INTEGER NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, seq);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


class JournalError(OperationalError):
    """The journal cannot be opened or written: halt trading, fix the cause, restart."""


class Record(NamedTuple):
    """One journal record.

    :param seq: position in the journal: increasing, never reused (numbers may be skipped).
    :param kind: one of :data:`KINDS`.
    :param key: idempotency key (unique per kind), or ``None``.
    :param ts_ns: when it was appended, ns since the epoch (UTC), from the journal's clock.
    :param payload: the record's data (JSON-able).
    """

    seq: int
    kind: str
    key: str | None
    ts_ns: int
    payload: dict[str, Any]


def _record(row: tuple[Any, ...]) -> Record:
    seq, kind, key, ts_ns, payload = row
    return Record(int(seq), str(kind), key, int(ts_ns), json.loads(payload))


def to_ns(ts: datetime) -> int:
    """:param ts: a tz-aware datetime. :return: ns since the epoch, exact to the microsecond.

    :raises OperationalError: ``ts`` is naive (it would be read as local time).
    """
    if ts.tzinfo is None:
        raise OperationalError(f"naive datetime {ts.isoformat()}: the executor's times are "
                               "tz-aware UTC; attach tzinfo=UTC")
    return (ts - _EPOCH) // _US * 1000


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it ``0700``.

    :param path: a directory the executor owns (journal, snapshots, broker state).
    :return: ``path``.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask, and the folder may pre-exist
    return path


def connect(path: Path, *, sync: Sync = "full", max_bytes: int | None = None,
            readonly: bool = False) -> sqlite3.Connection:
    """Open an SQLite file the durable way: WAL, the given ``synchronous``, mode ``0600``.

    :param path: the database file; its folder is created ``0700``.
    :param sync: ``full`` (fsync every commit), ``normal`` or ``off``.
    :param max_bytes: refuse to grow the database past this many bytes of pages (a disk
        budget); a write beyond it fails as on a full disk. ``None``: no budget.
    :param readonly: open an existing file for reading only.
    :return: an autocommit connection (every statement is its own transaction).
    :raises JournalError: the file is missing (read-only), not a database, or unwritable.
    """
    try:
        if readonly:
            if not path.exists():
                raise JournalError(f"{path} does not exist; nothing to read")
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
        else:
            private_dir(path.parent)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(path, 0o600)  # SQLite gives -wal and -shm the mode of the database
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise JournalError(f"{path}: SQLite refused WAL mode (a network file "
                                   "system?); keep executor state on a local disk")
            db.execute(f"PRAGMA synchronous={sync.upper()}")
            if max_bytes is not None:
                page = int(db.execute("PRAGMA page_size").fetchone()[0])
                db.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")
        return db
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open {path} ({exc}); if it is not an SQLite file, move it "
                           "away and restore the journal from the backup") from exc


class Journal:
    """The append-only journal (module doc for durability, keys and failures).

    :param path: the journal file, e.g. ``<MIA_HOME>/executor/journal.sqlite``.
    :param sync: ``full`` for live trading (default), ``normal`` or ``off`` (replays).
    :param max_bytes: disk budget in bytes (module doc), ``None`` for none.
    :param readonly: open for reading only (no writer lock; ``append`` refuses).
    :param clock: the time stamped on records; default the system clock.
    :raises JournalError: another process holds the writer lock, the file is damaged, or its
        schema version is not :data:`SCHEMA_VERSION`.
    """

    def __init__(self, path: Path, *, sync: Sync = "full", max_bytes: int | None = None,
                 readonly: bool = False, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._clock: Clock = clock or SystemClock()
        self._depth = 0  # open batch() blocks
        self._lock: IO[str] | None = None if readonly else self._take_lock()
        try:
            self._db = connect(self.path, sync=sync, max_bytes=max_bytes, readonly=readonly)
            self.journal_id = self._init_schema()
            self._seq = self._max_seq()  # the writer's cache of last_seq
        except BaseException:
            self._release_lock()
            raise

    # --- writing --------------------------------------------------------------------------

    def append(self, kind: str, payload: Mapping[str, Any], *, key: str | None = None) -> bool:
        """Append one record and commit it before returning.

        :param kind: one of :data:`KINDS`.
        :param payload: JSON-able data (no NaN: JSON has none; use ``None``).
        :param key: idempotency key, unique per kind; ``None`` for records that are never
            deduplicated (alerts, decisions).
        :return: ``True`` if written, ``False`` if a record of this kind and key exists (then
            nothing changed).
        :raises JournalError: a bad kind or payload (nothing written), a read-only journal, or a
            failed write (disk full, I/O error, budget): the journal keeps its earlier records.
        """
        if self.readonly:
            raise JournalError(f"{self.path} is open read-only; open it with readonly=False "
                               "in the one executor process that writes it")
        if kind not in KINDS:
            raise JournalError(f"unknown journal kind {kind!r}; use one of {', '.join(KINDS)}")
        missing = REQUIRED.get(kind, frozenset()).difference(payload)
        if missing:
            raise JournalError(f"{kind} payload lacks {sorted(missing)}; build it with "
                               "the executor.state *_entry helpers; nothing written")
        try:
            text = _ENCODE(dict(payload))
        except (TypeError, ValueError) as exc:
            raise JournalError(f"{kind} payload is not JSON-able ({exc}): pass str, int, float "
                               "(finite), bool, None, lists and dicts; nothing written") from exc
        now = to_ns(self._clock.now())
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO records (kind, key, ts_ns, payload) VALUES (?, ?, ?, ?)",
                (kind, key, now, text))
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: writing a {kind} record failed ({exc}); "
                               "nothing was written and earlier records are intact. Trading "
                               "halts: free disk space or fix the device, then restart "
                               "(recovery replays the journal)") from exc
        if cur.rowcount != 1:
            return False
        self._seq = int(cur.lastrowid or self._max_seq())
        return True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends into one transaction: all of them are durable at the end, or none.

        Use it where many records make one step (a replay bar's decision, orders and PnL); a
        live bar can do the same to pay one fsync instead of several. Inside, ``append``
        returns as usual (keys deduplicate within the batch too) but nothing is durable until
        the block exits; an exception rolls every record of the block back and propagates, and
        in-memory state built from those appends must then be rebuilt by recovery. Nested
        batches join the outer one.

        :raises JournalError: the commit failed (disk full, I/O error, budget).
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot start a batch ({exc})") from exc
        self._depth = 1
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._seq = self._max_seq()
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"journal {self.path}: committing a batch failed ({exc}); "
                                   "none of its records were written. Trading halts: free "
                                   "disk space or fix the device, then restart") from exc
            raise
        finally:
            self._depth = 0

    # --- reading --------------------------------------------------------------------------

    def read(self, kind: str | None = None, since_seq: int = 0) -> Iterator[Record]:
        """Records after ``since_seq`` in journal order.

        :param kind: one kind, or ``None`` for every kind.
        :param since_seq: only records with ``seq > since_seq``.
        :return: an iterator of :class:`Record`.
        """
        if kind is None:
            rows = self._db.execute("SELECT seq, kind, key, ts_ns, payload FROM records "
                                    "WHERE seq > ? ORDER BY seq", (since_seq,))
        else:
            rows = self._db.execute("SELECT seq, kind, key, ts_ns, payload FROM records "
                                    "WHERE kind = ? AND seq > ? ORDER BY seq", (kind, since_seq))
        for row in rows:
            yield _record(row)

    def last(self, kind: str) -> Record | None:
        """:param kind: a kind. :return: its newest record, or ``None``."""
        row = self._db.execute("SELECT seq, kind, key, ts_ns, payload FROM records "
                               "WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)).fetchone()
        return None if row is None else _record(row)

    def get(self, kind: str, key: str) -> Record | None:
        """:param kind: a kind. :param key: its key. :return: that record, or ``None``."""
        row = self._db.execute("SELECT seq, kind, key, ts_ns, payload FROM records "
                               "WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else _record(row)

    def count(self, kind: str | None = None) -> int:
        """:param kind: a kind, or ``None`` for all. :return: the number of records."""
        if kind is None:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM records WHERE kind = ?",
                                    (kind,)).fetchone()[0])

    @property
    def last_seq(self) -> int:
        """:return: the newest record's seq, 0 for an empty journal."""
        return self._max_seq() if self.readonly else self._seq

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0])

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and release the writer lock (idempotent)."""
        self._db.close()
        self._release_lock()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> str:
        try:
            if not self.readonly:
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                # the snapshots name the journal they belong to: a journal replaced by another
                # (restored from an older backup, or deleted) must not replay onto them
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('journal_id', ?)",
                                 (os.urandom(8).hex(),))
                check = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise JournalError(f"{self.path} failed SQLite's quick_check ({check}); "
                                       "restore the journal from the backup")
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path} is not a readable journal ({exc}); move it away "
                               "and restore it from the backup") from exc
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise JournalError(f"{self.path} has journal schema {version!r}; this executor "
                               f"reads schema {SCHEMA_VERSION}: run the executor version that "
                               "wrote it")
        return str(meta["journal_id"])

    def _take_lock(self) -> IO[str]:
        private_dir(self.path.parent)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise JournalError(f"{self.path} is being written by another process (pid "
                               f"{holder}); run one executor per journal, or open it with "
                               "readonly=True to inspect it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None
