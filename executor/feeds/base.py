"""The feed protocol: what the executor's loop iterates, whatever the bars' source.

A feed yields three kinds of event, all small immutable records:

- :class:`FeedItem` — one bar. ``ack`` (``None`` when the source needs none) is called by the
  loop only after the bar's processing is durably journaled: a crash before it makes the source
  deliver the bar again, and the journal's ``(symbol, ts_ns)`` dedup makes that harmless.
- :class:`BadMessage` — an entry that is not a bar (missing field, not a number, NaN, wrong
  symbol …). The feed has already dealt with it (dead-lettered with the reason and acked), so one
  bad entry never blocks the source; the loop only counts it (``mia_data_faults_total``) and may
  alert. It is never raised into the loop.
- :class:`Idle` — nothing arrived for the feed's wait period, or the source is disconnected and
  the feed is reconnecting. It hands control back to the loop so a stale-feed breaker, a stop
  request or a snapshot can run while no bar comes.

Feeds check the *format* of what they receive; market rules (OHLC order, monotonic ts,
staleness, jumps) are the inline validator's, which the loop runs on every bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

from mia.errors import OperationalError
from mia.types import Bar


class FeedItem(NamedTuple):
    """One bar from a feed.

    :param bar: the bar (``ts`` = bar close, tz-aware UTC; optional groups in ``extra``).
    :param ack: call after the bar is journaled; ``None`` when the source needs no ack.
    :param source_id: unique per bar per source (a Redis entry id, or ``"ES:<ts_ns>"``).
    :param ts_ns: ``bar.ts`` as ns since the epoch, so the loop never converts it back.
    """

    bar: Bar
    ack: Callable[[], None] | None
    source_id: str
    ts_ns: int


class BadMessage(NamedTuple):
    """An entry the feed could not turn into a bar; already acked (and dead-lettered).

    :param source_id: where it came from (stream entry id, vendor sequence …).
    :param code: ``missing_field``, ``unknown_field``, ``partial_group``, ``not_a_number``,
        ``non_finite``, ``bad_ts`` or ``wrong_symbol`` (:data:`mia.data.stream.REJECT_CODES`),
        or ``trimmed`` (a pending entry the producer's ``MAXLEN`` removed before it was read).
    :param reason: the offending field and value.
    :param symbol: the symbol whose stream carried it.
    """

    source_id: str
    code: str
    reason: str
    symbol: str


class Idle(NamedTuple):
    """No bar for a while: control goes back to the loop.

    :param waited_s: seconds the feed waited (or backed off) before yielding this.
    :param connected: ``False`` while the source is unreachable and the feed is reconnecting.
    :param reason: ``"no data"`` or the connection error.
    """

    waited_s: float
    connected: bool
    reason: str


FeedEvent = FeedItem | BadMessage | Idle


@runtime_checkable
class Feed(Protocol):
    """A source of bars for the loop.

    Iterating yields :data:`FeedEvent` values until the source ends (a replay) or :meth:`close`
    is called (a live feed then ends after its current wait). One iteration at a time: a feed is
    consumed by the loop's single thread.
    """

    def __iter__(self) -> Iterator[FeedEvent]:
        """:return: the events, in arrival order (ts order within a symbol)."""
        ...

    def close(self) -> None:
        """Stop: flush outstanding acks, release connections; idempotent."""
        ...


class Backoff:
    """Exponential reconnect delays: ``initial``, ``initial * factor``, … capped at ``maximum``.

    :param initial: first delay in seconds.
    :param maximum: longest delay in seconds.
    :param factor: growth per failed attempt (> 1).
    :raises OperationalError: non-positive delays or ``factor <= 1``.
    """

    def __init__(self, initial: float = 0.1, maximum: float = 5.0, factor: float = 2.0) -> None:
        if not (0 < initial <= maximum) or factor <= 1:
            raise OperationalError(f"backoff: need 0 < initial ({initial}) <= maximum "
                                   f"({maximum}) and factor ({factor}) > 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        """:return: the delay before the next attempt; later calls grow it."""
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        """Back to ``initial`` after a successful attempt."""
        self._next = self.initial
