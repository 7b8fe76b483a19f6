from datetime import date

import pandas as pd
import pytest

from mia.data.calendar import holidays, is_trading_day, session_index, trade_dates, trading_days


def test_holidays_2024_are_the_main_us_market_holidays():
    assert holidays(2024) == {
        date(2024, 1, 1),
        date(2024, 1, 15),
        date(2024, 2, 19),
        date(2024, 3, 29),
        date(2024, 5, 27),
        date(2024, 6, 19),
        date(2024, 7, 4),
        date(2024, 9, 2),
        date(2024, 11, 28),
        date(2024, 12, 25),
    }


def test_sunday_holiday_is_observed_on_monday():
    assert date(2022, 12, 26) in holidays(2022)  # Christmas 2022 fell on a Sunday
    assert not is_trading_day(date(2022, 12, 26))


def test_weekends_are_not_trade_dates():
    assert trading_days(date(2024, 1, 6), date(2024, 1, 7)) == []


def test_each_session_has_1380_one_minute_bars_from_1801_to_1700_exchange_time():
    idx = session_index(date(2024, 1, 2), date(2024, 1, 5))
    assert len(idx) == 4 * 1380
    et = idx.tz_convert("America/New_York")
    assert (et[0].hour, et[0].minute) == (18, 1)  # first bar of Tuesday's session closes 18:01 Mon
    assert (et[-1].hour, et[-1].minute) == (17, 0)
    minutes = et.hour * 60 + et.minute
    assert not ((minutes > 17 * 60) & (minutes <= 18 * 60)).any()  # the daily break is empty


def test_session_across_dst_change_keeps_23_hours():
    idx = session_index(date(2024, 3, 11), date(2024, 3, 11))  # DST began Sunday 2024-03-10
    assert len(idx) == 1380
    assert idx.tz_convert("America/New_York")[0].strftime("%a %H:%M") == "Sun 18:01"


def test_no_bars_on_holidays_or_saturdays():
    idx = session_index(date(2024, 7, 1), date(2024, 7, 8))
    days = set(trade_dates(idx))
    assert date(2024, 7, 4) not in days
    assert (idx.tz_convert("America/New_York").dayofweek != 5).all()


def test_trade_date_of_sunday_evening_bar_is_monday():
    ts = pd.DatetimeIndex(["2024-01-07 18:01", "2024-01-08 17:00"], tz="America/New_York")
    assert list(trade_dates(ts)) == [date(2024, 1, 8), date(2024, 1, 8)]


def test_trade_dates_refuses_naive_timestamps():
    with pytest.raises(ValueError, match="tz-aware"):
        trade_dates(pd.DatetimeIndex(["2024-01-08 10:00"]))
