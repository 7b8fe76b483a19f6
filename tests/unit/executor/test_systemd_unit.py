"""docker/systemd/mia-executor.service: systemd accepts it, it is hardened, and it agrees with
the example executor.yaml and with the notify protocol the executor speaks (executor/systemd.py)."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from executor import systemd
from executor.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "docker" / "systemd" / "mia-executor.service"
EXAMPLE = REPO / "docker" / "executor.example.yaml"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed "
                                   "here: the unit is only parsed, not verified by systemd")


class _Repeated(dict[str, Any]):
    """configparser's option dict keeping every value of a repeated key (systemd allows
    ``Environment=`` and ``SystemCallFilter=`` several times; configparser would keep one)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def unit() -> dict[str, dict[str, list[str]]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, dict_type=_Repeated,
                                       empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT)
    return {s: {k: v.split("\n") for k, v in parser[s].items()} for s in parser.sections()}


def one(section: str, key: str) -> str:
    values = unit()[section][key]
    assert len(values) == 1, f"{key} given {len(values)} times"
    return values[0]


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path):
    # verify checks that ExecStart's binary exists; /opt/mia is not installed on this machine,
    # so the copy runs this interpreter instead (the only change)
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/mia/.venv/bin/python", sys.executable))
    out = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr  # unknown keys are only warnings: none allowed


@needs_analyze
def test_the_hardening_scores_at_most_2_of_10_exposure(tmp_path):
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text())
    out = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", str(copy)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_it_is_a_notify_service_with_a_watchdog_that_restarts_on_failure():
    assert one("Service", "Type") == "notify"
    assert one("Service", "Restart") == "on-failure"
    assert int(one("Service", "RestartSec")) > 0
    watchdog = int(one("Service", "WatchdogSec"))
    # the loop pings at half the timeout (executor/systemd.py); feed events, which carry the
    # pings, come at least every second from the Redis feed: a healthy loop never misses one
    assert 10 <= watchdog <= 120
    assert int(one("Unit", "StartLimitBurst")) >= 1
    # a configuration error (exit 2, executor/__main__.py) is not retried
    assert one("Service", "RestartPreventExitStatus") == "2"


def test_it_starts_the_executor_with_the_etc_config_as_a_dedicated_user():
    assert one("Service", "ExecStart") == ("/opt/mia/.venv/bin/python -m executor --config "
                                           "/etc/mia/executor.yaml")
    assert one("Service", "User") == "mia"
    assert one("Service", "Group") == "mia"
    assert one("Service", "EnvironmentFile") == "/etc/mia/executor.env"
    assert one("Service", "WorkingDirectory") == "/opt/mia"  # params.yaml, the executor package


@pytest.mark.parametrize(("key", "value"), [
    ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""), ("UMask", "0077")])
def test_it_is_hardened(key, value):
    assert one("Service", key) == value


def test_memory_is_capped_above_the_alert_threshold():
    from executor.alerts import CATALOGUE

    def mib(text: str) -> float:
        units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text) / 2**20

    alert = CATALOGUE["memory_high"].threshold
    assert alert is not None
    assert mib(one("Service", "MemoryHigh")) >= alert  # the alert comes before the throttle
    assert mib(one("Service", "MemoryMax")) > mib(one("Service", "MemoryHigh"))


def test_the_example_config_writes_only_where_the_unit_allows():
    writable = [PurePosixPath(p) for p in one("Service", "ReadWritePaths").split()]
    s = load_settings(EXAMPLE)
    for path in (s.state_dir, s.kill_file or ""):
        assert any(PurePosixPath(path).is_relative_to(w) for w in writable), path
    home = next(v for v in unit()["Service"]["Environment"] if v.startswith("MIA_HOME="))
    assert any(PurePosixPath(home.split("=", 1)[1]).is_relative_to(w) for w in writable)


def test_notify_sends_the_state_to_systemds_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_notify_outside_systemd_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("WATCHDOG=1") is False


def test_the_loop_pings_at_half_the_units_watchdog(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", str(int(one("Service", "WatchdogSec")) * 1_000_000))
    assert systemd.watchdog_interval_s() == int(one("Service", "WatchdogSec")) / 2
