"""Replay from the Parquet data store: the backtest of the live path (issue 7, item 10).

Bars of several symbols are merged in ``(ts, symbol)`` order; the pace is real time
(``speed=1``), N times faster (``speed=N``) or as fast as possible (``speed=None`` or ``0``). The
sleep comes from an injected :class:`mia.clock.Clock`, so tests never sleep. ``start_after``
makes a restart resume after the last journaled bar of each symbol.

Replay needs no ack (``FeedItem.ack`` is ``None``): the store is its own durable source, and the
restart point comes from the journal. ``source_id`` is ``"<SYMBOL>:<ts_ns>"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path

from executor.feeds.base import FeedEvent, FeedItem
from mia.clock import Clock
from mia.data.stream import Pacer, iter_store_bars


class ReplayFeed:
    """Bars of the store as a :class:`~executor.feeds.base.Feed`.

    Arguments are checked, and each symbol's partitions listed, before iteration starts.

    :param store_root: the raw store's root (``$MIA_HOME/data/raw``).
    :param symbols: symbols to replay.
    :param start: first trade date (inclusive) or ``None``.
    :param end: last trade date (inclusive) or ``None``.
    :param speed: ``1.0`` real time, ``N`` times faster, ``None``/``0`` as fast as possible.
    :param clock: sleep and monotonic time for pacing (default: the system clock).
    :param start_after: symbol -> ts_ns of the last journaled bar; replay resumes after it.
    :param max_gap_s: cap on one paced wait (session breaks, weekends), or ``None``.
    :raises OperationalError: bad speed, duplicate symbols or unknown ``start_after`` symbol.
    :raises StoreError: a symbol has no bars in the range.
    """

    def __init__(
        self,
        store_root: Path,
        symbols: Sequence[str],
        start: date | None = None,
        end: date | None = None,
        *,
        speed: float | None = None,
        clock: Clock | None = None,
        start_after: Mapping[str, int] | None = None,
        max_gap_s: float | None = None,
    ) -> None:
        self._pacer = Pacer(speed, clock, max_gap_s)
        # checks arguments and lists partitions now: errors surface here, not at the first tick
        self._bars = iter_store_bars(store_root, symbols, start, end, start_after=start_after)
        self._closed = False
        self.delivered = 0

    def __iter__(self) -> Iterator[FeedEvent]:
        """:return: one :class:`FeedItem` per stored bar, in ts order, then the end."""
        pacer = self._pacer
        for ts_ns, bar in self._bars:
            if self._closed:
                return
            pacer.wait(ts_ns)
            self.delivered += 1
            yield FeedItem(bar, None, f"{bar.symbol}:{ts_ns}", ts_ns)

    def close(self) -> None:
        """Stop after the current bar; idempotent."""
        self._closed = True
