"""Injectable, timezone-aware time.

Logic never calls ``datetime.now()``: it takes a :class:`Clock`. Production code uses
:class:`SystemClock`; tests use :class:`TestClock` and move time by hand (NautilusTrader's
``TestClock``, freqtrade's injectable ``_sleep``). Leaf module: imports nothing from :mod:`mia`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of tz-aware UTC time and a sleep that tests can replace."""

    def now(self) -> datetime:
        """:return: the current time, tz-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """:return: seconds from an arbitrary origin, never going backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block (or pretend to) for ``seconds``.

        :param seconds: non-negative duration.
        """
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """:return: the wall-clock time in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """:return: :func:`time.monotonic`."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep for real.

        :param seconds: non-negative duration.
        """
        time.sleep(max(0.0, seconds))


class TestClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    :param start: the initial time; must be tz-aware.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"TestClock needs a tz-aware start, got naive {start.isoformat()}")
        self._now = start.astimezone(UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        """:return: the clock's current time in UTC."""
        return self._now

    def monotonic(self) -> float:
        """:return: seconds advanced since construction."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward.

        :param seconds: non-negative duration.
        """
        if seconds < 0:
            raise ValueError(f"time cannot go backwards (advance by {seconds} s)")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def sleep(self, seconds: float) -> None:
        """Advance instead of blocking.

        :param seconds: non-negative duration.
        """
        self.advance(max(0.0, seconds))
