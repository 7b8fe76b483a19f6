"""The admin endpoint over real HTTP (urllib against an ephemeral port): the token, the kill
file the loop obeys, the status, the audit log."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from executor.admin import AdminServer, executor_status, start_admin
from executor.alerts import Alerter
from executor.metrics import ExecutorMetrics
from executor.settings import ExecutorSettings, FeedSettings, ModelSettings
from mia.clock import TestClock
from mia.errors import ConfigError
from mia.risk import Mode

TOKEN = secrets.token_hex(16)  # a fresh token per run: nothing secret is committed
T0 = datetime(2024, 1, 4, 15, 0, tzinfo=UTC)


def call(url: str, method: str = "GET", token: str | None = TOKEN, body: bytes | None = None,
         scheme: str = "Bearer") -> tuple[int, dict[str, Any], Any]:
    """:return: (status, JSON body, headers) of one request."""
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (http://127.0.0.1 only)
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def settings(tmp_path: Path, **changes: Any) -> ExecutorSettings:
    base: dict[str, Any] = {
        "symbol": "ES", "state_dir": str(tmp_path / "state"), "feed": FeedSettings(kind="replay"),
        "models": ModelSettings(source="local", production="/nowhere"),
        "kill_file": str(tmp_path / "state" / "KILL")}
    return ExecutorSettings(**{**base, **changes})


@pytest.fixture
def metrics() -> ExecutorMetrics:
    return ExecutorMetrics()


@pytest.fixture
def admin(tmp_path: Path, metrics: ExecutorMetrics) -> Iterator[AdminServer]:
    server = start_admin(settings(tmp_path), lambda: {"trading_state": "RUNNING", "pnl": 1.5,
                                                      "drawdown": float("nan")},
                         alerter=Alerter(None, metrics=metrics), env={"MIA_ADMIN_TOKEN": TOKEN},
                         port=0, clock=TestClock(T0))
    assert server is not None
    yield server
    server.close()


def kill_alerts(metrics: ExecutorMetrics) -> float:
    return metrics.registry.get_sample_value(
        "mia_alerts_total", {"level": "emergency", "code": "kill_switch"}) or 0.0


# --- the kill switch ------------------------------------------------------------------------

def test_post_kill_creates_the_kill_file_with_who_why_and_when(admin, metrics):
    code, doc, _ = call(f"{admin.url}/kill", "POST", body=b'{"reason": "feed looks frozen"}')
    assert code == 202
    assert doc["killed"]
    assert doc["created"]
    assert doc["kill_file"] == str(admin.kill_file)
    assert "restart" in doc["note"]
    written = json.loads(admin.kill_file.read_text())
    assert written["reason"] == "feed looks frozen"
    assert written["by"] == "admin-http 127.0.0.1"
    assert written["at"] == T0.isoformat()
    assert admin.kill_file.stat().st_mode & 0o777 == 0o600
    assert kill_alerts(metrics) == 1.0


def test_a_second_kill_keeps_the_first_file_and_alerts_once(admin, metrics):
    call(f"{admin.url}/kill", "POST", body=b'{"reason": "first"}')
    code, doc, _ = call(f"{admin.url}/kill", "POST", body=b'{"reason": "second"}')
    assert (code, doc["created"]) == (202, False)
    assert json.loads(admin.kill_file.read_text())["reason"] == "first"
    assert kill_alerts(metrics) == 1.0


def test_kill_without_a_body_is_accepted(admin):
    code, doc, _ = call(f"{admin.url}/kill", "POST", body=b"")
    assert (code, doc["created"]) == (202, True)
    assert json.loads(admin.kill_file.read_text())["reason"] == ""


@pytest.mark.parametrize(("body", "code", "says"), [
    (b"not json", 400, "body must be JSON"),
    (b'["a list"]', 400, "JSON object"),
    (b'{"reason": 5}', 400, 'string "reason"'),
    (b"x" * 5000, 413, "at most 4096"),
])
def test_a_malformed_kill_request_is_refused_and_kills_nothing(admin, body, code, says):
    got, doc, _ = call(f"{admin.url}/kill", "POST", body=body)
    assert got == code
    assert says in doc["error"]
    assert not admin.kill_file.exists()


def test_a_kill_file_that_cannot_be_created_is_a_loud_500(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    server = AdminServer(kill_file=blocker / "KILL", status=dict, token=TOKEN, port=0)
    try:
        with caplog.at_level(logging.CRITICAL, logger="mia.executor.admin"):
            code, doc, _ = call(f"{server.url}/kill", "POST")
    finally:
        server.close()
    assert code == 500
    assert "trading is NOT halted" in doc["error"]
    assert "NOT halted" in caplog.text


def test_resume_is_not_offered_and_says_how_a_person_releases_the_kill_latch(admin):
    code, doc, _ = call(f"{admin.url}/resume", "POST")
    assert code == 404
    assert "a restart keeps it" in doc["error"]
    assert "python -m executor release" in doc["error"]
    assert "--cause kill_switch" in doc["error"]


# --- tokens and routes ----------------------------------------------------------------------

@pytest.mark.parametrize(("token", "scheme"), [(None, "Bearer"),
                                               ("wrong-token-0123456789", "Bearer"),
                                               (TOKEN[:-1], "Bearer"), (TOKEN, "Basic")])
def test_a_missing_or_wrong_token_gets_401_kills_nothing_and_is_audited(admin, caplog, token,
                                                                        scheme):
    with caplog.at_level(logging.WARNING, logger="mia.executor.admin"):
        code, doc, headers = call(f"{admin.url}/kill", "POST", token=token, scheme=scheme)
    assert code == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in doc["error"]
    assert not admin.kill_file.exists()
    assert "admin audit: REFUSED POST /kill from 127.0.0.1" in caplog.text


def test_every_call_is_audited_and_the_token_never_logged(admin, caplog):
    with caplog.at_level(logging.DEBUG, logger="mia.executor.admin"):
        call(f"{admin.url}/status")
        call(f"{admin.url}/kill", "POST", body=b'{"reason": "drill"}')
        call(f"{admin.url}/nope")
    lines = [r.getMessage() for r in caplog.records if "admin audit" in r.getMessage()]
    assert lines == ["admin audit: GET /status from 127.0.0.1 -> 200",
                     "admin audit: POST /kill from 127.0.0.1 -> 202 reason='drill'",
                     "admin audit: GET /nope from 127.0.0.1 -> 404"]
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(("path", "method", "allow"), [("/kill", "GET", "POST"),
                                                       ("/status", "POST", "GET"),
                                                       ("/status", "DELETE", "GET")])
def test_a_route_called_with_the_wrong_method_gets_405_and_allow(admin, path, method, allow):
    code, _, headers = call(f"{admin.url}{path}", method)
    assert code == 405
    assert headers["Allow"] == allow
    assert not admin.kill_file.exists()


def test_an_unknown_path_gets_404_listing_the_routes(admin):
    code, doc, _ = call(f"{admin.url}/metrics")
    assert code == 404
    assert "POST /kill, GET /status" in doc["error"]


def test_status_is_the_callables_document_with_nan_as_null(admin):
    code, doc, headers = call(f"{admin.url}/status?verbose=1")
    assert code == 200
    assert doc == {"trading_state": "RUNNING", "pnl": 1.5, "drawdown": None}
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"


def test_a_failing_status_callable_is_a_500_not_a_hang(tmp_path):
    def broken() -> dict[str, Any]:
        raise KeyError("books")

    server = AdminServer(kill_file=tmp_path / "KILL", status=broken, token=TOKEN, port=0)
    try:
        code, doc, _ = call(f"{server.url}/status")
    finally:
        server.close()
    assert (code, doc["error"]) == (500, "status unavailable (KeyError)")


# --- starting it ----------------------------------------------------------------------------

def test_without_the_token_variable_the_endpoint_is_off_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mia.executor.admin"):
        assert start_admin(settings(tmp_path), dict, env={}, port=0) is None
    assert "admin endpoint disabled: environment variable MIA_ADMIN_TOKEN is not set" in \
        caplog.text


def test_the_token_comes_from_the_variable_the_settings_name(tmp_path):
    s = settings(tmp_path, admin_token_env="DESK_KILL_TOKEN")  # noqa: S106 (a variable name)
    assert start_admin(s, dict, env={"MIA_ADMIN_TOKEN": TOKEN}, port=0) is None
    server = start_admin(s, dict, env={"DESK_KILL_TOKEN": TOKEN}, port=0)
    assert server is not None
    try:
        assert call(f"{server.url}/status")[0] == 200
    finally:
        server.close()


def test_a_token_without_a_kill_file_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="kill_file is not set"):
        start_admin(settings(tmp_path, kill_file=None), dict, env={"MIA_ADMIN_TOKEN": TOKEN})


def test_a_short_token_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="MIA_ADMIN_TOKEN holds a 6-character token"):
        start_admin(settings(tmp_path), dict, env={"MIA_ADMIN_TOKEN": "letmein"[:6]})


def test_a_token_pasted_as_the_variable_name_is_refused_without_being_echoed(tmp_path):
    with pytest.raises(ConfigError, match="not an environment variable name") as info:
        start_admin(settings(tmp_path, admin_token_env=TOKEN), dict, env={})
    assert TOKEN not in str(info.value)


def test_it_binds_localhost_on_the_configured_port(tmp_path, port):
    server = start_admin(settings(tmp_path, admin_port=port), dict, env={"MIA_ADMIN_TOKEN": TOKEN})
    assert server is not None
    try:
        assert (server.host, server.port) == ("127.0.0.1", port)
        assert server.url == f"http://127.0.0.1:{port}"
    finally:
        server.close()


# --- with the loop --------------------------------------------------------------------------

def test_an_http_kill_halts_the_running_loop_at_the_next_tick(world, make_executor, tmp_path):
    kill = tmp_path / "KILL"
    ex, st = make_executor(kill_file=kill)
    server = AdminServer(kill_file=kill, status=lambda: executor_status(ex), token=TOKEN, port=0)
    answers: list[int] = []

    def feed() -> Iterator[Any]:
        for n, ev in enumerate(islice(world.replay(), 600)):
            yield ev
            if n == 300:
                answers.append(call(f"{server.url}/kill", "POST",
                                    body=b'{"reason": "drill"}')[0])
    try:
        ex.run(feed())
        code, status, _ = call(f"{server.url}/status")
    finally:
        server.close()
    assert answers == [202]
    assert ex.engines["production/ES"].mode is Mode.HALTED
    kills = [r.payload["event"] for r in st.journal.read("risk_event")
             if r.payload["event"]["cause"] == "kill_switch"]
    assert len(kills) == 1
    assert kills[0]["by"] == "kill_file"
    assert code == 200
    assert status["risk"]["production/ES"] == {"mode": "HALTED", "holds": ["kill_switch"]}
    assert status["kill_file"] == {"path": str(kill), "exists": True}


def test_status_reads_the_running_loop_from_another_thread(world, make_executor, tmp_path):
    ex, _ = make_executor(canary=True, share=0.5)
    server = AdminServer(kill_file=tmp_path / "KILL", status=lambda: executor_status(ex),
                         token=TOKEN, port=0)
    seen: list[tuple[int, dict[str, Any]]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            code, doc, _ = call(f"{server.url}/status")
            seen.append((code, doc))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        ex.run(islice(world.replay(), 800))
    finally:
        done.set()
        poller.join(10)
        code, final, _ = call(f"{server.url}/status")
        server.close()
    assert len(seen) > 5
    assert all(code == 200 for code, _ in seen)
    assert final["models"] == {"production": "1", "canary": "2"}
    assert final["canary_share"] == 0.5
    assert final["routing"] == "split"
    assert final["books"]["production"]["ES"]["position"] == ex.state.position("production", "ES")
    assert set(final["books"]) <= {"production", "canary"}
    assert final["counts"]["bars"] == ex.stats.bars == 400
    assert final["trading_state"] == "STOPPING"
    assert final["last_bar_ns"]["ES"] == max(ex.state.last_bar_ns.values())


def test_live_starts_the_endpoint_when_its_token_is_set(make_live, monkeypatch):
    monkeypatch.setenv("MIA_ADMIN_TOKEN", TOKEN)
    ex, s = make_live()
    code, doc, _ = call(f"http://127.0.0.1:{s.admin_port}/status")
    assert code == 200
    assert doc["trading_state"] == ex.phase == "STARTING"
    assert doc["models"]["production"] == "local-production"


def test_status_lists_every_book_before_its_first_trade_as_flat(world, make_executor):
    ex, _ = make_executor(canary=True, share=0.5)
    ex.run(islice(world.replay(), 2))  # one bar per symbol: the books exist, nothing traded
    assert ex.stats.orders == 0
    doc = executor_status(ex)
    assert doc["books"] == {"production": {"ES": {"position": 0, "cash_usd": 0.0}},
                            "canary": {"ES": {"position": 0, "cash_usd": 0.0}}}
    assert set(doc["risk"]) == {"production/ES", "canary/ES"}
