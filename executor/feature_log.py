"""Live feature log writer: the bundle's raw feature rows, as computed live, for the drift DAG.

The loop holds one :class:`FeatureChannel` per (symbol, bundle) and calls
:meth:`FeatureChannel.append` once per bar: the row is copied into a preallocated block
(no allocation per tick). A full block, or every ``flush_seconds`` whatever is buffered, is
handed to a daemon thread that writes it as one Parquet file (layout and reader in
:mod:`mia.drift.live_log`): temp name, fsync, rename, fsync of the folder, so a crash at any
point leaves complete files only (a stray ``.part-….tmp`` of a dead process is swept by the next
writer and never read).

Memory is bounded: at most one block per channel plus ``max_pending_rows`` rows waiting for the
disk. When the disk cannot keep up (or fails), whole blocks are dropped and counted
(``rows_dropped``) instead of growing the heap: the log is monitoring data and trading never
waits for it. A failed write is retried at the next flush while it fits in the budget. Rows
still buffered when the process is killed are lost (at most one block or ``flush_seconds`` per
channel); :meth:`FeatureLog.close` writes them on a clean stop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from mia.drift.live_log import BASE_COLUMNS, PART_PREFIX, PART_SUFFIX, day_dir, symbol_dir
from mia.errors import OperationalError

_DAY_NS: Final[int] = 86_400 * 1_000_000_000
_log = logging.getLogger("executor.feature_log")


class _Chunk(NamedTuple):
    symbol: str
    model_version: str
    names: tuple[str, ...]
    ts: np.ndarray  # (n,) int64 ns
    values: np.ndarray  # (n, F) float64: one row per bar


class FeatureChannel:
    """The rows of one symbol computed by one bundle (one feature list).

    Created by :meth:`FeatureLog.channel`; :meth:`append` is the only call in the hot loop.
    """

    __slots__ = ("_cap", "_lock", "_log", "_n", "_shape", "_ts", "_vals", "model_version",
                 "names", "symbol")

    def __init__(self, log: FeatureLog, symbol: str, model_version: str,
                 names: tuple[str, ...], capacity: int) -> None:
        self._log = log
        self.symbol, self.model_version, self.names = symbol, model_version, names
        self._cap = capacity
        self._shape = (len(names),)
        self._lock = threading.Lock()
        self._ts = np.empty(capacity, dtype=np.int64)
        # row-major: append writes one contiguous row; the writer thread pays for the columns
        self._vals = np.empty((capacity, len(names)), dtype=np.float64)
        self._n = 0

    def append(self, ts_ns: int, values: np.ndarray) -> None:
        """Buffer one row.

        :param ts_ns: the bar's close, ns since the epoch (UTC).
        :param values: the raw feature values, shape ``(len(names),)``; copied.
        :raises OperationalError: the vector does not match the channel's feature list.
        """
        if values.shape != self._shape:
            raise OperationalError(f"feature log: {self.symbol} row has shape {values.shape}, "
                                   f"the channel logs {self._shape[0]} features; open a new "
                                   "channel when the bundle changes")
        with self._lock:
            n = self._n
            self._ts[n] = ts_ns
            self._vals[n] = values
            self._n = n + 1
            if n + 1 == self._cap:
                self._hand_over()

    def _hand_over(self) -> None:
        # caller holds self._lock
        n = self._n
        if n == 0:
            return
        self._n = 0
        chunk = _Chunk(self.symbol, self.model_version, self.names, self._ts[:n],
                       self._vals[:n])
        if self._log._submit(chunk):
            # the writer owns the old arrays now; np.empty does not touch the pages
            self._ts = np.empty(self._cap, dtype=np.int64)
            self._vals = np.empty((self._cap, self._shape[0]), dtype=np.float64)

    def flush(self) -> None:
        """Hand the buffered rows to the writer now (the time-based flush calls this)."""
        with self._lock:
            self._hand_over()


class FeatureLog:
    """Writes every channel's rows under ``<home>/live/features/`` from one daemon thread.

    :param home: ``MIA_HOME``.
    :param flush_rows: rows per block: a full block is written at once.
    :param flush_seconds: buffered rows are written at least this often.
    :param max_pending_rows: rows allowed to wait for the disk; beyond it blocks are dropped.
    :raises OperationalError: non-positive sizes.
    """

    def __init__(self, home: Path, *, flush_rows: int = 4096, flush_seconds: float = 60.0,
                 max_pending_rows: int = 65_536) -> None:
        if flush_rows < 1 or not flush_seconds > 0 or max_pending_rows < flush_rows:
            raise OperationalError(f"feature log: need flush_rows >= 1 ({flush_rows}), "
                                   f"flush_seconds > 0 ({flush_seconds}) and max_pending_rows "
                                   f">= flush_rows ({max_pending_rows})")
        self.home = Path(home)
        root = symbol_dir(self.home, "_").parent
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"feature log: cannot create {root} ({exc}); point MIA_HOME "
                                   "at a writable directory") from exc
        self._flush_rows, self._flush_seconds = flush_rows, flush_seconds
        self._budget = max_pending_rows
        self._channels: list[FeatureChannel] = []
        self._pending: deque[_Chunk] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._requested = self._served = 0
        self._stopping = False
        self._seq = 0
        self.rows_written = self.rows_dropped = self.files_written = self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="mia-feature-log", daemon=True)
        self._thread.start()

    def channel(self, symbol: str, model_version: str, feature_names: Sequence[str]
                ) -> FeatureChannel:
        """Open the channel of one symbol and bundle.

        :param symbol: the symbol.
        :param model_version: the bundle's registered version (or its hash offline).
        :param feature_names: the bundle's raw feature names, in the order rows will come.
        :raises OperationalError: empty, duplicate or reserved feature names.
        """
        names = tuple(feature_names)
        reserved = sorted(set(names) & set(BASE_COLUMNS))
        if not names or len(set(names)) != len(names) or reserved:
            raise OperationalError(f"feature log: feature names must be non-empty, unique and "
                                   f"not {list(BASE_COLUMNS)} (got {len(names)} names, "
                                   f"reserved {reserved})")
        _sweep_dead_temps(symbol_dir(self.home, symbol))
        chan = FeatureChannel(self, symbol, str(model_version), names, self._flush_rows)
        with self._lock:
            self._channels.append(chan)
        return chan

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything buffered now and wait for it.

        :param timeout_s: longest wait.
        :return: ``True`` if the writer finished in time.
        """
        with self._done:
            self._requested += 1
            target = self._requested
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._served >= target, timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is buffered, then stop the writer thread."""
        if not self._thread.is_alive():
            return
        self._stopping = True
        self.flush(timeout_s)
        self._thread.join(timeout_s)

    def __enter__(self) -> FeatureLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, chunk: _Chunk) -> bool:
        n = chunk.ts.shape[0]
        with self._lock:
            if self._pending_rows + n > self._budget:
                self.rows_dropped += n
                return False
            self._pending.append(chunk)
            self._pending_rows += n
        if n >= self._flush_rows:
            self._wake.set()
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            with self._lock:
                target, stopping = self._requested, self._stopping
                channels = list(self._channels)
            for chan in channels:  # time-based (or requested) flush of partial blocks
                chan.flush()
            self._write_pending()
            with self._done:
                self._served = max(self._served, target)
                self._done.notify_all()
            if stopping:
                return

    def _write_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                chunk = self._pending[0]
            try:
                self._write(chunk)
            except Exception as exc:  # noqa: BLE001 - disk full, permissions, pyarrow errors
                self.write_errors += 1
                _log.warning("feature log: writing %d %s rows failed (%s); retried at the "
                             "next flush", chunk.ts.shape[0], chunk.symbol, exc)
                return
            with self._lock:
                self._pending.popleft()
                self._pending_rows -= chunk.ts.shape[0]
            self.rows_written += chunk.ts.shape[0]

    def _write(self, chunk: _Chunk) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        days = chunk.ts // _DAY_NS
        cuts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            n = hi - lo
            columns = {
                "ts": pa.array(chunk.ts[lo:hi], type=pa.timestamp("ns", tz="UTC")),
                "symbol": pa.repeat(pa.scalar(chunk.symbol, pa.string()), n),
                "model_version": pa.repeat(pa.scalar(chunk.model_version, pa.string()), n),
            }
            block = np.ascontiguousarray(chunk.values[lo:hi].T)  # one copy: (F, n) columns
            for j, name in enumerate(chunk.names):
                columns[name] = pa.array(block[j])
            day = datetime.fromtimestamp(int(days[lo]) * 86_400, tz=UTC).date()
            folder = day_dir(self.home, chunk.symbol, day)
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{PART_PREFIX}{int(chunk.ts[lo]):019d}-{os.getpid()}-{self._seq:06d}"
            final = folder / f"{name}{PART_SUFFIX}"
            tmp = folder / f".{name}{PART_SUFFIX}.tmp"
            try:
                pq.write_table(pa.table(columns), tmp, compression="zstd")
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(folder)  # the rename itself survives a power loss
            self.files_written += 1


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_dead_temps(root: Path) -> None:
    """Delete ``.part-<ts>-<pid>-<seq>.parquet.tmp`` files whose writer process is gone."""
    if not root.is_dir():
        return
    for tmp in root.glob(f"date=*/.{PART_PREFIX}*{PART_SUFFIX}.tmp"):
        try:
            pid = int(tmp.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
