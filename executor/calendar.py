"""The CME calendar the loop needs, per call, without pandas (mia.data.calendar's rules).

- :func:`trade_date`: the CME trade date of a bar (the session opening at 18:00 ET trades the
  next day's date).
- :func:`session_open`: whether the Globex equity-futures session is open at an instant: Sunday
  to Friday 18:00-17:00 America/New_York (17:00-16:00 America/Chicago), closed in the daily
  17:00-18:00 ET maintenance break, on Saturdays, and on the trade dates mia.data.calendar
  treats as holidays. The stale-feed breaker counts only while it is open (no bars are due in a
  break or a weekend).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

_ET: Final[ZoneInfo] = ZoneInfo("America/New_York")
_HOUR_NS: Final[int] = 3_600_000_000_000
_SHIFT: Final[timedelta] = timedelta(hours=6)  # a session opening at 18:00 ET trades tomorrow
_BREAK: Final[tuple[time, time]] = (time(17, 0), time(18, 0))  # ET, [start, end)


def trade_date(ts_ns: int) -> date:
    """:param ts_ns: bar close, ns since the epoch UTC. :return: its CME trade date."""
    return _trade_date_of_hour(ts_ns // _HOUR_NS)


@lru_cache(maxsize=256)
def _trade_date_of_hour(hour: int) -> date:
    # constant over a UTC hour: ET is a whole-hour offset, DST moves on the hour and the
    # session shift is 18:00 ET; a tick reads it from the cache (one every bar)
    t = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(_ET)
    return (t + _SHIFT).date()


def session_open(now_ns: int) -> bool:
    """Whether the CME Globex session of ES / MNQ is open at ``now_ns``.

    :param now_ns: an instant, ns since the epoch UTC.
    :return: ``False`` in the daily 17:00-18:00 ET break, from Friday 17:00 to Sunday 18:00 ET,
        and in the session of a holiday trade date (mia.data.calendar.holidays); else ``True``.
    """
    # mia.data.calendar holds the holiday rule; imported here, not at module level, so that
    # importing the loop does not load pandas (the live process has it loaded by the warm-up)
    from mia.data.calendar import is_trading_day

    t = datetime.fromtimestamp(now_ns / 1e9, tz=UTC).astimezone(_ET)
    if _BREAK[0] <= t.time() < _BREAK[1]:
        return False
    return is_trading_day((t + _SHIFT).date())
