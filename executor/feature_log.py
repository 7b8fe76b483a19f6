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
channel); :meth:`FeatureLog.close` writes them on a clean stop (the live executor's stop calls
it: ``executor.app.LiveExecutor``).

The loop appends through :class:`SlotFeatures`, which opens a channel per production bundle (a
swap may change the feature list). Each written block also goes, in the writer thread, to the
``on_rows`` callback: :class:`DriftGauges` turns the rows into ``mia_psi`` (the online PSI of
the bundle's top features against its drift reference) off the hot path.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np

from mia.data.files import pid_alive
from mia.drift.live_log import BASE_COLUMNS, PART_PREFIX, PART_SUFFIX, day_dir, symbol_dir
from mia.errors import OperationalError

if TYPE_CHECKING:
    from executor.metrics import ExecutorMetrics
    from executor.slot import ModelSlot

_DAY_NS: Final[int] = 86_400 * 1_000_000_000
PSI_TOP: Final[int] = 15  # features monitored: the executor dashboard plots topk(15) of mia_psi
PSI_WINDOW: Final[int] = 1380  # rows in the PSI window: one CME Globex session of minutes
PSI_MIN_BARS: Final[int] = 300  # rows before the gauges are set (DriftGauges)
_log = logging.getLogger("executor.feature_log")

# (symbol, model_version, feature names, ts (n,) int64 ns, values (n, F) float64)
RowSink = Callable[[str, str, tuple[str, ...], np.ndarray, np.ndarray], None]


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
    :param on_rows: called in the writer thread with each block once written (``symbol,
        model_version, names, ts, values``; :meth:`DriftGauges.observe`); its errors are
        logged, never raised.
    :raises OperationalError: non-positive sizes.
    """

    def __init__(self, home: Path, *, flush_rows: int = 4096, flush_seconds: float = 60.0,
                 max_pending_rows: int = 65_536, on_rows: RowSink | None = None) -> None:
        if flush_rows < 1 or not flush_seconds > 0 or max_pending_rows < flush_rows:
            raise OperationalError(f"feature log: need flush_rows >= 1 ({flush_rows}), "
                                   f"flush_seconds > 0 ({flush_seconds}) and max_pending_rows "
                                   f">= flush_rows ({max_pending_rows})")
        self.home = Path(home)
        root = symbol_dir(self.home, "_").parent
        try:
            _private_dirs(root, self.home)
        except OSError as exc:
            raise OperationalError(f"feature log: cannot create {root} ({exc}); point MIA_HOME "
                                   "at a writable directory") from exc
        self._flush_rows, self._flush_seconds = flush_rows, flush_seconds
        self._budget = max_pending_rows
        self._on_rows = on_rows
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

    def release(self, channel: FeatureChannel) -> None:
        """Hand a channel's buffered rows to the writer and stop flushing it (its bundle was
        swapped out; the rows are written at the next flush).

        :param channel: a channel of this log.
        """
        channel.flush()
        with self._lock:
            self._channels = [c for c in self._channels if c is not channel]

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
            if self._on_rows is not None:
                try:
                    self._on_rows(chunk.symbol, chunk.model_version, chunk.names, chunk.ts,
                                  chunk.values)
                except Exception as exc:  # noqa: BLE001 - monitoring never stops the writer
                    _log.warning("feature log: the rows listener failed on %d %s rows (%s: %s)",
                                 chunk.ts.shape[0], chunk.symbol, type(exc).__name__, exc)

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
            _private_dirs(folder, self.home)
            self._seq += 1
            name = f"{PART_PREFIX}{int(chunk.ts[lo]):019d}-{os.getpid()}-{self._seq:06d}"
            final = folder / f"{name}{PART_SUFFIX}"
            tmp = folder / f".{name}{PART_SUFFIX}.tmp"
            try:
                pq.write_table(pa.table(columns), tmp, compression="zstd")
                os.chmod(tmp, 0o600)  # pyarrow creates it with the umask's mode
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(folder)  # the rename itself survives a power loss
            self.files_written += 1


def _private_dirs(folder: Path, home: Path) -> None:
    # the folder and every folder between it and MIA_HOME: 0700 whatever the umask (the live
    # rows are the model's inputs; the journal's folder is private for the same reason)
    folder.mkdir(parents=True, exist_ok=True)
    for d in (folder, *folder.parents):
        if d == home or home not in d.parents:
            break
        if d.stat().st_mode & 0o777 != 0o700:
            os.chmod(d, 0o700)


class SlotFeatures:
    """The loop's feature log (``Services.features``): the latest rows of whichever bundle runs
    in a slot, one channel per bundle.

    A production swap changes the bundle and maybe its feature list: the new bundle's rows go
    to a channel of their own (its ``model_version`` column) and the old channel's last rows to
    the writer, instead of failing the width check or logging rows under the wrong version.
    :meth:`append` costs the slot look-up and an identity test on top of the channel's.

    :param log: the writer.
    :param symbol: the traded symbol.
    :param slot: returns the slot whose rows the loop appends (``lambda: ex.slots["production"]``).
    :param on_bundle: called with (model_version, feature names, the bundle's drift reference or
        ``None``) when a bundle's channel opens, in the loop's thread (:meth:`DriftGauges.use`).
    """

    __slots__ = ("_chan", "_for", "_log", "_on_bundle", "_slot_of", "symbol")

    def __init__(self, log: FeatureLog, symbol: str, slot: Callable[[], ModelSlot | None], *,
                 on_bundle: Callable[[str, tuple[str, ...], Mapping[str, Any] | None], Any]
                 | None = None) -> None:
        self._log, self.symbol = log, symbol
        self._slot_of, self._on_bundle = slot, on_bundle
        self._for: ModelSlot | None = None
        self._chan: FeatureChannel | None = None

    def append(self, ts_ns: int, values: np.ndarray) -> None:
        """Buffer the slot's row of one bar.

        :param ts_ns: the bar's close, ns since the epoch (UTC).
        :param values: the slot's raw feature values (:meth:`ModelSlot.raw_features`).
        :raises OperationalError: the slot is empty, or the row does not match its bundle.
        """
        slot = self._slot_of()
        if slot is not self._for or self._chan is None:
            self._chan = self._open(slot)
        self._chan.append(ts_ns, values)

    def _open(self, slot: ModelSlot | None) -> FeatureChannel:
        if slot is None:
            raise OperationalError("feature log: the logged slot is empty; the production slot "
                                   "always holds a model")
        if self._chan is not None:
            self._log.release(self._chan)
        names = tuple(slot.bundle.spec.names)
        chan = self._log.channel(self.symbol, slot.version, names)
        self._for = slot
        if self._on_bundle is not None:
            self._on_bundle(slot.version, names, slot.bundle.drift)
        return chan


class DriftGauges:
    """``mia_psi``: the sliding-window PSI of a bundle's top features against the bundle's drift
    reference (:class:`mia.drift.psi.PSIMonitor`).

    The bundle's ``drift`` block (written by ``mia.pipelines.drift``: ``features`` in the
    selection's rank order, ``edges`` per feature with ``null`` for the ``+inf`` padding,
    ``expected`` shares with the missing bucket last) names the features; the first ``top`` of
    them that the bundle computes are monitored. Rows arrive off the hot path: the feature
    log's writer thread hands each written block to :meth:`observe` (``FeatureLog(on_rows=)``),
    so the gauges move once per flush (a full block or ``flush_seconds``). They are set once
    ``min_bars`` rows are in the window: before, the sampling noise of a 10-bin PSI (about
    (bins - 1) / n: 0.03 at 300 rows) is not small against ``drift.psi_threshold`` 0.2. A
    bundle without a usable reference leaves ``mia_psi`` empty, with a warning in the log.

    :param metrics: the gauges.
    :param top: features monitored. :param window: rows in the sliding window.
    :param min_bars: rows in the window before the gauges are set.
    :raises OperationalError: ``top`` or ``window`` below 1, ``min_bars`` outside 1..window.
    """

    def __init__(self, metrics: ExecutorMetrics, *, top: int = PSI_TOP,
                 window: int = PSI_WINDOW, min_bars: int = PSI_MIN_BARS) -> None:
        if top < 1 or window < 1 or not 1 <= min_bars <= window:
            raise OperationalError(f"drift gauges: need top >= 1 ({top}), window >= 1 "
                                   f"({window}) and 1 <= min_bars <= window ({min_bars})")
        self._metrics = metrics
        self._top, self._window, self._min = top, window, min_bars
        self._lock = threading.Lock()  # use() in the loop's thread, observe() in the writer's
        self._version: str | None = None
        self._names: tuple[str, ...] = ()
        self._monitor: Any = None
        self._columns = np.empty(0, dtype=np.intp)
        self.features: tuple[str, ...] = ()

    def use(self, model_version: str, names: Sequence[str],
            drift: Mapping[str, Any] | None) -> bool:
        """Monitor this bundle's rows from now on; the previous bundle's gauges are removed.

        :param model_version: the bundle's version (the rows' ``model_version``).
        :param names: its feature names, in the order of its rows.
        :param drift: its drift reference, or ``None``.
        :return: whether its features are monitored.
        """
        built: tuple[Any, np.ndarray, tuple[str, ...]] | None = None
        if drift is None:
            _log.warning("drift: bundle v%s has no drift reference; mia_psi stays empty until "
                         "a bundle with one (the drift stage's psi_reference.json) runs",
                         model_version)
        else:
            try:
                built = _reference(tuple(names), drift, self._top, self._window)
            except (OperationalError, KeyError, IndexError, TypeError, ValueError) as exc:
                _log.warning("drift: bundle v%s has an unusable drift reference (%s: %s); "
                             "mia_psi stays empty", model_version, type(exc).__name__, exc)
        with self._lock:
            self._version, self._names = model_version, tuple(names)
            self._monitor, self._columns, self.features = built or (None, self._columns, ())
            self._metrics.clear_psi()
        return built is not None

    def observe(self, symbol: str, model_version: str, names: tuple[str, ...], ts: np.ndarray,
                values: np.ndarray) -> None:
        """Add a block of logged rows (the :data:`RowSink` signature); rows of another bundle
        than the one in :meth:`use` are ignored.

        :param symbol: the rows' symbol. :param model_version: the bundle that computed them.
        :param names: their feature names. :param ts: their bar closes, ns.
        :param values: (n, len(names)) raw feature values.
        """
        with self._lock:
            monitor = self._monitor
            if monitor is None or model_version != self._version or names != self._names:
                return
            block = np.ascontiguousarray(values[:, self._columns], dtype=np.float64)
            for row in block:
                monitor.update(row)
            if monitor.n_observed >= self._min:
                self._metrics.set_psi(self.features, monitor.psi().tolist())


def _reference(names: tuple[str, ...], drift: Mapping[str, Any], top: int,
               window: int) -> tuple[Any, np.ndarray, tuple[str, ...]]:
    # the monitor of the reference's first `top` features the bundle computes
    from mia.drift.psi import PSIMonitor

    listed = [str(n) for n in drift["features"]]
    at = {n: j for j, n in enumerate(names)}
    picked = [i for i, n in enumerate(listed) if n in at][:top]
    if not picked:
        raise OperationalError(f"none of its {len(listed)} features is among the bundle's "
                               f"{len(names)}")
    edges = np.array([[np.inf if e is None else float(e) for e in drift["edges"][i]]
                      for i in picked], dtype=np.float64)
    expected = np.array([drift["expected"][i] for i in picked], dtype=np.float64)
    features = tuple(listed[i] for i in picked)
    columns = np.array([at[f] for f in features], dtype=np.intp)
    return PSIMonitor(edges, window, expected), columns, features


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
        if pid != os.getpid() and not pid_alive(pid):
            tmp.unlink(missing_ok=True)
