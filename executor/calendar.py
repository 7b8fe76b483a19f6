"""The CME trade date of a bar, per bar, without pandas (mia.data.calendar's rule)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

_ET: Final[ZoneInfo] = ZoneInfo("America/New_York")
_SHIFT: Final[timedelta] = timedelta(hours=6)  # a session opening at 18:00 ET trades tomorrow


def trade_date(ts_ns: int) -> date:
    """:param ts_ns: bar close, ns since the epoch UTC. :return: its CME trade date."""
    t = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).astimezone(_ET)
    return (t + _SHIFT).date()
