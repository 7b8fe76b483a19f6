"""Prometheus metrics of the executor: a private registry, an HTTP endpoint, process resources.

Series (all prefixed ``mia_``; books ``production | canary | shadow``, slots ``production |
canary``):

=====================================  ==========  ============================================
``mia_tick_to_decision_seconds``       histogram   bar in -> order out, measured in the loop
``mia_stage_seconds{stage}``           histogram   per stage of a tick (validate, features,
                                                   risk, decide, journal, broker)
``mia_position_contracts{book}``       gauge       net signed contracts
``mia_pnl_usd{book}``                  gauge       cumulative PnL, USD, net of costs
``mia_drawdown_ratio{book}``           gauge       drawdown from the equity peak, 0..1
``mia_model_version{slot}``            gauge       registered model version loaded in a slot
                                                   (0: empty or a local bundle)
``mia_canary_share``                   gauge       canary capital share, 0..1
``mia_trading_state{state}``           gauge       1 for the current state, 0 for the others
``mia_breaker_trips_total{breaker}``   counter     circuit-breaker trips
``mia_data_faults_total{code}``        counter     rejected bars / bad feed entries by code
``mia_psi{feature}``                   gauge       PSI drift of the top features
                                                   (executor.feature_log.DriftGauges)
``mia_process_cpu_percent``            gauge       this process, % of one core (psutil)
``mia_process_rss_bytes``              gauge       resident memory (psutil)
``mia_bars_total``                     counter     bars processed
``mia_orders_total{book}``             counter     orders submitted
``mia_fills_total``                    counter     fills received
``mia_alerts_total{level,code}``       counter     alerts raised (the Prometheus rules in
                                                   ``docker/prometheus/alerts.yml`` key on it)
``mia_alerts_dropped_total``           counter     alerts dropped by a full alert queue
=====================================  ==========  ============================================

``mia_stage_seconds`` holds one observation per stage per tick: the loop's collaborators add
their time to the tick's stages (:meth:`ExecutorMetrics.add_stage`; :class:`Timed` wraps the
journal and the broker, ``executor.app.TimedSlot`` the slots' feature updates and decisions),
the loop adds the inline validator's (``validate``) and the risk engines' calls (``risk``:
stops and marks, the risk gate; not observed on a tick no book trades), and
:meth:`ExecutorMetrics.observe_tick` observes each stage's sum with the tick's total.

Label children of every known book, slot, state, breaker, fault code and catalogued alert exist
from the start (at 0). The registry is not prometheus_client's global one, so tests and two
executors in one process never collide. Update methods cache each label child: a tick costs
dict look-ups and the library's own locked add, no new objects. Latency buckets bracket the
budgets of issue 7 (p50 <= 100 us, p99 <= 250 us) so ``histogram_quantile`` is exact at the
limits.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from executor.alerts import CATALOGUE
from mia.data.stream import REJECT_CODES
from mia.errors import OperationalError
from mia.validation.inline import FAULT_CODES

TRADING_STATES: Final[tuple[str, ...]] = ("STARTING", "RUNNING", "REDUCING", "HALTED",
                                          "STOPPING")
BOOKS: Final[tuple[str, ...]] = ("production", "canary", "shadow")
SLOTS: Final[tuple[str, ...]] = ("production", "canary")
BREAKERS: Final[tuple[str, ...]] = ("loss", "volatility", "latency", "data_quality", "stale_feed")
# every known fault code: the inline validator's, the feeds' (wire format + trimmed entries)
DATA_FAULT_CODES: Final[tuple[str, ...]] = (*FAULT_CODES, *REJECT_CODES, "trimmed")
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    5e-6, 1e-5, 2.5e-5, 5e-5, 7.5e-5, 1e-4, 1.5e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25,
)


class _Series:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # first bound >= value: Prometheus buckets are "le" (inclusive)
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class LatencyHistogram:
    """A Prometheus histogram written by one thread (the loop), without locks.

    prometheus_client's ``Histogram`` takes a lock for the sum and for the bucket (about
    0.8 us per observation on this machine), and a tick observes the total and every stage.
    Here an observation is a bisect and two adds; the scrape thread reads the plain counters
    (each update is atomic under the GIL, a scrape may see a count one ahead of the sum, which
    Prometheus tolerates). Only one thread may observe a given histogram.

    :param name: metric name.
    :param documentation: help text.
    :param label: the one label name (``stage``), or ``None`` for an unlabelled histogram.
    :param buckets: upper bounds, increasing (``+Inf`` is added).
    :param registry: where to register.
    """

    def __init__(self, name: str, documentation: str, label: str | None,
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._bounds = [float(b) for b in buckets]
        # the same "le" label text as prometheus_client's own histograms
        self._le = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._series: dict[str, _Series] = {}
        self._root = _Series(self._bounds)
        registry.register(self)

    def observe(self, seconds: float) -> None:
        """:param seconds: one observation (unlabelled histogram)."""
        self._root.observe(seconds)

    def labels(self, value: str) -> _Series:
        """:return: the child of one label value (keep it: :meth:`_Series.observe`)."""
        child = self._series.get(value)
        if child is None:
            child = self._series[value] = _Series(self._bounds)
        return child

    def describe(self) -> Iterator[Metric]:
        """Names for the registry's duplicate check."""
        yield HistogramMetricFamily(self.name, self.documentation,
                                    labels=[self.label] if self.label else None)

    def collect(self) -> Iterator[Metric]:
        """Cumulative buckets, sum and count of every child, at scrape time."""
        family = HistogramMetricFamily(self.name, self.documentation,
                                       labels=[self.label] if self.label else None)
        # list() copies under the GIL: the loop may add a child while a scrape runs
        items = list(self._series.items()) if self.label else [("", self._root)]
        for value, series in items:
            total, buckets = 0, []
            for le, count in zip(self._le, list(series.counts), strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric([value] if self.label else [], buckets, series.sum)
        yield family


class ExecutorMetrics:
    """Every executor series, registered in one private :class:`CollectorRegistry`.

    :param registry: where to register (default: a new private registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tick_seconds = LatencyHistogram("mia_tick_to_decision_seconds",
                                             "Bar in to order out, seconds", None,
                                             LATENCY_BUCKETS, r)
        self.stage_seconds = LatencyHistogram("mia_stage_seconds", "Seconds per stage of a tick",
                                              "stage", LATENCY_BUCKETS, r)
        self.position = Gauge("mia_position_contracts", "Net contracts", ["book"], registry=r)
        self.pnl = Gauge("mia_pnl_usd", "Cumulative PnL net of costs, USD", ["book"], registry=r)
        self.drawdown = Gauge("mia_drawdown_ratio", "Drawdown from the equity peak",
                              ["book"], registry=r)
        self.model_version = Gauge("mia_model_version", "Registered model version per slot",
                                   ["slot"], registry=r)
        self.canary_share = Gauge("mia_canary_share", "Canary capital share", registry=r)
        self.trading_state = Gauge("mia_trading_state", "1 for the current trading state",
                                   ["state"], registry=r)
        self.breaker_trips = Counter("mia_breaker_trips", "Circuit-breaker trips", ["breaker"],
                                     registry=r)
        self.data_faults = Counter("mia_data_faults", "Rejected bars and bad feed entries",
                                   ["code"], registry=r)
        self.psi = Gauge("mia_psi", "PSI drift of the top features", ["feature"], registry=r)
        self.cpu_percent = Gauge("mia_process_cpu_percent", "Process CPU, % of one core",
                                 registry=r)
        self.rss_bytes = Gauge("mia_process_rss_bytes", "Process resident memory, bytes",
                               registry=r)
        self.bars = Counter("mia_bars", "Bars processed", registry=r)
        self.orders = Counter("mia_orders", "Orders submitted", ["book"], registry=r)
        self.fills = Counter("mia_fills", "Fills received", registry=r)
        self.alerts = Counter("mia_alerts", "Alerts raised", ["level", "code"], registry=r)
        self.alerts_dropped = Counter("mia_alerts_dropped", "Alerts dropped by a full queue",
                                      registry=r)
        # children created up front: the series exist (at 0) from the first scrape
        self._books = {b: (self.position.labels(b), self.pnl.labels(b), self.drawdown.labels(b),
                           self.orders.labels(b)) for b in BOOKS}
        self._slots = {s: self.model_version.labels(s) for s in SLOTS}
        self._states = {s: self.trading_state.labels(s) for s in TRADING_STATES}
        # counters too: Prometheus' increase() misses the first event of a series that only
        # appears with it, so the alert rules would miss the first breaker trip or alert
        self._breakers = {b: self.breaker_trips.labels(b) for b in BREAKERS}
        self._faults = {c: self.data_faults.labels(c) for c in DATA_FAULT_CODES}
        self._alerts = {(spec.level, code): self.alerts.labels(spec.level, code)
                        for code, spec in CATALOGUE.items()}
        self._stages: dict[str, _Series] = {}
        self._pending: dict[str, float] = {}  # this tick's seconds per stage, so far
        self._psi: dict[str, Any] = {}
        self._state: str | None = None

    def observe_tick(self, seconds: float) -> None:
        """Observe one bar's tick-to-decision latency, and each stage's share of the tick
        (:meth:`add_stage`) since the previous one (call from the loop thread).

        :param seconds: tick-to-decision latency of one bar.
        """
        self.tick_seconds.observe(seconds)
        pending = self._pending
        if pending:
            for stage, spent in pending.items():
                self.observe_stage(stage, spent)
            pending.clear()

    def add_stage(self, stage: str, seconds: float) -> None:
        """Add time to a stage of the current tick; :meth:`observe_tick` observes the sum.

        :param stage: ``validate``, ``features``, ``risk``, ``decide``, ``journal``,
            ``broker``.
        :param seconds: time spent (call from the loop thread).
        """
        pending = self._pending
        pending[stage] = pending.get(stage, 0.0) + seconds

    def discard_stages(self) -> None:
        """Forget stage time added outside a tick (the warm-up before the first bar)."""
        self._pending.clear()

    def observe_stage(self, stage: str, seconds: float) -> None:
        """:param stage: stage name (``validate``, ``features``, ``inference`` …).
        :param seconds: its latency in this tick (call from the loop thread).
        """
        child = self._stages.get(stage)
        if child is None:
            child = self._stages[stage] = self.stage_seconds.labels(stage)
        child.observe(seconds)

    def set_book(self, book: str, position: float, pnl_usd: float, drawdown: float) -> None:
        """:param book: ``production``, ``canary`` or ``shadow``.
        :param position: net signed contracts.
        :param pnl_usd: cumulative PnL, USD.
        :param drawdown: drawdown ratio, 0..1.
        """
        pos, pnl, dd, _ = self._book(book)
        pos.set(position)
        pnl.set(pnl_usd)
        dd.set(drawdown)

    def order(self, book: str) -> None:
        """Count one submitted order of ``book``."""
        self._book(book)[3].inc()

    def fill(self, n: int = 1) -> None:
        """Count ``n`` fills."""
        self.fills.inc(n)

    def bar(self) -> None:
        """Count one processed bar."""
        self.bars.inc()

    def set_model_version(self, slot: str, version: int | None) -> None:
        """:param slot: ``production`` or ``canary``.
        :param version: registered model version, or ``None`` (slot empty: exported as 0).
        """
        child = self._slots.get(slot)
        if child is None:
            raise OperationalError(f"metrics: unknown slot {slot!r}; slots are {list(SLOTS)}")
        child.set(version or 0)

    def set_canary_share(self, share: float) -> None:
        """:param share: canary capital share, 0..1."""
        self.canary_share.set(share)

    def set_trading_state(self, state: str) -> None:
        """:param state: one of :data:`TRADING_STATES`; the others are set to 0."""
        if state not in self._states:
            raise OperationalError(f"metrics: unknown trading state {state!r}; states are "
                                   f"{list(TRADING_STATES)}")
        if state == self._state:
            return
        if self._state is not None:
            self._states[self._state].set(0)
        self._states[state].set(1)
        self._state = state

    def trip(self, breaker: str) -> None:
        """Count one trip of ``breaker`` (``loss``, ``volatility``, ``latency`` …)."""
        child = self._breakers.get(breaker)
        if child is None:
            child = self._breakers[breaker] = self.breaker_trips.labels(breaker)
        child.inc()

    def data_fault(self, code: str) -> None:
        """Count one rejected bar or bad feed entry, by fault code."""
        child = self._faults.get(code)
        if child is None:
            child = self._faults[code] = self.data_faults.labels(code)
        child.inc()

    def set_psi(self, features: Sequence[str], values: Sequence[float]) -> None:
        """:param features: names of the monitored features.
        :param values: their PSI, in the same order.
        :raises OperationalError: as many names as values are needed.
        """
        if len(features) != len(values):
            raise OperationalError(f"metrics: {len(features)} PSI feature names but "
                                   f"{len(values)} values")
        cache = self._psi
        for name, value in zip(features, values, strict=True):
            child = cache.get(name)
            if child is None:
                child = cache[name] = self.psi.labels(name)
            child.set(value)

    def clear_psi(self) -> None:
        """Remove every ``mia_psi`` series (a new bundle monitors other features)."""
        for name in list(self._psi):
            self.psi.remove(name)
            del self._psi[name]

    def alert(self, level: str, code: str) -> None:
        """Count one alert (called by :class:`executor.alerts.Alerter`)."""
        key = (level, code)
        child = self._alerts.get(key)
        if child is None:
            child = self._alerts[key] = self.alerts.labels(level, code)
        child.inc()

    def alert_dropped(self) -> None:
        """Count one alert dropped by a full queue."""
        self.alerts_dropped.inc()

    def _book(self, book: str) -> tuple[Any, Any, Any, Any]:
        children = self._books.get(book)
        if children is None:
            raise OperationalError(f"metrics: unknown book {book!r}; books are {list(BOOKS)}")
        return children


class Timed:
    """A stand-in for one of the loop's collaborators that adds the time of some of its
    methods to a tick's stages (:meth:`ExecutorMetrics.add_stage`); everything else is the
    object's own.

    ``Timed(journal, metrics, {"append": "journal"})``: about 0.1 us per timed call (two clock
    reads and a dict add), against the tens of microseconds a journal commit takes.

    :param inner: the object (journal, broker).
    :param metrics: where the time goes.
    :param stages: method name -> stage name; a method the object lacks is skipped (so
        ``hasattr`` answers as for the object itself).
    """

    def __init__(self, inner: Any, metrics: ExecutorMetrics, stages: Mapping[str, str]) -> None:
        self._inner = inner
        for method, stage in stages.items():
            if hasattr(inner, method):
                # set on the instance: __getattr__ (the rest) is not consulted for them
                setattr(self, method, _timed(getattr(inner, method), metrics, stage))

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)


def _timed(method: Callable[..., Any], metrics: ExecutorMetrics, stage: str) -> Callable[..., Any]:
    clock = time.perf_counter_ns
    add = metrics.add_stage

    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return method(*args, **kwargs)
        finally:
            add(stage, (clock() - t0) * 1e-9)

    return call


class ProcessSampler:
    """Refreshes ``mia_process_cpu_percent`` and ``mia_process_rss_bytes`` in a daemon thread.

    :param metrics: where to write.
    :param interval_s: seconds between samples.
    :param on_sample: called with ``(cpu_percent, rss_bytes)`` after each sample (e.g. the
        ``memory_high`` alert check), in the sampler's thread.
    """

    def __init__(self, metrics: ExecutorMetrics, interval_s: float = 5.0,
                 on_sample: Callable[[float, int], None] | None = None) -> None:
        if not interval_s > 0:
            raise OperationalError(f"metrics: sampler interval_s={interval_s!r} must be > 0")
        import psutil

        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first call only sets the baseline
        self._metrics = metrics
        self._interval = interval_s
        self._on_sample = on_sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> tuple[float, int]:
        """Take one sample now.

        :return: ``(cpu_percent since the previous sample, rss_bytes)``.
        """
        cpu = float(self._proc.cpu_percent(None))
        rss = int(self._proc.memory_info().rss)
        self._metrics.cpu_percent.set(cpu)
        self._metrics.rss_bytes.set(rss)
        if self._on_sample is not None:
            self._on_sample(cpu, rss)
        return cpu, rss

    def start(self) -> None:
        """Sample now and then every ``interval_s`` until :meth:`stop`."""
        if self._thread is not None:
            return
        self.sample()
        self._thread = threading.Thread(target=self._run, name="mia-metrics-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (returns within one interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._interval + 1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


class MetricsServer:
    """The ``/metrics`` HTTP endpoint of one registry, served from a daemon thread.

    :param metrics: the registry to expose.
    :param host: bind address; ``127.0.0.1`` by default (issue 8: metrics bind to localhost
        unless an operator opens them).
    :param port: TCP port (``executor.metrics_port``); 0 picks a free one (tests).
    :raises OperationalError: the address cannot be bound.
    """

    def __init__(self, metrics: ExecutorMetrics, host: str = "127.0.0.1", port: int = 9108
                 ) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host,
                                                           registry=metrics.registry)
        except OSError as exc:
            raise OperationalError(f"metrics: cannot serve on {host}:{port} ({exc}); set "
                                   "executor.metrics_port to a free port") from exc
        self.host = host
        self.port = int(self._server.server_port)

    @property
    def url(self) -> str:
        """:return: the scrape URL."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
