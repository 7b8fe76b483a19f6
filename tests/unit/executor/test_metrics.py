from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executor.metrics import (
    BOOKS,
    TRADING_STATES,
    ExecutorMetrics,
    MetricsServer,
    ProcessSampler,
)
from mia.errors import OperationalError


def samples(metrics: ExecutorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_live_in_a_private_registry_so_two_executors_never_collide():
    a, b = ExecutorMetrics(), ExecutorMetrics()
    a.bar()
    assert samples(a)[("mia_bars_total", ())] == 1.0
    assert samples(b)[("mia_bars_total", ())] == 0.0
    assert "mia_bars_total" not in generate_latest(REGISTRY).decode()


def test_book_series_exist_at_zero_before_the_first_trade():
    s = samples(ExecutorMetrics())
    for book in BOOKS:
        assert s[("mia_position_contracts", (("book", book),))] == 0.0
        assert s[("mia_orders_total", (("book", book),))] == 0.0


def test_updates_show_up_under_the_documented_names_and_labels():
    m = ExecutorMetrics()
    m.set_book("canary", -2, 125.5, 0.03)
    m.order("canary")
    m.fill(3)
    m.set_model_version("production", 7)
    m.set_model_version("canary", None)
    m.set_canary_share(0.15)
    m.trip("loss")
    m.trip("loss")
    m.data_fault("jump")
    m.set_psi(["rsi_14", "atr_14"], [0.05, 0.31])
    m.alert("critical", "breaker_trip")
    m.alert_dropped()
    s = samples(m)
    assert s[("mia_position_contracts", (("book", "canary"),))] == -2.0
    assert s[("mia_pnl_usd", (("book", "canary"),))] == 125.5
    assert s[("mia_drawdown_ratio", (("book", "canary"),))] == 0.03
    assert s[("mia_orders_total", (("book", "canary"),))] == 1.0
    assert s[("mia_fills_total", ())] == 3.0
    assert s[("mia_model_version", (("slot", "production"),))] == 7.0
    assert s[("mia_model_version", (("slot", "canary"),))] == 0.0
    assert s[("mia_canary_share", ())] == 0.15
    assert s[("mia_breaker_trips_total", (("breaker", "loss"),))] == 2.0
    assert s[("mia_data_faults_total", (("code", "jump"),))] == 1.0
    assert s[("mia_psi", (("feature", "atr_14"),))] == 0.31
    assert s[("mia_alerts_total", (("code", "breaker_trip"), ("level", "critical")))] == 1.0
    assert s[("mia_alerts_dropped_total", ())] == 1.0


def test_latency_histograms_bucket_at_the_issue_budgets():
    m = ExecutorMetrics()
    for seconds in (40e-6, 90e-6, 200e-6, 3e-3):
        m.observe_tick(seconds)
    m.observe_stage("features", 20e-6)
    s = samples(m)
    le = "mia_tick_to_decision_seconds_bucket"
    assert s[(le, (("le", "0.0001"),))] == 2.0  # the p50 budget, 100 us
    assert s[(le, (("le", "0.00025"),))] == 3.0  # the p99 budget, 250 us
    assert s[("mia_tick_to_decision_seconds_count", ())] == 4.0
    assert s[("mia_stage_seconds_count", (("stage", "features"),))] == 1.0


def test_trading_state_is_one_for_the_current_state_only():
    m = ExecutorMetrics()
    m.set_trading_state("RUNNING")
    m.set_trading_state("HALTED")
    s = samples(m)
    assert [s[("mia_trading_state", (("state", st),))] for st in TRADING_STATES] == [
        0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.set_trading_state("PAUSED"), "trading state"),
        (lambda m: m.set_book("paper", 0, 0, 0), "book"),
        (lambda m: m.order("paper"), "book"),
        (lambda m: m.set_model_version("previous", 1), "slot"),
        (lambda m: m.set_psi(["a", "b"], [0.1]), "PSI"),
    ],
)
def test_unknown_labels_are_refused_with_the_known_ones(call, match):
    with pytest.raises(OperationalError, match=match):
        call(ExecutorMetrics())


def test_label_children_are_cached_so_a_tick_builds_no_new_series_objects():
    m = ExecutorMetrics()
    m.observe_stage("risk", 1e-6)
    m.trip("latency")
    m.data_fault("stale")
    m.set_psi(["rsi_14"], [0.1])
    cached = (m._stages["risk"], m._breakers["latency"], m._faults["stale"], m._psi["rsi_14"])
    m.observe_stage("risk", 1e-6)
    m.trip("latency")
    m.data_fault("stale")
    m.set_psi(["rsi_14"], [0.2])
    assert cached == (m._stages["risk"], m._breakers["latency"], m._faults["stale"],
                      m._psi["rsi_14"])


def test_process_sampler_writes_this_process_cpu_and_rss():
    m = ExecutorMetrics()
    seen = []
    sampler = ProcessSampler(m, interval_s=60.0, on_sample=lambda cpu, rss: seen.append(rss))
    sum(i * i for i in range(200_000))  # some CPU between the baseline and the sample
    cpu, rss = sampler.sample()
    s = samples(m)
    assert rss > 10 * 2**20
    assert s[("mia_process_rss_bytes", ())] == float(rss)
    assert cpu >= 0.0
    assert s[("mia_process_cpu_percent", ())] == cpu
    assert seen == [rss]


def test_process_sampler_thread_samples_at_start_and_stops():
    m = ExecutorMetrics()
    sampler = ProcessSampler(m, interval_s=0.05)
    sampler.start()
    assert samples(m)[("mia_process_rss_bytes", ())] > 0
    sampler.stop()
    assert sampler._thread is None


def test_server_binds_localhost_by_default_and_serves_the_registry():
    m = ExecutorMetrics()
    m.bar()
    server = MetricsServer(m, port=0)
    try:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as resp:  # noqa: S310 - local
            body = resp.read().decode()
        assert "mia_bars_total 1.0" in body
    finally:
        server.close()


def test_server_on_a_busy_port_says_which_setting_to_change():
    m = ExecutorMetrics()
    first = MetricsServer(m, port=0)
    try:
        with pytest.raises(OperationalError, match="metrics_port"):
            MetricsServer(m, port=first.port)
    finally:
        first.close()


def test_known_counter_series_exist_at_zero_so_prometheus_increase_sees_the_first_event():
    from executor.alerts import CATALOGUE

    s = samples(ExecutorMetrics())
    assert s[("mia_breaker_trips_total", (("breaker", "stale_feed"),))] == 0.0
    assert s[("mia_data_faults_total", (("code", "non_monotonic"),))] == 0.0
    assert s[("mia_data_faults_total", (("code", "wrong_symbol"),))] == 0.0
    for code, spec in CATALOGUE.items():
        assert s[("mia_alerts_total", (("code", code), ("level", spec.level)))] == 0.0


def test_lock_free_latency_histogram_exports_what_prometheus_clients_histogram_would():
    from prometheus_client import CollectorRegistry, Histogram

    from executor.metrics import LATENCY_BUCKETS

    reference = CollectorRegistry()
    ref = Histogram("mia_stage_seconds", "x", ["stage"], buckets=LATENCY_BUCKETS,
                    registry=reference)
    m = ExecutorMetrics()
    rng = np.random.default_rng(3)
    values = [*LATENCY_BUCKETS, 0.0, 1.0, *rng.lognormal(-10, 1.5, 500).tolist()]
    for v in values:  # exact bucket bounds included: "le" is inclusive
        ref.labels("risk").observe(v)
        m.observe_stage("risk", v)

    def parsed(registry):
        text = generate_latest(registry).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) if f.name == "mia_stage_seconds"
                for s in f.samples if not s.name.endswith("_created")}

    ours, theirs = parsed(m.registry), parsed(reference)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-12)


def test_stage_time_added_during_a_tick_is_one_observation_per_stage_at_its_end():
    m = ExecutorMetrics()
    m.add_stage("features", 10e-6)
    m.add_stage("features", 15e-6)  # production and canary: one tick
    m.add_stage("journal", 30e-6)
    m.observe_tick(80e-6)
    m.observe_tick(60e-6)  # nothing added: no stage observation
    s = samples(m)
    assert s[("mia_stage_seconds_count", (("stage", "features"),))] == 1.0
    assert s[("mia_stage_seconds_sum", (("stage", "features"),))] == pytest.approx(25e-6)
    assert s[("mia_stage_seconds_count", (("stage", "journal"),))] == 1.0
    assert s[("mia_tick_to_decision_seconds_count", ())] == 2.0


def test_stage_time_outside_a_tick_can_be_discarded():
    m = ExecutorMetrics()
    m.add_stage("features", 0.5)  # a warm-up
    m.discard_stages()
    m.observe_tick(80e-6)
    assert not [k for k in samples(m) if k[0] == "mia_stage_seconds_count"]


def test_timed_adds_the_methods_it_wraps_to_their_stage_and_passes_the_rest_through():
    from executor.metrics import Timed

    class Journal:
        last_seq = 41

        def append(self, kind, payload, *, key=None):
            self.last_seq += 1
            return key != "dup"

        def get(self, kind, key):
            return (kind, key)

    class Failing:
        def submit(self, order):
            raise ValueError(order)

    m = ExecutorMetrics()
    journal = Timed(Journal(), m, {"append": "journal", "missing": "never"})
    assert journal.append("bar", {}, key="k") is True
    assert journal.append("bar", {}, key="dup") is False
    assert journal.last_seq == 43
    assert journal.get("bar", "k") == ("bar", "k")
    assert not hasattr(journal, "missing")
    broker = Timed(Failing(), m, {"submit": "broker"})
    with pytest.raises(ValueError, match="order-1"):
        broker.submit("order-1")  # a failing call is timed too
    m.observe_tick(1e-4)
    s = samples(m)
    assert s[("mia_stage_seconds_count", (("stage", "journal"),))] == 1.0
    assert s[("mia_stage_seconds_count", (("stage", "broker"),))] == 1.0
    assert s[("mia_stage_seconds_sum", (("stage", "journal"),))] > 0.0


def test_clearing_psi_removes_the_series_of_the_features_no_longer_monitored():
    m = ExecutorMetrics()
    m.set_psi(["rsi_14", "atr_14"], [0.05, 0.31])
    m.clear_psi()
    m.set_psi(["vix_es_correlation"], [0.02])
    psi = {k: v for k, v in samples(m).items() if k[0] == "mia_psi"}
    assert psi == {("mia_psi", (("feature", "vix_es_correlation"),)): 0.02}
