"""The one partition helper: interval end, then logical date, then run id; never the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from _partition import instant, key_of, output_dir, resolve, window


def test_scheduled_run_is_keyed_by_the_trade_date_of_its_session_close():
    close = pendulum.datetime(2024, 1, 26, 22, tz="UTC")  # Friday 17:00 EST
    part = resolve({"data_interval_end": close, "logical_date": close.subtract(hours=23),
                    "run_id": "scheduled__x"}, "trade_date")
    assert part.key == "2024-01-26"
    assert part.source == "data_interval"
    assert part.end == close


def test_trade_date_key_follows_the_cme_session_not_the_utc_date():
    # Sunday 19:00 ET = Monday 00:00 UTC, inside Monday's session
    assert key_of(datetime(2024, 1, 8, 0, tzinfo=UTC), "trade_date") == "2024-01-08"
    # Monday 17:00 EDT in summer is 21:00 UTC, still Monday
    assert key_of(datetime(2024, 7, 8, 21, tzinfo=UTC), "trade_date") == "2024-07-08"
    assert key_of(datetime(2024, 7, 8, 21, 30, tzinfo=UTC), "hour") == "2024-07-08T21"
    assert key_of(datetime(2024, 7, 8, 21, 30, tzinfo=UTC), "day") == "2024-07-08"


def test_run_without_interval_uses_its_logical_date():
    at = datetime(2024, 3, 1, 14, 5, tzinfo=UTC)
    part = resolve({"data_interval_end": None, "logical_date": at, "run_id": "manual__1"}, "hour")
    assert (part.key, part.source) == ("2024-03-01T14", "logical_date")


def test_asset_triggered_run_without_dates_is_keyed_by_its_run_id_the_same_on_every_try():
    ctx = {"data_interval_end": None, "logical_date": None,
           "run_id": "asset_triggered__2024-03-01T14:05:00.123+00:00"}
    first, retry = resolve(ctx, "trade_date"), resolve(dict(ctx), "trade_date")
    assert first == retry
    assert first.key == "run-asset_triggered__2024-03-01T14_05_00.123_00_00"
    assert first.end is None
    assert first.source == "run_id"
    assert "/" not in first.key
    assert ":" not in first.key


def test_window_of_a_dateless_run_ends_at_its_stored_run_after():
    after = pendulum.datetime(2024, 3, 1, 14, 5, tz="UTC")
    ctx = {"logical_date": None, "run_id": "manual__x", "dag_run": SimpleNamespace(run_after=after)}
    start, end = window(ctx, 24)
    assert end == after
    assert end - start == timedelta(hours=24)
    assert instant(ctx) == after


def test_bad_requests_raise_with_the_fix():
    with pytest.raises(ValueError, match="positive"):
        window({"logical_date": datetime(2024, 1, 1, tzinfo=UTC)}, 0)
    with pytest.raises(ValueError, match="context"):
        resolve({}, "day")
    with pytest.raises(ValueError, match="naive"):
        key_of(datetime(2024, 1, 1), "day")  # noqa: DTZ001 - the naive time is the point
    with pytest.raises(ValueError, match="run_after"):
        instant({"run_id": "manual__x", "dag_run": SimpleNamespace(run_after=None)})


def test_output_dir_is_under_mia_home_by_dag_and_key(tmp_path: Path):
    part = resolve({"data_interval_end": datetime(2024, 1, 2, 5, tzinfo=UTC)}, "hour")
    assert output_dir(tmp_path, "mia_drift_watch", part) == \
        tmp_path / "runs" / "mia_drift_watch" / "2024-01-02T05"
