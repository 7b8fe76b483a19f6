"""The executor's metrics endpoint read the way Prometheus reads it (issue 8, item 4).

Three levels: a scrape over HTTP parsed with prometheus_client's parser (always); a real
Prometheus server (Debian's ``prometheus`` package) scraping the endpoint and evaluating
``docker/prometheus/alerts.yml``; and promtool's rule unit tests. The last two skip visibly when
the binaries are absent (``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor.alerts import Alerter
from executor.metrics import ExecutorMetrics, MetricsServer, ProcessSampler

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "docker" / "prometheus" / "alerts.yml"
DOCUMENTED = {
    "mia_tick_to_decision_seconds": "histogram", "mia_stage_seconds": "histogram",
    "mia_position_contracts": "gauge", "mia_pnl_usd": "gauge", "mia_drawdown_ratio": "gauge",
    "mia_model_version": "gauge", "mia_canary_share": "gauge", "mia_trading_state": "gauge",
    "mia_breaker_trips": "counter", "mia_data_faults": "counter", "mia_psi": "gauge",
    "mia_process_cpu_percent": "gauge", "mia_process_rss_bytes": "gauge",
    "mia_bars": "counter", "mia_orders": "counter", "mia_fills": "counter",
    "mia_alerts": "counter", "mia_alerts_dropped": "counter",
}


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - localhost only
        return str(resp.read().decode())


def busy_executor() -> ExecutorMetrics:
    """Metrics after a few ticks of a trading day."""
    m = ExecutorMetrics()
    m.set_trading_state("RUNNING")
    for seconds in (40e-6, 60e-6, 80e-6, 300e-6):
        m.observe_tick(seconds)
        m.observe_stage("features", seconds / 4)
        m.bar()
    m.set_book("production", 3, 1250.0, 0.01)
    m.set_book("canary", -1, -75.0, 0.02)
    m.order("production")
    m.fill()
    m.set_model_version("production", 12)
    m.set_model_version("canary", 13)
    m.set_canary_share(0.05)
    m.trip("volatility")
    m.data_fault("jump")
    m.set_psi(["rsi_14", "atr_14"], [0.04, 0.27])
    Alerter(None, metrics=m).alert("regime_change", "trend -> defensive", 0)
    ProcessSampler(m).sample()
    return m


def test_scraped_endpoint_parses_and_carries_every_documented_series():
    m = busy_executor()
    server = MetricsServer(m, port=0)
    try:
        text = get(server.url)
    finally:
        server.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in DOCUMENTED.items():
        assert name in families, f"{name} missing from the scrape"
        assert families[name].type == kind
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert values[("mia_tick_to_decision_seconds_count", ())] == 4.0
    assert values[("mia_tick_to_decision_seconds_bucket", (("le", "0.0001"),))] == 3.0
    assert values[("mia_position_contracts", (("book", "canary"),))] == -1.0
    assert values[("mia_model_version", (("slot", "canary"),))] == 13.0
    assert values[("mia_trading_state", (("state", "RUNNING"),))] == 1.0
    assert values[("mia_breaker_trips_total", (("breaker", "volatility"),))] == 1.0
    assert values[("mia_breaker_trips_total", (("breaker", "loss"),))] == 0.0
    assert values[("mia_alerts_total", (("code", "regime_change"), ("level", "info")))] == 1.0
    assert values[("mia_psi", (("feature", "atr_14"),))] == 0.27
    assert values[("mia_process_rss_bytes", ())] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(base: str, promql: str) -> list[dict]:
    body = json.loads(get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
    return list(body["data"]["result"])


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_endpoint_and_fires_the_halted_rule(tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary (apt-get install prometheus); the parser test above "
                    "still reads the endpoint")
    m = busy_executor()
    m.set_trading_state("HALTED")
    server = MetricsServer(m, port=0)
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""\
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        rule_files: ["{RULES}"]
        scrape_configs:
          - job_name: mia-executor
            static_configs: [{{targets: ["127.0.0.1:{server.port}"]}}]
        """))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        bars: list[dict] = []
        firing: list[dict] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (bars and firing):
            time.sleep(0.5)
            try:
                bars = query(base, 'mia_bars_total{job="mia-executor"}')
                alerts = json.loads(get(f"{base}/api/v1/alerts"))["data"]["alerts"]
            except OSError:
                continue  # still starting
            firing = [a for a in alerts if a["labels"]["alertname"] == "MiaTradingHalted"
                      and a["state"] == "firing"]
        assert bars, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert float(bars[0]["value"][1]) == 4.0
        assert firing
        assert firing[0]["labels"]["severity"] == "emergency"
        p50 = query(base, "histogram_quantile(0.5, mia_tick_to_decision_seconds_bucket)")
        assert 25e-6 < float(p50[0]["value"][1]) <= 1e-4
    finally:
        proc.terminate()
        proc.wait(30)
        server.close()


PROMTOOL_TESTS = """\
rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mia_process_rss_bytes{{job="mia-executor",instance="x"}}'
        values: '500e6 1200e6 1200e6 1200e6 1200e6'
      - series: 'mia_alerts_total{{job="mia-executor",instance="x",level="critical",
          code="cvar_limit"}}'
        values: '0 0 1 1 1'
      - series: 'mia_alerts_total{{job="mia-executor",instance="x",level="emergency",
          code="kill_switch"}}'
        values: '0 0 1 1 1'
      - series: 'mia_alerts_total{{job="mia-executor",instance="x",level="info",
          code="regime_change"}}'
        values: '0 0 0 0 0'
      - series: 'mia_trading_state{{job="mia-executor",instance="x",state="HALTED"}}'
        values: '0 0 0 1 1'
      - series: 'mia_breaker_trips_total{{job="mia-executor",instance="x",breaker="loss"}}'
        values: '0 0 1 1 1'
    alert_rule_test:
      - eval_time: 4m
        alertname: MiaMemoryHigh
        exp_alerts:
          - exp_labels: {{severity: warning, code: memory_high, job: mia-executor, instance: x}}
            exp_annotations:
              summary: "executor RSS 1.118GiB is above 1024 MB"
              runbook: "docs/operations.md#memory_high"
      - eval_time: 1m
        alertname: MiaMemoryHigh
        exp_alerts: []
      - eval_time: 4m
        alertname: MiaCvarLimit
        exp_alerts:
          - exp_labels: {{severity: critical, code: cvar_limit, level: critical,
                          job: mia-executor, instance: x}}
            exp_annotations:
              summary: "CVaR loss over the last 100 trades is above 0.1"
              runbook: "docs/operations.md#cvar_limit"
      - eval_time: 4m
        alertname: MiaRegimeChange
        exp_alerts: []
      - eval_time: 4m
        alertname: MiaExecutorAlert
        exp_alerts:
          - exp_labels: {{severity: emergency, code: kill_switch, level: emergency,
                          job: mia-executor, instance: x}}
            exp_annotations:
              summary: "executor alert kill_switch (emergency)"
      - eval_time: 3m
        alertname: MiaTradingHalted
        exp_alerts:
          - exp_labels: {{severity: emergency, code: trading_halted, state: HALTED,
                          job: mia-executor, instance: x}}
            exp_annotations:
              summary: "trading is HALTED on x"
              runbook: "docs/operations.md#trading_halted"
      - eval_time: 3m
        alertname: MiaBreakerTrip
        exp_alerts:
          - exp_labels: {{severity: critical, code: breaker_trip, breaker: loss,
                          job: mia-executor, instance: x}}
            exp_annotations:
              summary: "circuit breaker loss tripped"
"""


def test_alert_rules_are_valid_and_fire_on_the_documented_conditions(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (apt-get install prometheus): the alert rules are unchecked")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(PROMTOOL_TESTS.format(rules=RULES))
    run = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr
