from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from executor.alerts import CATALOGUE, LEVELS, Alert, Alerter, catalogued
from executor.metrics import ExecutorMetrics
from mia.clock import TestClock
from mia.errors import OperationalError

T0 = datetime(2024, 1, 2, tzinfo=UTC)
TS = 1_704_153_600_000_000_000


class Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200, hold: threading.Event | None = None):
        self.bodies: list[dict] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.arrived.set()
                if hold is not None:
                    hold.wait(10)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def test_alert_posts_slack_compatible_json_with_its_fields(webhook):
    alerter = Alerter(webhook.url, extra_body={"chat_id": "42"}, clock=TestClock(T0),
                      source="exec-1")
    assert alerter.send(Alert(level="critical", code="breaker_trip",
                              message="loss breaker tripped at -2.1 %", ts_ns=TS))
    assert alerter.flush(5)
    (body,) = webhook.bodies
    assert body["text"] == "[CRITICAL] breaker_trip: loss breaker tripped at -2.1 %"
    assert body["level"] == "critical"
    assert body["code"] == "breaker_trip"
    assert body["ts_ns"] == TS
    assert body["ts"].startswith("2024-01-02T00:00:00")
    assert body["chat_id"] == "42"
    assert body["source"] == "exec-1"
    assert body["suppressed"] == 0
    assert alerter.sent == 1
    alerter.close()


def test_every_alert_is_logged_even_without_a_webhook(caplog):
    alerter = Alerter(None)
    with caplog.at_level(logging.INFO, logger="executor.alerts"):
        assert not alerter.send(Alert(level="emergency", code="kill_switch", message="file",
                                      ts_ns=TS))
    (record,) = caplog.records
    assert record.levelno == logging.CRITICAL
    assert "kill_switch" in record.getMessage()


def test_rate_limit_holds_back_a_flapping_code_and_reports_how_many_were_suppressed(
        webhook, caplog):
    clock = TestClock(T0)
    alerter = Alerter(webhook.url, burst=2, per_minute=1.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="executor.alerts"):
        sent = [alerter.alert("data_fault", f"jump #{i}", TS) for i in range(5)]
        assert sent == [True, True, False, False, False]
        assert alerter.alert("feed_down", "other code, own bucket", TS)
        clock.advance(60.0)  # one token back
        assert alerter.alert("data_fault", "jump #5", TS)
    assert alerter.flush(5)
    texts = [b["text"] for b in webhook.bodies]
    assert texts[-1] == "[WARNING] data_fault: jump #5 (3 similar suppressed)"
    assert webhook.bodies[-1]["suppressed"] == 3
    assert len(webhook.bodies) == 4
    assert alerter.suppressed == 3
    assert len(caplog.records) == 7  # suppressed from the webhook, never from the log
    alerter.close()


def test_an_emergency_is_never_rate_limited(webhook):
    alerter = Alerter(webhook.url, burst=1, per_minute=1.0, clock=TestClock(T0))
    assert all(alerter.alert("trading_halted", "journal full", TS) for _ in range(4))
    assert alerter.flush(5)
    assert len(webhook.bodies) == 4
    alerter.close()


def test_a_stuck_webhook_never_blocks_the_caller_and_a_full_queue_drops_with_a_count():
    hold = threading.Event()
    hook = Webhook(hold=hold)
    metrics = ExecutorMetrics()
    alerter = Alerter(hook.url, queue_size=2, timeout_s=10.0, retries=0, metrics=metrics)
    try:
        assert alerter.alert("breaker_trip", "first", TS)
        assert hook.arrived.wait(5)  # the worker is now stuck inside the first POST
        results = [alerter.alert(code, "x", TS) for code in
                   ("feed_down", "latency_high", "execution_error", "cvar_limit")]
        assert results == [True, True, False, False]
        assert alerter.dropped == 2
        assert metrics.alerts_dropped._value.get() == 2.0
        assert metrics.alerts.labels("critical", "cvar_limit")._value.get() == 1.0
    finally:
        hold.set()
        alerter.close()
        hook.close()
    assert len(hook.bodies) == 3


def test_a_failing_webhook_is_retried_then_counted_and_logged_without_its_url(caplog):
    hook = Webhook(status=500)
    clock = TestClock(T0)
    alerter = Alerter(hook.url, retries=2, clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="executor.alerts"):
            alerter.alert("execution_error", "broker timeout", TS)
            assert alerter.flush(10)
    finally:
        alerter.close()
        hook.close()
    assert len(hook.bodies) == 3
    assert alerter.failed == 1
    assert alerter.sent == 0
    assert clock.monotonic() == pytest.approx(0.5 + 1.0)  # retry sleeps on the injected clock
    assert "not delivered" in caplog.text
    assert hook.url not in caplog.text


def test_catalogue_has_the_reference_alerts_at_valid_levels():
    for code in ("memory_high", "execution_error", "regime_change", "cvar_limit",
                 "quantile_divergence", "weight_dominance", "confidence_drop",
                 "feature_fallback"):
        assert code in CATALOGUE
    assert all(spec.level in LEVELS for spec in CATALOGUE.values())
    assert CATALOGUE["memory_high"].threshold == 1024.0
    assert CATALOGUE["cvar_limit"].threshold == 0.1
    assert CATALOGUE["quantile_divergence"].threshold == 0.5
    assert CATALOGUE["confidence_drop"].threshold == 0.5


def test_every_alert_the_executor_raises_is_catalogued_at_the_level_it_is_raised():
    # each series of mia_alerts_total exists from the start (metrics.py), so increase() sees the
    # first event: an alert raised outside the catalogue would appear only with it
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[3] / "executor"
    source = "\n".join(p.read_text() for p in package.rglob("*.py"))
    raised = set(re.findall(r'"(info|warning|critical|emergency)",\s*f?"([a-z_]+)"', source))
    raised |= {("warning", f"{slot}_decision_failed") for slot in ("production", "canary")}
    raised -= {(lvl, code) for lvl, code in raised if code in LEVELS}  # ("critical", "emergency")
    assert len(raised) > 15
    assert {code: lvl for lvl, code in raised} == {
        code: CATALOGUE[code].level for _, code in raised if code in CATALOGUE}
    assert {code for _, code in raised} <= set(CATALOGUE)


def test_catalogued_alert_takes_its_level_and_an_unknown_code_degrades_to_a_warning():
    assert catalogued("trading_halted", "m", TS).level == "emergency"
    odd = catalogued("no_such_code", "m", TS)
    assert odd.level == "warning"
    assert "not in executor.alerts.CATALOGUE" in odd.message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"webhook_url": "file:///etc/passwd"}, "http"), ({"burst": 0}, "burst"),
     ({"queue_size": 0}, "queue_size"), ({"per_minute": 0.0}, "per_minute")],
)
def test_bad_alerter_settings_are_refused(kwargs, match):
    with pytest.raises(OperationalError, match=match):
        Alerter(**kwargs)


def test_an_alert_with_an_unknown_level_is_refused():
    with pytest.raises(OperationalError, match="level"):
        Alert(level="fatal", code="x", message="m", ts_ns=TS)


@pytest.mark.parametrize(
    ("extra", "match"),
    [({"text": "x"}, "replace the body's own fields"), ({"ts_ns": 0}, "ts_ns"),
     ({"chat_id": {"nested": 1}}, "string, number or boolean"),
     ({"ratio": float("nan")}, "ratio"), ({" ": "x"}, "non-empty name")],
)
def test_extra_body_fields_that_would_break_the_body_are_refused(extra, match):
    with pytest.raises(OperationalError, match=match):
        Alerter(None, extra_body=extra)


def test_extra_body_fields_are_merged_next_to_the_alerts_own(webhook):
    alerter = Alerter(webhook.url, extra_body={"chat_id": -1001, "disable_notification": True,
                                               "parse_mode": "HTML"})
    alerter.alert("feed_down", "redis gone", TS)
    assert alerter.flush(5)
    (body,) = webhook.bodies
    assert (body["chat_id"], body["disable_notification"], body["parse_mode"]) == (
        -1001, True, "HTML")
    assert body["text"] == "[CRITICAL] feed_down: redis gone"
    alerter.close()


MIB = 2**20


def test_memory_high_fires_on_crossing_then_repeats_only_while_above(caplog):
    from executor.alerts import MemoryWatch

    clock = TestClock(T0)
    metrics = ExecutorMetrics()
    watch = MemoryWatch(Alerter(None, metrics=metrics), 1024 * MIB, repeat_s=900.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="executor.alerts"):
        fired = [watch.check(3.0, 900 * MIB), watch.check(3.0, 1100 * MIB),
                 watch.check(3.0, 1200 * MIB)]
        clock.advance(899.0)
        fired.append(watch.check(3.0, 1200 * MIB))
        clock.advance(1.0)
        fired.append(watch.check(3.0, 1200 * MIB))  # still above after repeat_s
        fired.append(watch.check(3.0, 1000 * MIB))  # back under: re-armed
        fired.append(watch.check(3.0, 1050 * MIB))
    assert fired == [False, True, False, False, True, False, True]
    assert watch.raised == 3
    assert metrics.alerts.labels("warning", "memory_high")._value.get() == 3.0
    assert "RSS 1,100 MiB > alerts.memory_high_mb 1,024" in caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.WARNING


def test_a_memory_watch_without_a_limit_is_refused():
    from executor.alerts import MemoryWatch

    with pytest.raises(OperationalError, match="must be > 0"):
        MemoryWatch(Alerter(None), 0)
