"""CME trading-calendar timetable: one DAG run after the Globex close of every trading day.

A run's data interval is one CME session (mia.data.calendar): it opens at 18:00 America/New_York
the calendar day before its trade date and closes at 17:00 ET on the trade date, so the 17:00-18:00
maintenance break separates two intervals and a Monday's interval opens on Sunday 18:00. Trade
dates with no session (weekends, the holidays of :func:`mia.data.calendar.holidays`) get no run:
the run after a Friday is the next Monday's (or, after a holiday Monday, Tuesday's). The run
starts ``settle_minutes`` after the close, inside the maintenance break, so the session's last
bar (stamped 17:00 ET) has been published. All times are computed in exchange time and returned
in UTC, so daylight-saving changes move the UTC close (21:00 in summer, 22:00 in winter) and
nothing else.

Airflow loads this file from the plugins folder (registered by ``mia_plugin``);
:mod:`mia.data.calendar` (pandas) is imported inside the methods, so a DAG file that builds the
timetable parses without pandas.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

from mia.clock import Clock, SystemClock

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction

EXCHANGE_TZ = pendulum.timezone("America/New_York")
CLOSE_HOUR = 17  # Globex equity-index close, ET (the 17:00-18:00 maintenance break follows)
OPEN_HOUR = 18  # the next session opens after the break, trading for the next trade date
# ts + 6 h moves the 18:00 ET open to midnight: the ET date of ts + 6 h is the trade date
_TRADE_DATE_SHIFT = timedelta(hours=6)
# the longest CME closure is a holiday next to a weekend (4 days); a year of days bounds the scan
_MAX_SCAN_DAYS = 366


def session_open(trade_date: date) -> pendulum.DateTime:
    """:param trade_date: a trade date.
    :return: its session's open, 18:00 ET the day before, in UTC."""
    day = trade_date - timedelta(days=1)
    return pendulum.datetime(day.year, day.month, day.day, OPEN_HOUR, tz=EXCHANGE_TZ).in_tz("UTC")


def session_close(trade_date: date) -> pendulum.DateTime:
    """:param trade_date: a trade date. :return: its session's close, 17:00 ET, in UTC."""
    d = trade_date
    return pendulum.datetime(d.year, d.month, d.day, CLOSE_HOUR, tz=EXCHANGE_TZ).in_tz("UTC")


def trade_date_of(instant: datetime) -> date:
    """:param instant: a tz-aware time. :return: the trade date whose session holds it (a time in
    the maintenance break or on a closed day maps to the next session's trade date)."""
    if instant.tzinfo is None:
        raise ValueError(f"trade_date_of needs a tz-aware time, got naive {instant.isoformat()}")
    return (pendulum.instance(instant).in_tz(EXCHANGE_TZ) + _TRADE_DATE_SHIFT).date()


def _is_trading_day(d: date) -> bool:
    from mia.data.calendar import is_trading_day  # pandas: not at DAG parse time

    return is_trading_day(d)


def _first_close_at_or_after(instant: datetime) -> date:
    d = trade_date_of(instant)
    for _ in range(_MAX_SCAN_DAYS):
        if _is_trading_day(d) and session_close(d) >= instant:
            return d
        d += timedelta(days=1)
    raise AirflowTimetableInvalid(f"no CME trading day within a year after {instant.isoformat()}")


def _last_close_at_or_before(instant: datetime) -> date:
    d = trade_date_of(instant)
    for _ in range(_MAX_SCAN_DAYS):
        if _is_trading_day(d) and session_close(d) <= instant:
            return d
        d -= timedelta(days=1)
    raise AirflowTimetableInvalid(f"no CME trading day within a year before {instant.isoformat()}")


class CMECloseTimetable(Timetable):
    """A run per CME trading day, after its session closes (module docstring).

    :param settle_minutes: minutes after the 17:00 ET close the run may start, 0..59 (inside the
        maintenance break, before the next session opens).
    """

    periodic = True
    # catchup=False needs "the current time" (Airflow's definition of a missed schedule); tests
    # give the instance a TestClock
    clock: Clock = SystemClock()

    def __init__(self, *, settle_minutes: int = 15) -> None:
        self.settle_minutes = settle_minutes
        self.description = (f"after the CME Globex close (17:00 America/New_York) + "
                            f"{settle_minutes} min, trading days only")

    @property
    def summary(self) -> str:
        """Shown in the Airflow UI next to the DAG."""
        return f"CME close +{self.settle_minutes}m"

    def validate(self) -> None:
        """:raises AirflowTimetableInvalid: ``settle_minutes`` outside the maintenance break."""
        if not isinstance(self.settle_minutes, int) or not 0 <= self.settle_minutes < 60:
            raise AirflowTimetableInvalid(
                f"CMECloseTimetable(settle_minutes={self.settle_minutes!r}): use 0..59 minutes, "
                "so the run starts inside the 17:00-18:00 ET maintenance break")

    def serialize(self) -> dict[str, Any]:
        """:return: what :meth:`deserialize` rebuilds the timetable from."""
        return {"settle_minutes": self.settle_minutes}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        """:param data: the output of :meth:`serialize`."""
        return cls(settle_minutes=int(data["settle_minutes"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CMECloseTimetable) and other.settle_minutes == self.settle_minutes

    def __hash__(self) -> int:
        return hash((CMECloseTimetable, self.settle_minutes))

    def info(self, trade_date: date) -> DagRunInfo:
        """:param trade_date: a trading day. :return: its run: the session as the data interval,
        starting ``settle_minutes`` after the close."""
        close = session_close(trade_date)
        return DagRunInfo(run_after=close.add(minutes=self.settle_minutes),
                          data_interval=DataInterval(start=session_open(trade_date), end=close))

    def infer_manual_data_interval(self, *, run_after: pendulum.DateTime) -> DataInterval:
        """A manual run covers the last session closed at ``run_after``.

        :param run_after: when the run was triggered.
        """
        interval = self.info(_last_close_at_or_before(run_after)).data_interval
        if interval is None:  # info() always sets one
            raise AirflowTimetableInvalid("CMECloseTimetable built a run without an interval")
        return interval

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None,
                         restriction: TimeRestriction) -> DagRunInfo | None:
        """The next trading day's run after the last one (or from the DAG's start).

        :param last_automated_data_interval: the last scheduled run's session, or ``None``.
        :param restriction: start and end dates and ``catchup`` of the DAG.
        :return: the run, or ``None`` past the DAG's end date or without a start date.
        """
        if last_automated_data_interval is not None:
            start = last_automated_data_interval.end.add(seconds=1)
        elif restriction.earliest is None:
            return None
        else:
            start = restriction.earliest
        if not restriction.catchup:
            # catchup=False: of the sessions closed while no run was made, only the latest runs
            latest = session_close(_last_close_at_or_before(self.clock.now()))
            start = max(start, latest)
        run = self.info(_first_close_at_or_after(start))
        if restriction.latest is not None and run.data_interval is not None \
                and run.data_interval.end > restriction.latest:
            return None
        return run
