"""CME Globex calendar for equity-index futures (ES, MNQ).

Sessions run Sunday 18:00 to Friday 17:00 America/New_York with a daily 17:00-18:00 maintenance
break. A session belongs to the *trade date* on which it ends: the session that opens Sunday
18:00 is Monday's. On the main US holidays the whole trade date is closed (a simplification:
CME runs shortened sessions on some of them; MIA treats them as closed so no half-day
liquidity leaks into training). Bars are stamped at their close (design.md section 4), so the
first 1-minute bar of a session is stamped 18:01 ET and the last one 17:00 ET.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd

EXCHANGE_TZ: Final[str] = "America/New_York"
# ts + 6 h moves the 18:00 ET open to midnight, so the ET date of ts + 6 h is the trade date.
_TRADE_DATE_SHIFT: Final[pd.Timedelta] = pd.Timedelta(hours=6)


def _easter(year: int) -> date:
    # Anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month = (h + el - 7 * m + 114) // 31
    day = (h + el - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(d: date) -> date:
    # Saturday holidays are observed on Friday, Sunday holidays on Monday.
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[date]:
    """The closed trade dates of one year.

    :param year: calendar year.
    :return: New Year's Day, Martin Luther King Jr. Day, Presidents' Day, Good Friday, Memorial
        Day, Juneteenth (from 2022), Independence Day, Labor Day, Thanksgiving and Christmas, as
        observed.
    """
    days = {
        _observed(date(year, 1, 1)),
        _nth_weekday(year, 1, 0, 3),
        _nth_weekday(year, 2, 0, 3),
        _easter(year) - timedelta(days=2),
        _last_weekday(year, 5, 0),
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),
        _nth_weekday(year, 11, 3, 4),
        _observed(date(year, 12, 25)),
    }
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))
    return frozenset(d for d in days if d.year == year)


def is_trading_day(d: date) -> bool:
    """:param d: a trade date.
    :return: True when a Globex session ends on ``d`` (Monday to Friday, not a holiday).
    """
    return d.weekday() < 5 and d not in holidays(d.year)


def trading_days(start: date, end: date) -> list[date]:
    """:param start: first trade date (inclusive).
    :param end: last trade date (inclusive).
    :return: the trade dates with a session, in order.
    """
    n = (end - start).days + 1
    return [d for d in (start + timedelta(days=i) for i in range(max(n, 0))) if is_trading_day(d)]


def session_index(start: date, end: date, bar_minutes: int = 1) -> pd.DatetimeIndex:
    """Bar-close timestamps (UTC) of every bar in the sessions of trade dates ``start..end``.

    :param start: first trade date (inclusive).
    :param end: last trade date (inclusive).
    :param bar_minutes: bar length in minutes; must divide the 23-hour session.
    :return: a tz-aware UTC index, increasing; DST transitions are handled in exchange time.
    """
    if bar_minutes <= 0 or (23 * 60) % bar_minutes:
        raise ValueError(f"bar_minutes={bar_minutes} must be a positive divisor of 1380")
    days = trading_days(start, end)
    if not days:
        return pd.DatetimeIndex([], tz="UTC")
    # Each session: 18:00 ET the previous calendar day to 17:00 ET on the trade date.
    opens = pd.DatetimeIndex(
        [pd.Timestamp(d - timedelta(days=1)) + pd.Timedelta(hours=18) for d in days]
    ).tz_localize(EXCHANGE_TZ)
    per_session = 23 * 60 // bar_minutes
    offsets = np.arange(1, per_session + 1, dtype=np.int64) * bar_minutes
    # Offsets are added in UTC: a session is 23 elapsed hours even across a DST change.
    open_ns = opens.tz_convert("UTC").asi8
    stamps = (open_ns[:, None] + offsets[None, :] * 60_000_000_000).ravel()
    return pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))


def trade_dates(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Trade date of each bar-close timestamp.

    :param ts: tz-aware timestamps.
    :return: an array of ``datetime.date`` objects.
    """
    idx = pd.DatetimeIndex(ts)
    if idx.tz is None:
        raise ValueError("trade_dates needs tz-aware timestamps")
    shifted = (idx.tz_convert(EXCHANGE_TZ) + _TRADE_DATE_SHIFT).date
    return np.asarray(shifted)
