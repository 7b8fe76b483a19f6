"""`mia ui`'s process supervision, ports and params (mia.commands.ui) with real processes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from mia.commands._stack import stack_env
from mia.commands.ui import Service, Supervisor, port_free, services, ui_params
from mia.errors import OperationalError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_port_in_use_is_not_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_free(s.getsockname()[1])
    assert port_free(_free_port())


def test_services_become_healthy_and_stop_with_the_processes_they_forked(tmp_path):
    port = _free_port()
    server = Service(name="web", command=(sys.executable, "-m", "http.server", str(port),
                                          "--bind", "127.0.0.1"),
                     health=f"http://127.0.0.1:{port}/")
    # a service that forks a worker (as the api-server and the scheduler do) and ignores SIGTERM
    stubborn = Service(name="stubborn", command=(sys.executable, "-c", (
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "time.sleep(600)\n")))
    sup = Supervisor(dict(os.environ), tmp_path / "logs", grace=2.0)
    sup.start(server)
    sup.start(stubborn)
    try:
        sup.wait_healthy(timeout=30)
        deadline = time.monotonic() + 10
        while not (tmp_path / "child.pid").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int((tmp_path / "child.pid").read_text())
        assert sup.dead() == []
    finally:
        lines = sup.stop()
    assert lines[0].startswith("stubborn: killed")  # the last started stops first
    assert lines[1] == "web: stopped"
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)  # its process group went with it
    assert (tmp_path / "logs" / "web.log").is_file()


def test_a_service_that_dies_fails_the_watch_with_its_log(tmp_path):
    sup = Supervisor(dict(os.environ), tmp_path, sleep=lambda s: time.sleep(0.05))
    sup.start(Service(name="broken", command=(sys.executable, "-c",
                                              "print('port 8080 in use'); raise SystemExit(3)")))
    try:
        with pytest.raises(OperationalError, match=r"(?s)broken exited with code 3:.*port 8080 "
                                                   r"in use.*broken\.log"):
            sup.watch()
    finally:
        assert sup.stop() == ["broken: had exited (3)"]


def test_a_service_that_never_answers_times_out(tmp_path):
    sup = Supervisor(dict(os.environ), tmp_path, sleep=lambda s: time.sleep(0.05))
    sup.start(Service(name="mute", command=(sys.executable, "-c", "import time; time.sleep(60)"),
                      health=f"http://127.0.0.1:{_free_port()}/health"))
    try:
        with pytest.raises(OperationalError, match=r"mute \(http://127\.0\.0\.1:\d+/health\) "
                                                   r"did not answer within 1 s"):
            sup.wait_healthy(timeout=1)
    finally:
        sup.stop()


def test_the_ui_uses_the_demo_params_unless_told_otherwise(tmp_path):
    demo = tmp_path / "demo" / "params.yaml"
    assert ui_params(None, tmp_path, {}) is None  # no demo yet: the usual resolution
    demo.parent.mkdir()
    demo.write_text("x: 1\n")
    assert ui_params(None, tmp_path, {}) == demo
    assert ui_params(Path("mine.yaml"), tmp_path, {}) == Path("mine.yaml")
    assert ui_params(None, tmp_path, {"MIA_PARAMS": "/etc/mia.yaml"}) is None


def test_the_stack_serves_airflow_and_mlflow_with_one_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MIA_MLFLOW_UI_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = stack_env(tmp_path, tmp_path / "p.yaml", api_port=18080, mlflow_port=15000)
    assert env["AIRFLOW_HOME"] == str((tmp_path / "airflow").resolve())
    assert env["MIA_MLFLOW_UI_URL"] == "http://127.0.0.1:15000"  # where the plugin links point
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    procs = services(env, f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "art"),
                     api_port=18080, mlflow_port=15000)
    assert [p.name for p in procs] == ["api-server", "scheduler", "dag-processor", "mlflow"]
    assert procs[0].health == "http://127.0.0.1:18080/api/v2/monitor/health"
    assert procs[3].command[1:4] == ("server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db")
    remote = services(env, "http://mlflow.internal:5000", "s3://b", api_port=18080,
                      mlflow_port=15000)
    assert "mlflow" not in [p.name for p in remote]  # a tracking server is only linked
