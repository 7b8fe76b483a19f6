"""Bars as a stream: the Redis Streams wire format, store replay in ts order, pacing, publishing.

The live executor reads bars from Redis Streams (``executor.feeds.redis_stream``); a vendor
adapter, or :func:`publish_bars` for tests and demos, writes them. Both sides use this module,
so the format has one definition. It imports only the leaves at import time: pandas (the store)
is loaded inside the functions that read the store, and the Redis client is passed in.

Wire format (one stream per symbol, ``<prefix>:<SYMBOL>``, e.g. ``mia:bars:ES``; every field a
flat ASCII string, as Redis stores them):

==============  ===============================================================================
``ts_ns``       bar close, integer nanoseconds since the epoch, UTC, a multiple of 1000 (a bar's
                ``ts`` is a microsecond ``datetime``: a finer stamp could not round-trip)
``symbol``      the root symbol; must equal the stream's symbol
``open`` …      ``open, high, low, close, volume``: decimal float strings (``repr(float)``),
                finite
optional        each group of :data:`mia.types.OPTIONAL_GROUPS` all-or-nothing, float strings
==============  ===============================================================================

Any other field is rejected (``unknown_field``): a misspelt optional column would otherwise
vanish silently. :func:`decode_message` checks the *format* only (fields, numbers, symbol);
market rules (OHLC order, monotonic ts, staleness, jumps) are the inline validator's, run by the
executor's loop on every bar whatever its source.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mia.clock import Clock, SystemClock
from mia.errors import DataValidationError, OperationalError, StoreError
from mia.types import OPTIONAL_GROUPS, Bar

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_PREFIX: Final[str] = "mia:bars"
REJECT_CODES: Final[tuple[str, ...]] = (
    "missing_field", "unknown_field", "partial_group", "not_a_number", "non_finite", "bad_ts",
    "wrong_symbol",
)
_PRICES: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume")
_REQUIRED: Final[tuple[bytes, ...]] = (b"ts_ns", b"symbol", *(f.encode() for f in _PRICES))
_GROUPS: Final[dict[str, tuple[bytes, ...]]] = {
    g: tuple(c.encode() for c in cols) for g, cols in OPTIONAL_GROUPS.items()
}
_KNOWN: Final[frozenset[bytes]] = frozenset(_REQUIRED).union(*_GROUPS.values())
_EPOCH: Final[datetime] = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS_NS: Final[int] = 2**63 - 1
_NS: Final[float] = 1e9


def stream_key(symbol: str, prefix: str = DEFAULT_PREFIX) -> str:
    """:return: the stream of one symbol, ``<prefix>:<symbol>``."""
    return f"{prefix}:{symbol}"


def dead_letter_key(stream: str) -> str:
    """:return: where malformed entries of ``stream`` are copied, with the reason."""
    return f"{stream}:dead"


def bar_time(ts_ns: int) -> datetime:
    """:param ts_ns: ns since the epoch, UTC.
    :return: the tz-aware UTC datetime (exact to the microsecond; no float rounding).
    """
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def time_ns(ts: datetime) -> int:
    """:param ts: a tz-aware datetime.
    :return: ns since the epoch (exact; the inverse of :func:`bar_time`).
    """
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


class MalformedMessage(DataValidationError):
    """A stream entry that is not a bar of the wire format.

    :param code: one of :data:`REJECT_CODES`.
    :param reason: what is wrong, quoting the offending field.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def encode_bar(ts_ns: int, bar: Bar) -> dict[str, str]:
    """The wire fields of one bar.

    :param ts_ns: the bar's close, ns since the epoch (must agree with ``bar.ts``).
    :param bar: the bar; ``extra`` holds whole optional groups.
    :return: field -> string, ready for ``XADD``.
    """
    fields = {"ts_ns": str(int(ts_ns)), "symbol": bar.symbol}
    for name in _PRICES:
        fields[name] = repr(float(getattr(bar, name)))
    for name, value in (bar.extra or {}).items():
        fields[name] = repr(float(value))
    return fields


def decode_message(fields: Mapping[bytes, bytes], symbol: str) -> tuple[int, Bar]:
    """Parse one stream entry of ``symbol``'s stream.

    :param fields: the entry's fields as Redis returns them (bytes -> bytes).
    :param symbol: the symbol the stream carries.
    :return: ``(ts_ns, bar)``.
    :raises MalformedMessage: the entry breaks the wire format; ``code`` says how.
    """
    try:
        raw_ts, raw_sym = fields[b"ts_ns"], fields[b"symbol"]
        raw = [fields[b"open"], fields[b"high"], fields[b"low"], fields[b"close"],
               fields[b"volume"]]
    except KeyError:
        missing = [k.decode() for k in _REQUIRED if k not in fields]
        raise MalformedMessage("missing_field", f"required fields {missing} are absent; a bar "
                               f"needs {[k.decode() for k in _REQUIRED]}") from None
    if raw_sym != symbol.encode():
        raise MalformedMessage("wrong_symbol", f"symbol={raw_sym!r} on the stream of {symbol}")
    try:
        ts_ns = int(raw_ts)
    except ValueError:
        raise MalformedMessage("bad_ts", f"ts_ns={raw_ts!r} is not an integer (ns since the "
                               "epoch, UTC)") from None
    if not 0 < ts_ns <= _MAX_TS_NS or ts_ns % 1000:
        raise MalformedMessage("bad_ts", f"ts_ns={ts_ns} must be a positive int64 multiple of "
                               "1000 (microsecond resolution)")
    values = [_number(name, value) for name, value in zip(_PRICES, raw, strict=True)]
    o, h, lo, c, v = values
    extra = _decode_extra(fields) if len(fields) > len(_REQUIRED) else None
    return ts_ns, Bar(bar_time(ts_ns), symbol, o, h, lo, c, v, extra)


def _number(name: str, raw: bytes) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise MalformedMessage("not_a_number", f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise MalformedMessage("non_finite", f"{name}={raw!r} is not a finite number")
    return value


def _decode_extra(fields: Mapping[bytes, bytes]) -> dict[str, float]:
    unknown = sorted(k.decode(errors="replace") for k in fields if k not in _KNOWN)
    if unknown:
        raise MalformedMessage("unknown_field", f"fields {unknown} are not in the bar format; "
                               "optional columns are those of mia.types.OPTIONAL_GROUPS")
    extra: dict[str, float] = {}
    for group, cols in _GROUPS.items():
        present = [c for c in cols if c in fields]
        if not present:
            continue
        if len(present) != len(cols):
            missing = [c.decode() for c in cols if c not in fields]
            raise MalformedMessage("partial_group", f"group {group!r} lacks {missing}; an "
                                   "optional group is all-or-nothing")
        for col in cols:
            name = col.decode()
            extra[name] = _number(name, fields[col])
    return extra


def iter_store_bars(
    store_root: Path,
    symbols: Sequence[str],
    start: date | None = None,
    end: date | None = None,
    *,
    start_after: Mapping[str, int] | None = None,
) -> Iterator[tuple[int, Bar]]:
    """Bars of the Parquet store, merged across symbols in ``(ts, symbol)`` order.

    Arguments are checked and partitions listed when called; partitions are then read lazily,
    one at a time per symbol, so memory holds one trade date per symbol.

    :param store_root: the raw store's root (``$MIA_HOME/data/raw``).
    :param symbols: symbols to replay, e.g. ``["ES", "MNQ"]``.
    :param start: first trade date (inclusive), or ``None`` for the first stored.
    :param end: last trade date (inclusive), or ``None`` for the last stored.
    :param start_after: symbol -> ts_ns: yield only bars strictly after it (a restart resumes
        after the last journaled bar).
    :return: an iterator of ``(ts_ns, bar)``.
    :raises StoreError: a symbol has no partition in the range.
    :raises OperationalError: duplicate symbols, or ``start_after`` names an unknown symbol.
    """
    from mia.data.store import BarStore

    after = dict(start_after or {})
    if not symbols or len(set(symbols)) != len(symbols):
        raise OperationalError(f"replay: symbols={list(symbols)} must be non-empty and unique")
    if set(after) - set(symbols):
        raise OperationalError(f"replay: start_after names {sorted(set(after) - set(symbols))} "
                               f"which are not replayed ({list(symbols)})")
    store = BarStore(store_root)
    plans: list[Iterator[tuple[int, str, Bar]]] = []
    for sym in symbols:
        days = store.dates(sym, start, end)
        if not days:
            raise StoreError(f"replay: no {sym} bars in {store.root} for {start or '…'}.."
                             f"{end or '…'}; create them with 'mia data generate' or "
                             "'mia data ingest'")
        if sym in after:
            # a bar's trade date is its UTC date or the next one (ET + 6 h), and trade dates
            # grow with ts: partitions before the UTC date of the resume point hold no later bar
            first = bar_time(after[sym]).date()
            days = [d for d in days if d >= first]
        plans.append(_symbol_bars(store, sym, days, after.get(sym)))
    return _merged(plans)


def _merged(plans: list[Iterator[tuple[int, str, Bar]]]) -> Iterator[tuple[int, Bar]]:
    # heapq.merge is lazy: one pending bar per symbol
    for ts_ns, _, bar in heapq.merge(*plans):
        yield ts_ns, bar


def _symbol_bars(store: Any, symbol: str, days: Iterable[date],
                 after_ns: int | None) -> Iterator[tuple[int, str, Bar]]:
    for day in days:
        yield from _frame_bars(store.read_partition(symbol, day), symbol, after_ns)


def _frame_bars(frame: pd.DataFrame, symbol: str,
                after_ns: int | None) -> Iterator[tuple[int, str, Bar]]:
    import pandas as pd

    ts = pd.DatetimeIndex(frame["ts"]).asi8.tolist()
    cols = [frame[c].to_numpy(dtype="float64").tolist() for c in _PRICES]
    extra_names = [c for c in frame.columns if c not in ("ts", "symbol", *_PRICES)]
    extra_cols = [frame[c].to_numpy(dtype="float64").tolist() for c in extra_names]
    for i, ts_ns in enumerate(ts):
        if after_ns is not None and ts_ns <= after_ns:
            continue
        extra = {n: col[i] for n, col in zip(extra_names, extra_cols, strict=True)} or None
        bar = Bar(bar_time(ts_ns), symbol, cols[0][i], cols[1][i], cols[2][i], cols[3][i],
                  cols[4][i], extra)
        yield ts_ns, symbol, bar


class Pacer:
    """Holds a recorded stream to a pace: real time (1.0), N times faster, or no wait at all.

    The schedule is cumulative (bar k is due ``(ts_k - ts_0) / speed`` after the first), so a
    slow consumer catches up instead of drifting behind; ``max_gap_s`` caps one wait (a weekend
    in a real-time replay would otherwise pause for two days).

    :param speed: replay speed; ``None`` or ``0`` means as fast as possible.
    :param clock: time and sleep (a :class:`mia.clock.TestClock` in tests: they never sleep).
    :param max_gap_s: longest single wait in seconds, or ``None`` for no cap.
    :raises OperationalError: negative or non-finite speed, or non-positive ``max_gap_s``.
    """

    def __init__(self, speed: float | None, clock: Clock | None = None,
                 max_gap_s: float | None = None) -> None:
        if speed is not None and not (math.isfinite(speed) and speed >= 0):
            raise OperationalError(f"replay: speed={speed!r} must be >= 0 (1 = real time, N = N "
                                   "times faster, 0 or None = as fast as possible)")
        if max_gap_s is not None and not (math.isfinite(max_gap_s) and max_gap_s > 0):
            raise OperationalError(f"replay: max_gap_s={max_gap_s!r} must be a positive number "
                                   "of seconds or None")
        self.speed = speed or None
        self.clock = clock or SystemClock()
        self.max_gap_s = max_gap_s
        self._last_ns: int | None = None
        self._due = 0.0

    def wait(self, ts_ns: int) -> None:
        """Block until the bar stamped ``ts_ns`` is due.

        :param ts_ns: the next bar's ts, ns since the epoch; not before the previous one.
        """
        if self.speed is None:
            return
        now = self.clock.monotonic()
        if self._last_ns is None:
            self._due = now
        else:
            gap = max(0.0, (ts_ns - self._last_ns) / _NS / self.speed)
            if self.max_gap_s is not None:
                gap = min(gap, self.max_gap_s)
            self._due += gap
        self._last_ns = ts_ns
        if self._due > now:
            self.clock.sleep(self._due - now)


def publish_bars(
    client: Any,
    store_root: Path,
    symbols: Sequence[str],
    start: date | None = None,
    end: date | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    speed: float | None = None,
    clock: Clock | None = None,
    maxlen: int | None = None,
    batch: int = 500,
) -> int:
    """Write bars of the store into Redis streams, as a vendor adapter would.

    :param client: a ``redis.Redis`` client (``decode_responses`` either way).
    :param store_root: the raw store's root.
    :param symbols: symbols to publish, each to ``<prefix>:<SYMBOL>``.
    :param start: first trade date (inclusive) or ``None``.
    :param end: last trade date (inclusive) or ``None``.
    :param prefix: stream key prefix.
    :param speed: pace (see :class:`Pacer`); ``None``/``0`` publishes in pipelined batches.
    :param clock: time and sleep for pacing.
    :param maxlen: trim each stream to about this many entries (``XADD MAXLEN ~``), or ``None``.
    :param batch: entries per pipeline round trip when not paced.
    :return: the number of bars published.
    """
    if batch < 1:
        raise OperationalError(f"publish: batch={batch} must be >= 1")
    pacer = Pacer(speed, clock)
    pipe = client.pipeline(transaction=False)
    pending = count = 0
    for ts_ns, bar in iter_store_bars(store_root, symbols, start, end):
        pacer.wait(ts_ns)
        pipe.xadd(stream_key(bar.symbol, prefix), encode_bar(ts_ns, bar), maxlen=maxlen,
                  approximate=True)
        pending += 1
        count += 1
        if pending >= batch or pacer.speed is not None:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()
    return count
