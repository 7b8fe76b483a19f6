"""Bars from Redis Streams through a consumer group: no bar lost, none processed twice.

One stream per symbol, ``<prefix>:<SYMBOL>`` (``mia:bars:ES``), in the wire format of
:mod:`mia.data.stream` (flat fields, float strings). The feed reads with ``XREADGROUP`` as one
named consumer of one group (created with ``MKSTREAM`` if missing) and:

- **acks only when the loop says so.** ``FeedItem.ack()`` queues the entry id; the ids go out as
  ``XACK`` in the same pipeline round trip as the next ``XREADGROUP`` (and on :meth:`close`), so
  acking costs the hot loop a list append. A crash before the flush leaves the entry pending:
  it is delivered again and the journal's ``(symbol, ts_ns)`` dedup drops it.
- **reads its pending entries first** on every (re)connect — the entries delivered to this
  consumer but never acked (its PEL), including any whose reply a dropped connection swallowed —
  and only then new ones (``>``). That is why redis-py's own silent command retry is switched
  off: a retried ``XREADGROUP >`` would skip the swallowed entries until the next restart.
- **never raises a bad entry into the loop.** A malformed entry is copied to ``<stream>:dead``
  with ``_code``, ``_reason``, ``_id`` and ``_stream`` fields, acked in the same transaction, and
  yielded as :class:`BadMessage`. An entry trimmed from the stream (``MAXLEN``) while pending
  comes back empty and is reported the same way with code ``trimmed``.
- **reconnects with backoff** on a lost connection, yielding :class:`Idle` (``connected=False``)
  meanwhile so the loop's stale-feed breaker and stop requests keep running.

The loop must ack every item it has finished with, accepted or rejected by the validator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

from executor.feeds.base import Backoff, BadMessage, FeedEvent, FeedItem, Idle
from mia.clock import Clock, SystemClock
from mia.data.stream import DEFAULT_PREFIX, MalformedMessage, dead_letter_key, decode_message
from mia.data.stream import stream_key as _stream_key
from mia.errors import OperationalError

_ENTRY_ID: Final = re.compile(r"^(\$|0|\d+-\d+|\d+)$")


class RedisStreamFeed:
    """A consumer-group reader of per-symbol bar streams, as a :class:`~executor.feeds.base.Feed`.

    Nothing connects at construction: a Redis that is down at start shows up as :class:`Idle`
    events while the feed retries, never as an exception.

    :param url: ``redis://[:password@]host:port/db`` (take the password from the environment).
    :param symbols: symbols to read, one stream each.
    :param group: consumer group name (one per executor deployment).
    :param consumer: this process's consumer name; keep it stable across restarts so the
        pending entries of the previous run are found.
    :param prefix: stream key prefix (a trailing ``:`` is dropped).
    :param start_id: where a *newly created* group starts: ``"$"`` only entries added after it
        (the default: a new executor does not trade a backlog of stale bars), ``"0"`` the whole
        stream.
    :param block_ms: longest wait for new entries before an :class:`Idle` is yielded.
    :param count: most entries per read.
    :param backoff: reconnect delays (default 0.1 s doubling to 5 s).
    :param clock: the sleep used between reconnect attempts.
    :param dead_maxlen: approximate cap on each dead-letter stream's length.
    :param client_name: ``CLIENT SETNAME`` of the connection (operators find it in
        ``CLIENT LIST``); default ``mia-executor:<consumer>``.
    :raises OperationalError: a bad URL or argument.
    """

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        *,
        group: str,
        consumer: str,
        prefix: str = DEFAULT_PREFIX,
        start_id: str = "$",
        block_ms: int = 1000,
        count: int = 100,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        dead_maxlen: int = 10_000,
        client_name: str | None = None,
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise OperationalError(f"redis feed: symbols={list(symbols)} must be non-empty and "
                                   "unique")
        if not group or not consumer:
            raise OperationalError("redis feed: group and consumer names must not be empty")
        if not _ENTRY_ID.match(start_id):
            raise OperationalError(f"redis feed: start_id={start_id!r} must be '$', '0' or an "
                                   "entry id like '1718000000000-0'")
        for name, value in (("block_ms", block_ms), ("count", count),
                            ("dead_maxlen", dead_maxlen)):
            if not isinstance(value, int) or value < 1:
                raise OperationalError(f"redis feed: {name}={value!r} must be a positive int")
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis = redis
        try:
            self._pool = redis.ConnectionPool.from_url(
                url, protocol=2, retry=Retry(NoBackoff(), 0),
                socket_timeout=block_ms / 1000 + 5.0, socket_connect_timeout=5.0,
                socket_keepalive=True, client_name=client_name or f"mia-executor:{consumer}")
        except ValueError as exc:
            raise OperationalError(f"redis feed: bad url ({exc}); use "
                                   "redis://host:port/db") from None
        # "mia:bars:" and "mia:bars" name the same streams: stream_key adds the ':' itself
        self._streams = {_stream_key(s, prefix.rstrip(":")): s for s in symbols}
        self._group, self._consumer, self._start_id = group, consumer, start_id
        self._block_ms, self._count, self._dead_maxlen = block_ms, count, dead_maxlen
        self._backoff = backoff or Backoff()
        self._clock = clock or SystemClock()
        self._client: Any = None
        self._acks: dict[str, list[bytes]] = {s: [] for s in self._streams}
        self._pending: dict[str, bytes] = {}  # stream -> PEL cursor, while draining the PEL
        self._closed = self._reading = self._connected_once = False
        self.delivered = self.bad = self.reconnects = 0

    # -- the loop's side ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[FeedEvent]:
        """:return: bars (pending ones first), bad entries and idle ticks until :meth:`close`."""
        errors = (self._redis.ConnectionError, self._redis.TimeoutError, OSError)
        try:
            while not self._closed:
                if self._client is None:
                    try:
                        self._connect()
                    except errors as exc:
                        self._disconnect()
                        delay = self._backoff.next()
                        self._clock.sleep(delay)
                        yield Idle(delay, False, f"connect failed: {exc}")
                        continue
                try:
                    batch = self._read()
                    if batch is None:
                        continue  # the PEL is drained: read new entries next
                    if not batch:
                        yield Idle(self._block_ms / 1000, True, "no data")
                        continue
                    yield from self._events(batch)
                except errors as exc:
                    # the unread rest of the batch is in the PEL and comes back after reconnect
                    self._disconnect()
                    yield Idle(0.0, False, f"connection lost: {exc}")
        finally:
            self._shutdown()

    def close(self) -> None:
        """Stop after the current wait; flush queued acks and release the connection."""
        self._closed = True
        if not self._reading:
            self._shutdown()

    def _ack(self, stream: str, entry_id: bytes) -> None:
        self._acks[stream].append(entry_id)

    # -- Redis -------------------------------------------------------------------------------

    def _connect(self) -> None:
        client = self._redis.Redis(connection_pool=self._pool)
        self._client = client
        client.ping()
        for stream in self._streams:
            try:
                client.xgroup_create(stream, self._group, id=self._start_id, mkstream=True)
            except self._redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise OperationalError(f"redis feed: cannot create group {self._group!r} "
                                           f"on {stream}: {exc}") from exc
        self._flush_acks(client.pipeline(transaction=False)).execute()
        self._clear_acked()
        self._pending = dict.fromkeys(self._streams, b"0")
        self._backoff.reset()
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True

    def _read(self) -> list[Any] | None:
        """One round trip: queued acks + XREADGROUP. ``None`` when the PEL has just drained."""
        pipe = self._flush_acks(self._client.pipeline(transaction=False))
        if self._pending:
            pipe.xreadgroup(self._group, self._consumer, dict(self._pending), count=self._count)
        else:
            pipe.xreadgroup(self._group, self._consumer, dict.fromkeys(self._streams, ">"),
                            count=self._count, block=self._block_ms)
        self._reading = True
        try:
            result = pipe.execute()
        except self._redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # stream or group deleted under us: recreate, re-read PEL
                self._disconnect()
                return None
            raise OperationalError(f"redis feed: XREADGROUP failed: {exc}") from exc
        finally:
            self._reading = False
        self._clear_acked()
        batch: list[Any] = result[-1] or []
        if self._pending:
            for stream, entries in batch:
                key = stream.decode()
                if entries:
                    self._pending[key] = entries[-1][0]
                else:
                    del self._pending[key]
            batch = [(s, e) for s, e in batch if e]
            return batch or None
        return batch

    def _flush_acks(self, pipe: Any) -> Any:
        for stream, ids in self._acks.items():
            if ids:
                pipe.xack(stream, self._group, *ids)
        return pipe

    def _clear_acked(self) -> None:
        for ids in self._acks.values():
            ids.clear()

    def _events(self, batch: list[Any]) -> Iterator[FeedEvent]:
        good: list[FeedItem] = []
        bad: list[tuple[str, bytes, dict[bytes, bytes], MalformedMessage]] = []
        for raw_stream, entries in batch:
            stream = raw_stream.decode()
            symbol = self._streams[stream]
            for entry_id, fields in entries:
                if not fields:
                    bad.append((stream, entry_id, {}, MalformedMessage(
                        "trimmed", "the entry was trimmed from the stream while pending (the "
                        "producer's MAXLEN is shorter than the consumer's backlog)")))
                    continue
                try:
                    ts_ns, bar = decode_message(fields, symbol)
                except MalformedMessage as exc:
                    bad.append((stream, entry_id, fields, exc))
                    continue
                ack = functools.partial(self._ack, stream, entry_id)
                good.append(FeedItem(bar, ack, f"{symbol}/{entry_id.decode()}", ts_ns))
        for stream, entry_id, fields, fault in bad:
            if self._closed:  # close() released the connection; the rest stays pending
                return
            self._dead_letter(stream, entry_id, fields, fault)
            self.bad += 1
            yield BadMessage(f"{self._streams[stream]}/{entry_id.decode()}", fault.code,
                             fault.reason, self._streams[stream])
        if len(batch) > 1:
            good.sort(key=lambda item: item.ts_ns)  # streams of several symbols: ts order
        for item in good:
            if self._closed:
                return
            self.delivered += 1
            yield item

    def _dead_letter(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes],
                     exc: MalformedMessage) -> None:
        meta = {b"_code": exc.code.encode(), b"_reason": exc.reason.encode(), b"_id": entry_id,
                b"_stream": stream.encode()}
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(dead_letter_key(stream), {**fields, **meta}, maxlen=self._dead_maxlen,
                  approximate=True)
        pipe.xack(stream, self._group, entry_id)
        try:
            pipe.execute()
        except self._redis.ResponseError as exc:
            raise OperationalError(f"redis feed: cannot dead-letter {entry_id!r} of {stream} to "
                                   f"{dead_letter_key(stream)} ({exc}); that key must be a "
                                   "stream or absent") from exc

    def _disconnect(self) -> None:
        self._client = None
        self._pool.disconnect()

    def _shutdown(self) -> None:
        if any(self._acks.values()):
            # acks of items the loop finished after close() was called still go out
            client = self._client or self._redis.Redis(connection_pool=self._pool)
            try:
                self._flush_acks(client.pipeline(transaction=False)).execute()
                self._clear_acked()
            except (self._redis.RedisError, OSError):
                pass  # the entries stay pending and are redelivered (and deduped) next run
        self._disconnect()
