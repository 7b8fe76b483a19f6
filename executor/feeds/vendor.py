"""The interface of a real-time vendor feed (IQFeed-like), and its adapter to the loop's Feed.

MIA ships no vendor client: a vendor adapter implements :class:`VendorSession` (connect,
subscribe, read completed bars, look up history) in its own package, and :class:`VendorFeed`
turns any such session into a :class:`~executor.feeds.base.Feed` with the behaviour every live
feed needs: reconnect with backoff, re-subscribe, fill the gap of a disconnection from the
vendor's history, drop the overlap, and report malformed bars as :class:`BadMessage` instead of
raising them into the loop. A vendor with its own durable queue can instead publish into Redis
Streams (:func:`mia.data.stream.publish_bars` shows the format) and the executor reads it with
:class:`~executor.feeds.redis_stream.RedisStreamFeed`.

Vendor bars need no ack (``FeedItem.ack`` is ``None``); after a restart the loop asks the
session's history for the bars after the last journaled one (``start_after``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from executor.feeds.base import Backoff, BadMessage, FeedEvent, FeedItem, Idle
from mia.clock import Clock, SystemClock
from mia.data.stream import time_ns
from mia.errors import OperationalError, TemporaryError
from mia.types import Bar


@runtime_checkable
class VendorSession(Protocol):
    """One connection to a market-data vendor.

    Every method may raise :class:`mia.errors.TemporaryError` when the connection is down or
    drops; :class:`VendorFeed` then reconnects. Bars are completed 1-minute bars stamped at
    their close (tz-aware UTC), optional groups in ``Bar.extra``.
    """

    name: str

    def connect(self) -> None:
        """Open the connection (log in); raise ``TemporaryError`` if the vendor is unreachable."""
        ...

    def subscribe(self, symbols: Sequence[str]) -> None:
        """Ask for live bars of ``symbols`` (root symbols; the session maps front months)."""
        ...

    def read(self, timeout_s: float) -> list[Bar]:
        """:return: bars completed since the last call, waiting up to ``timeout_s`` for one;
        ``[]`` when none completed in time.
        """
        ...

    def history(self, symbol: str, after_ts_ns: int) -> list[Bar]:
        """:return: completed bars of ``symbol`` strictly after ``after_ts_ns``, in ts order."""
        ...

    def close(self) -> None:
        """Log out and release the connection; idempotent."""
        ...


class VendorFeed:
    """A :class:`VendorSession` as a loop :class:`~executor.feeds.base.Feed`.

    :param session: the vendor connection.
    :param symbols: symbols to subscribe.
    :param timeout_s: longest wait for a bar before an :class:`Idle` is yielded.
    :param start_after: symbol -> ts_ns of the last journaled bar: the first connect fetches
        the bars after it from the vendor's history, as every reconnect does for its gap.
    :param backoff: reconnect delays (default 0.1 s doubling to 5 s).
    :param clock: the sleep used between reconnect attempts.
    :raises OperationalError: bad symbols or timeout.
    """

    def __init__(
        self,
        session: VendorSession,
        symbols: Sequence[str],
        *,
        timeout_s: float = 1.0,
        start_after: Mapping[str, int] | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise OperationalError(f"vendor feed: symbols={list(symbols)} must be non-empty "
                                   "and unique")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise OperationalError(f"vendor feed: timeout_s={timeout_s!r} must be > 0")
        unknown = set(start_after or {}) - set(symbols)
        if unknown:
            raise OperationalError(f"vendor feed: start_after names {sorted(unknown)}, not "
                                   f"subscribed ({list(symbols)})")
        self._session = session
        self._symbols = tuple(symbols)
        self._timeout_s = timeout_s
        self._last: dict[str, int] = dict(start_after or {})
        self._backoff = backoff or Backoff()
        self._clock = clock or SystemClock()
        self._connected = self._closed = self._connected_once = False
        self._seq = 0
        self.delivered = self.bad = self.reconnects = 0

    def __iter__(self) -> Iterator[FeedEvent]:
        """:return: bars (gap fills first after a reconnect), bad bars and idle ticks."""
        try:
            while not self._closed:
                try:
                    if not self._connected:
                        yield from self._connect()
                        continue
                    bars = self._session.read(self._timeout_s)
                except TemporaryError as exc:
                    yield from self._lost(exc)
                    continue
                if not bars:
                    yield Idle(self._timeout_s, True, "no data")
                    continue
                yield from self._emit(bars)
        finally:
            self._session.close()

    def close(self) -> None:
        """Stop after the current wait; the session is closed when iteration ends."""
        self._closed = True

    def _connect(self) -> Iterator[FeedEvent]:
        self._session.connect()
        self._session.subscribe(self._symbols)
        if self._connected_once:
            self.reconnects += 1
        self._connected = self._connected_once = True
        self._backoff.reset()
        # the gap: bars completed while disconnected (or since the last journaled bar)
        for symbol, after in list(self._last.items()):
            yield from self._emit(self._session.history(symbol, after))

    def _lost(self, exc: TemporaryError) -> Iterator[FeedEvent]:
        was_connected, self._connected = self._connected, False
        delay = 0.0 if was_connected else self._backoff.next()
        if delay:
            self._clock.sleep(delay)
        yield Idle(delay, False, f"{self._session.name}: {exc}")

    def _emit(self, bars: list[Bar]) -> Iterator[FeedEvent]:
        for bar in bars:
            self._seq += 1
            source_id = f"{self._session.name}:{self._seq}"
            fault = _format_fault(bar, self._symbols)
            if fault is not None:
                self.bad += 1
                yield BadMessage(source_id, fault[0], fault[1], str(bar.symbol))
                continue
            ts_ns = time_ns(bar.ts)
            if ts_ns <= self._last.get(bar.symbol, -1):
                continue  # overlap of a gap fill with live bars already delivered
            self._last[bar.symbol] = ts_ns
            self.delivered += 1
            yield FeedItem(bar, None, source_id, ts_ns)


def _format_fault(bar: Bar, symbols: Sequence[str]) -> tuple[str, str] | None:
    if bar.symbol not in symbols:
        return "wrong_symbol", f"symbol={bar.symbol!r} is not subscribed ({list(symbols)})"
    if bar.ts.tzinfo is None:
        return "bad_ts", f"ts={bar.ts.isoformat()} is naive; vendor bars must be tz-aware UTC"
    values = (("open", bar.open), ("high", bar.high), ("low", bar.low), ("close", bar.close),
              ("volume", bar.volume), *(bar.extra or {}).items())
    for name, value in values:
        if not isinstance(value, int | float):
            return "not_a_number", f"{name}={value!r} is not a number"
        if not math.isfinite(value):
            return "non_finite", f"{name}={value!r} is not a finite number"
    return None
