from datetime import UTC, datetime, timedelta, timezone

import pytest

from mia.cli import EXIT_RETRY, EXIT_STOP, run_guarded
from mia.clock import SystemClock, TestClock
from mia.errors import (
    AlertError,
    ConfigError,
    DataValidationError,
    OperationalError,
    StoreError,
    TemporaryError,
)


def test_test_clock_moves_only_when_told_and_sleep_advances_it():
    clock = TestClock(datetime(2024, 1, 2, 14, 30, tzinfo=UTC))
    clock.sleep(90)
    assert clock.now() == datetime(2024, 1, 2, 14, 31, 30, tzinfo=UTC)
    assert clock.monotonic() == 90


def test_test_clock_normalises_to_utc_and_refuses_naive_or_backwards_time():
    eastern = timezone(timedelta(hours=-5))
    assert TestClock(datetime(2024, 1, 2, 9, 30, tzinfo=eastern)).now().hour == 14
    with pytest.raises(ValueError, match="tz-aware"):
        TestClock(datetime(2024, 1, 2))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="backwards"):
        TestClock(datetime(2024, 1, 2, tzinfo=UTC)).advance(-1)


def test_system_clock_is_utc_aware():
    assert SystemClock().now().tzinfo is UTC


@pytest.mark.parametrize(("error", "response"), [
    (TemporaryError, "retry"), (OperationalError, "stop"), (AlertError, "alert"),
    (ConfigError, "stop"), (DataValidationError, "stop"), (StoreError, "stop"),
])
def test_exception_classes_encode_the_response(error, response):
    assert error("x").response == response


def test_cli_exit_code_follows_the_response(capsys):
    def temporary() -> int:
        raise TemporaryError("registry restarting; rerun in a minute")

    def stop() -> int:
        raise ConfigError("params.yaml: data.seed: expected int")

    assert run_guarded(temporary) == EXIT_RETRY
    assert run_guarded(stop) == EXIT_STOP
    assert "error: params.yaml: data.seed: expected int" in capsys.readouterr().err
