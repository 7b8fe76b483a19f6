"""The CME timetable: one run per trading day after the close, sessions as data intervals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pendulum
import pytest
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DataInterval, TimeRestriction
from cme_timetable import CMECloseTimetable, session_close, session_open, trade_date_of

from mia.clock import TestClock

UTC_ = pendulum.timezone("UTC")


def _utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=UTC_)


def _after(trade_date: date, tt: CMECloseTimetable | None = None):
    tt = tt or CMECloseTimetable()
    last = DataInterval(start=session_open(trade_date), end=session_close(trade_date))
    return tt.next_dagrun_info(last_automated_data_interval=last,
                               restriction=TimeRestriction(earliest=None, latest=None,
                                                           catchup=True))


def test_next_run_after_a_friday_is_the_next_mondays_close():
    run = _after(date(2024, 1, 5))  # Friday
    assert run.data_interval.end == _utc(2024, 1, 8, 22)  # Monday 17:00 EST
    # Monday's session opens on Sunday 18:00 ET, after the weekend
    assert run.data_interval.start == _utc(2024, 1, 7, 23)
    assert run.run_after == _utc(2024, 1, 8, 22, 15)
    assert trade_date_of(run.data_interval.end) == date(2024, 1, 8)


@pytest.mark.parametrize(("last", "expected"), [
    (date(2024, 1, 12), date(2024, 1, 16)),   # Martin Luther King Jr. Day, Monday 15th
    (date(2024, 3, 28), date(2024, 4, 1)),    # Good Friday, 29 March
    (date(2024, 12, 24), date(2024, 12, 26)),  # Christmas, a Wednesday
    (date(2024, 7, 3), date(2024, 7, 5)),     # Independence Day
])
def test_holidays_are_skipped(last, expected):
    run = _after(last)
    assert run.data_interval.end == session_close(expected)
    assert trade_date_of(run.data_interval.end) == expected


def test_spring_dst_change_moves_the_utc_close_and_keeps_a_23_hour_session():
    friday = _after(date(2024, 3, 7))
    assert friday.data_interval.end == _utc(2024, 3, 8, 22)  # EST: 17:00 ET = 22:00 UTC
    monday = _after(date(2024, 3, 8))
    # clocks went forward on Sunday 10 March at 02:00: 17:00 EDT = 21:00 UTC
    assert monday.data_interval.end == _utc(2024, 3, 11, 21)
    assert monday.data_interval.start == _utc(2024, 3, 10, 22)  # Sunday 18:00 EDT
    assert monday.data_interval.end - monday.data_interval.start == pendulum.duration(hours=23)


def test_autumn_dst_change_moves_the_utc_close_back():
    monday = _after(date(2024, 11, 1))
    assert monday.data_interval.start == _utc(2024, 11, 3, 23)  # Sunday 18:00 EST
    assert monday.data_interval.end == _utc(2024, 11, 4, 22)
    assert _after(date(2024, 10, 31)).data_interval.end == _utc(2024, 11, 1, 21)  # still EDT


def test_first_run_with_catchup_is_the_first_close_after_the_start_date():
    tt = CMECloseTimetable(settle_minutes=0)
    run = tt.next_dagrun_info(last_automated_data_interval=None, restriction=TimeRestriction(
        earliest=_utc(2024, 1, 3, 12), latest=None, catchup=True))
    assert run.data_interval.end == _utc(2024, 1, 3, 22)
    assert run.run_after == run.data_interval.end


def test_start_in_the_maintenance_break_runs_at_the_next_sessions_close():
    run = CMECloseTimetable().next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=_utc(2024, 1, 3, 22, 30), latest=None, catchup=True))
    assert run.data_interval.end == session_close(date(2024, 1, 4))


def test_no_start_date_means_no_run():
    assert CMECloseTimetable().next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True)) is None


def test_end_date_before_the_next_close_stops_scheduling():
    tt = CMECloseTimetable()
    last = DataInterval(start=session_open(date(2024, 1, 5)), end=session_close(date(2024, 1, 5)))
    assert tt.next_dagrun_info(last_automated_data_interval=last, restriction=TimeRestriction(
        earliest=None, latest=_utc(2024, 1, 8, 12), catchup=True)) is None


def test_without_catchup_only_the_latest_closed_session_runs():
    tt = CMECloseTimetable()
    tt.clock = TestClock(datetime(2024, 1, 10, 23, 30, tzinfo=UTC))  # Wednesday, after its close
    monday = DataInterval(start=session_open(date(2024, 1, 8)), end=session_close(date(2024, 1, 8)))
    run = tt.next_dagrun_info(last_automated_data_interval=monday, restriction=TimeRestriction(
        earliest=_utc(2024, 1, 1), latest=None, catchup=False))
    assert run.data_interval.end == session_close(date(2024, 1, 10))  # Tuesday is not backfilled
    tt.clock = TestClock(datetime(2024, 1, 10, 15, tzinfo=UTC))  # Wednesday, session still open
    run = tt.next_dagrun_info(last_automated_data_interval=monday, restriction=TimeRestriction(
        earliest=_utc(2024, 1, 1), latest=None, catchup=False))
    assert run.data_interval.end == session_close(date(2024, 1, 9))


def test_manual_run_covers_the_last_closed_session():
    tt = CMECloseTimetable()
    saturday = tt.infer_manual_data_interval(run_after=_utc(2024, 1, 6, 12))
    assert saturday == DataInterval(start=session_open(date(2024, 1, 5)),
                                    end=session_close(date(2024, 1, 5)))
    mid_session = tt.infer_manual_data_interval(run_after=_utc(2024, 1, 16, 15))  # Tuesday
    assert mid_session.end == session_close(date(2024, 1, 12))  # Friday: Monday was MLK Day


def test_serialize_round_trip_and_validation():
    tt = CMECloseTimetable(settle_minutes=5)
    assert CMECloseTimetable.deserialize(tt.serialize()) == tt
    assert tt.summary == "CME close +5m"
    tt.validate()
    with pytest.raises(AirflowTimetableInvalid, match="0..59"):
        CMECloseTimetable(settle_minutes=60).validate()
