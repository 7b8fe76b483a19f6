"""The partition a DAG run owns: the one helper every MIA task resolves it with.

Tasks are transactions keyed by a partition (style.md, "Airflow"): a retried or re-run task
writes under the same key and so overwrites its own outputs instead of adding new ones. In Airflow
3 a manual or asset-triggered run may have no logical date and no data interval, so the key comes
from, in order:

1. the run's data interval end (a scheduled run: the CME session close, the hour, the day);
2. its logical date;
3. its run id, which is unique per run and the same on every retry.

It never falls back to the current time: "now" differs between a try and its retry, and a retry
must land on the same key. Time windows (the drift watch's live-log window) end at the partition's
instant, or, for a run without one, at the run's ``run_after``, which Airflow stores with the run
and which therefore does not move between tries either.

Standard library only: Airflow puts the dags folder on ``sys.path`` and tasks import this module
inside their bodies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

Grain = Literal["trade_date", "day", "hour"]
Source = Literal["data_interval", "logical_date", "run_id"]

_EXCHANGE = ZoneInfo("America/New_York")
# ts + 6 h moves the 18:00 ET session open to midnight: the ET date of ts + 6 h is the trade date
# (the same rule as mia.data.calendar.trade_dates and the CME timetable)
_TRADE_DATE_SHIFT = timedelta(hours=6)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Partition(NamedTuple):
    """The slice of time (or the run) a task's outputs belong to.

    :param key: file-system and S3 safe key, e.g. ``2024-01-26``, ``2024-01-26T14`` or
        ``run-manual__2024-01-26T10_00_00_00_00``.
    :param end: the instant the partition ends (tz-aware UTC), ``None`` when keyed by run id.
    :param source: where the key came from.
    """

    key: str
    end: datetime | None
    source: Source


def _utc(t: datetime) -> datetime:
    # a plain datetime: pendulum's DateTime (what Airflow passes) mixes badly with zoneinfo
    # arithmetic (pendulum 3: DateTime in a ZoneInfo + timedelta loses the zone)
    return datetime.fromtimestamp(t.timestamp(), UTC)


def key_of(instant: datetime, grain: Grain) -> str:
    """:param instant: a tz-aware time. :param grain: the partition size.
    :return: the key of the partition ending at ``instant``: the CME trade date, the UTC day, or
        the UTC hour (``YYYY-MM-DDTHH``)."""
    if instant.tzinfo is None:
        raise ValueError(f"partition: naive time {instant.isoformat()}; Airflow passes tz-aware "
                         "times, pass one too")
    utc = _utc(instant)
    if grain == "trade_date":
        return (utc.astimezone(_EXCHANGE) + _TRADE_DATE_SHIFT).date().isoformat()
    if grain == "day":
        return utc.date().isoformat()
    if grain == "hour":
        return utc.strftime("%Y-%m-%dT%H")
    raise ValueError(f"partition: unknown grain {grain!r}; use trade_date, day or hour")


def resolve(context: Mapping[str, Any], grain: Grain) -> Partition:
    """The partition of the running task's DAG run (module docstring for the order).

    :param context: the task's Airflow context (``**context`` of a TaskFlow task).
    :param grain: the partition size of this DAG.
    :raises ValueError: the context has neither a data interval, a logical date nor a run id.
    """
    for source, name in (("data_interval", "data_interval_end"), ("logical_date", "logical_date")):
        instant = context.get(name)
        if instant is not None:
            end = _utc(instant)
            return Partition(key=key_of(end, grain), end=end, source=source)  # type: ignore[arg-type]
    run_id = context.get("run_id")
    if not run_id:
        raise ValueError("partition: the task context has no data interval, logical date or run "
                         "id; call resolve() with the context Airflow passes to the task")
    return Partition(key="run-" + _UNSAFE.sub("_", str(run_id)).strip("_"), end=None,
                     source="run_id")


def instant(context: Mapping[str, Any]) -> datetime:
    """The time the run stands for: its partition's end, or, for a run without one, its stored
    ``run_after`` (never the current time).

    :param context: the task's Airflow context.
    :raises ValueError: the run has no time at all.
    """
    end = resolve(context, "hour").end
    if end is not None:
        return end
    after = getattr(context.get("dag_run"), "run_after", None)
    if after is None:
        raise ValueError("partition: the run has no data interval, logical date or run_after")
    return _utc(after)


def window(context: Mapping[str, Any], hours: float) -> tuple[datetime, datetime]:
    """The time window ``[instant - hours, instant)`` a task reads (:func:`instant`).

    :param context: the task's Airflow context.
    :param hours: window length, positive.
    :raises ValueError: ``hours`` is not positive, or the run has no time at all.
    """
    if not hours > 0:
        raise ValueError(f"partition: window of {hours!r} hours; use a positive number")
    end = instant(context)
    return end - timedelta(hours=hours), end


def output_dir(home: Path, dag_id: str, partition: Partition) -> Path:
    """:param home: ``MIA_HOME``. :param dag_id: the DAG. :param partition: the run's partition.
    :return: ``<home>/runs/<dag_id>/<key>``, the folder a task writes its partition's files to."""
    return Path(home) / "runs" / dag_id / partition.key
