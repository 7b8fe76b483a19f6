"""Alerts: always a log line, and a JSON POST to a webhook (Slack / Telegram), rate-limited.

:meth:`Alerter.send` never blocks the loop: it logs, takes a token from the code's bucket, and
puts the alert on a bounded queue that a daemon thread posts from. A full queue drops the alert
and counts it (``dropped``, ``mia_alerts_dropped_total``); a code over its rate is logged but
not posted, and the next posted alert of that code says how many were suppressed. An
``emergency`` is never rate-limited. The webhook URL is a secret (Slack's carries a token): it
comes from the environment and is never logged.

Webhook body: ``{"text": "[CRITICAL] breaker_trip: …", "level", "code", "message", "ts",
"ts_ns", "source", "suppressed"}`` (:data:`BODY_KEYS`) plus ``extra_body``, the
``alerts.webhook_fields`` of ``executor.yaml`` (Telegram's ``sendMessage`` needs ``chat_id``);
Slack incoming webhooks read ``text``.

:class:`MemoryWatch` raises ``memory_high`` from the resource sampler's samples
(:class:`executor.metrics.ProcessSampler`): once when the resident memory crosses the
threshold, then every ``repeat_s`` while it stays above.

The catalogue (:data:`CATALOGUE`): the alerts of reference.md "Monitoring and alerts" first,
then the executor's operational ones. Thresholds are defaults the caller compares against;
``docker/prometheus/alerts.yml`` holds the same alerts as Prometheus rules.

=========================  =========  =========  ==============================================
code                       level      threshold  raised when
=========================  =========  =========  ==============================================
``memory_high``            warning    1024       process RSS above 1024 MB
``execution_error``        critical   —          the broker rejects or times out an order or a
                                                 cancel
``regime_change``          info       0.7        a new regime is called (probability > 0.7)
``cvar_limit``             critical   0.1        CVaR loss over the last 100 trades above 0.1
``quantile_divergence``    warning    0.5        QR-DQN quantile variance above 0.5
``weight_dominance``       warning    0.8        one agent holds more than 0.8 of the ensemble
                                                 weight (MIA's default; reference.md names no
                                                 number)
``confidence_drop``        warning    0.5        share of decisions below the confidence
                                                 threshold above 0.5 (a drop in confidence)
``feature_fallback``       critical   —          a degraded feature list is in use (a bundle
                                                 feature could not be built)
``data_fault``             warning    —          bars rejected by the inline validator or bad
                                                 feed entries
``feed_down``              critical   —          the feed is disconnected or stale
``breaker_trip``           critical   —          a circuit breaker tripped
``trading_halted``         emergency  —          trading state went HALTED
``kill_switch``            emergency  —          the kill switch was used
``canary_rollback``        critical   —          the canary was rolled back
``model_load_failed``      critical   —          a new bundle failed to load; the running one
                                                 stays
``registry_unreachable``   warning    —          MLflow cannot be polled; trading carries on
``reconcile_mismatch``     critical   —          journal and broker positions disagree
``journal_error``          emergency  —          the journal cannot be written
``latency_high``           warning    250e-6     tick-to-decision p99 above 250 us
``order_rejected``         critical   —          the broker refused an order
``cancel_rejected``        warning    —          a cancel came too late (the order filled)
``unknown_order``          critical   —          an order works at the broker that the journal
                                                 lacks (recovery)
``unknown_fill``           critical   —          a fill for an order the journal lacks
``production_decision_     warning    —          production's (or the canary's) model raised on
failed``, ``canary_...``                         a bar: no decision on it
``canary_share_invalid``   critical   —          the registry's canary share is invalid; the
                                                 running share stays
``risk_input``             critical   —          the risk gate refused a book's decision
``warmup_short``           warning    —          too little stored history to start warm
``hold_released``          info       —          a person released a latched hold
``release_refused``        warning    —          a release request released nothing
``backlog``                info       —          a start catches up on the bars published while
                                                 the process was down (start and end)
``feed_restored``          info       —          the feed reaches its source again
=========================  =========  =========  ==============================================
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from mia.clock import Clock, SystemClock
from mia.errors import OperationalError

if TYPE_CHECKING:
    from executor.metrics import ExecutorMetrics

LEVELS: Final[tuple[str, ...]] = ("info", "warning", "critical", "emergency")
BODY_KEYS: Final[tuple[str, ...]] = ("text", "level", "code", "message", "ts", "ts_ns", "source",
                                     "suppressed")
_LOG_LEVEL: Final[dict[str, int]] = {"info": logging.INFO, "warning": logging.WARNING,
                                     "critical": logging.ERROR, "emergency": logging.CRITICAL}
_log = logging.getLogger("executor.alerts")


class AlertSpec(NamedTuple):
    """One catalogued alert.

    :param level: its level.
    :param threshold: the default threshold the caller compares against, or ``None``.
    :param description: when it is raised.
    """

    level: str
    threshold: float | None
    description: str


CATALOGUE: Final[dict[str, AlertSpec]] = {
    "memory_high": AlertSpec("warning", 1024.0, "process RSS above 1024 MB"),
    "execution_error": AlertSpec("critical", None, "broker rejected or timed out an order"),
    "regime_change": AlertSpec("info", 0.7, "new regime called with probability > 0.7"),
    "cvar_limit": AlertSpec("critical", 0.1, "CVaR loss over 100 trades above 0.1"),
    "quantile_divergence": AlertSpec("warning", 0.5, "QR-DQN quantile variance above 0.5"),
    "weight_dominance": AlertSpec("warning", 0.8, "one agent above 0.8 of ensemble weight"),
    "confidence_drop": AlertSpec("warning", 0.5, "confidence drop rate above 0.5"),
    "feature_fallback": AlertSpec("critical", None, "degraded feature list in use"),
    "data_fault": AlertSpec("warning", None, "bars rejected or bad feed entries"),
    "feed_down": AlertSpec("critical", None, "feed disconnected or stale"),
    "breaker_trip": AlertSpec("critical", None, "circuit breaker tripped"),
    "trading_halted": AlertSpec("emergency", None, "trading HALTED"),
    "kill_switch": AlertSpec("emergency", None, "kill switch used"),
    "canary_rollback": AlertSpec("critical", None, "canary rolled back"),
    "model_load_failed": AlertSpec("critical", None, "new bundle failed to load"),
    "registry_unreachable": AlertSpec("warning", None, "MLflow cannot be polled"),
    "reconcile_mismatch": AlertSpec("critical", None, "journal and broker positions differ"),
    "journal_error": AlertSpec("emergency", None, "journal cannot be written"),
    "latency_high": AlertSpec("warning", 250e-6, "tick-to-decision p99 above 250 us"),
    "order_rejected": AlertSpec("critical", None, "the broker refused an order"),
    "cancel_rejected": AlertSpec("warning", None, "a cancel came too late (the order filled)"),
    "unknown_order": AlertSpec("critical", None, "an order works that the journal lacks"),
    "unknown_fill": AlertSpec("critical", None, "a fill for an order the journal lacks"),
    "production_decision_failed": AlertSpec("warning", None, "production's model raised"),
    "canary_decision_failed": AlertSpec("warning", None, "the canary's model raised"),
    "canary_share_invalid": AlertSpec("critical", None, "the registry's canary share is invalid"),
    "risk_input": AlertSpec("critical", None, "the risk gate refused a book's decision"),
    "warmup_short": AlertSpec("warning", None, "too little history to start warm"),
    "hold_released": AlertSpec("info", None, "a person released a latched hold"),
    "release_refused": AlertSpec("warning", None, "a release request released nothing"),
    "backlog": AlertSpec("info", None, "catching up on the bars published while down"),
    "feed_restored": AlertSpec("info", None, "the feed reaches its source again"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """One alert.

    :param level: ``info``, ``warning``, ``critical`` or ``emergency``.
    :param code: a short machine name (see :data:`CATALOGUE`).
    :param message: what happened and what to do.
    :param ts_ns: when, ns since the epoch (from the injected clock).
    :raises OperationalError: an unknown level.
    """

    level: str
    code: str
    message: str
    ts_ns: int

    def __post_init__(self) -> None:
        if self.level not in _LOG_LEVEL:
            raise OperationalError(f"alert {self.code!r}: level {self.level!r} is not one of "
                                   f"{list(LEVELS)}")


def catalogued(code: str, message: str, ts_ns: int) -> Alert:
    """An alert at its catalogue level; an uncatalogued code becomes a ``warning`` saying so
    (a typo in a rare branch must not crash the loop).

    :param code: a :data:`CATALOGUE` key.
    :param message: what happened and what to do.
    :param ts_ns: when, ns since the epoch.
    """
    spec = CATALOGUE.get(code)
    if spec is None:
        return Alert(level="warning", code=code, ts_ns=ts_ns,
                     message=f"{message} (code {code!r} is not in executor.alerts.CATALOGUE)")
    return Alert(level=spec.level, code=code, message=message, ts_ns=ts_ns)


def _checked_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    reserved = sorted(set(fields) & set(BODY_KEYS))
    if reserved:
        raise OperationalError(f"alerts: extra body fields {reserved} would replace the body's "
                               f"own fields ({', '.join(BODY_KEYS)}); rename them")
    bad = sorted(str(k) for k, v in fields.items()
                 if not isinstance(k, str) or not k.strip()
                 or not isinstance(v, str | int | float | bool)
                 or (isinstance(v, float) and not math.isfinite(v)))  # not JSON
    if bad:
        raise OperationalError(f"alerts: extra body fields {bad} need a non-empty name and a "
                               "string, number or boolean value")
    return dict(fields)


class _Bucket:
    __slots__ = ("stamp", "suppressed", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp, self.suppressed = tokens, stamp, 0


class Alerter:
    """Logs every alert and posts them to a webhook from a background thread.

    :param webhook_url: ``http(s)://…`` or ``None`` (log only).
    :param extra_body: fields added to every webhook body (e.g. Telegram's ``chat_id``):
        strings, numbers or booleans, none of :data:`BODY_KEYS`.
    :param burst: webhook posts a code may make back to back.
    :param per_minute: sustained posts per minute per code (token refill rate).
    :param queue_size: alerts waiting to be posted; beyond it they are dropped and counted.
    :param timeout_s: HTTP timeout of one post.
    :param retries: extra attempts of a failed post (0.5 s, 1 s, … apart).
    :param clock: time for the rate limit and the retry sleep.
    :param metrics: counts ``mia_alerts_total`` and ``mia_alerts_dropped_total`` when given.
    :param source: the ``source`` field of the body (host or deployment name).
    :raises OperationalError: a non-http(s) URL, bad limits or bad ``extra_body`` fields.
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        extra_body: Mapping[str, Any] | None = None,
        burst: int = 3,
        per_minute: float = 1.0,
        queue_size: int = 100,
        timeout_s: float = 5.0,
        retries: int = 2,
        clock: Clock | None = None,
        metrics: ExecutorMetrics | None = None,
        source: str = "mia-executor",
    ) -> None:
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise OperationalError("alerts: the webhook URL must start with http:// or https://")
        if burst < 1 or not per_minute > 0 or queue_size < 1 or retries < 0 or not timeout_s > 0:
            raise OperationalError(f"alerts: need burst >= 1 ({burst}), per_minute > 0 "
                                   f"({per_minute}), queue_size >= 1 ({queue_size}), retries "
                                   f">= 0 ({retries}), timeout_s > 0 ({timeout_s})")
        self._url = webhook_url
        self._extra = _checked_fields(extra_body or {})
        self._burst, self._rate = float(burst), per_minute / 60.0
        self._timeout, self._retries = timeout_s, retries
        self._clock = clock or SystemClock()
        self._metrics = metrics
        self._source = source
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Alert, int] | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = self.suppressed = 0
        self._thread: threading.Thread | None = None
        if webhook_url is not None:
            self._thread = threading.Thread(target=self._run, name="mia-alerts", daemon=True)
            self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Log the alert and queue it for the webhook; never blocks, never raises.

        :param alert: the alert.
        :return: ``True`` if queued for posting; ``False`` when log-only, rate-limited or
            dropped by a full queue.
        """
        _log.log(_LOG_LEVEL[alert.level], "alert level=%s code=%s: %s", alert.level,
                 alert.code, alert.message)
        if self._metrics is not None:
            self._metrics.alert(alert.level, alert.code)
        if self._url is None:
            return False
        with self._lock:  # the loop and the resource sampler may both raise alerts
            bucket = self._take(alert)
            if bucket is None:
                return False
            try:
                self._queue.put_nowait((alert, bucket.suppressed))
            except queue.Full:
                self.dropped += 1
                if self._metrics is not None:
                    self._metrics.alert_dropped()
                return False
            bucket.suppressed = 0
            return True

    def alert(self, code: str, message: str, ts_ns: int) -> bool:
        """:meth:`send` a :func:`catalogued` alert.

        :param code: a :data:`CATALOGUE` key.
        :param message: what happened and what to do.
        :param ts_ns: when, ns since the epoch.
        """
        return self.send(catalogued(code, message, ts_ns))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued alert was posted (or gave up).

        :param timeout_s: longest wait.
        :return: ``True`` if the queue drained in time.
        """
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, name="mia-alerts-flush", daemon=True).start()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Post what is queued (up to ``timeout_s``), then stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass  # the thread is stuck posting; it is a daemon and dies with the process
        self._thread.join(1.0)
        self._thread = None

    def _take(self, alert: Alert) -> _Bucket | None:
        now = self._clock.monotonic()
        bucket = self._buckets.get(alert.code)
        if bucket is None:
            bucket = self._buckets[alert.code] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if alert.level == "emergency":
            return bucket  # an emergency is never held back
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            self.suppressed += 1
            return None
        bucket.tokens -= 1.0
        return bucket

    def _run(self) -> None:
        url = self._url
        while True:
            job = self._queue.get()
            try:
                if job is None or url is None:
                    return
                self._post(url, *job)
            finally:
                self._queue.task_done()

    def _post(self, url: str, alert: Alert, suppressed: int) -> None:
        ts = datetime.fromtimestamp(alert.ts_ns / 1e9, tz=UTC).isoformat()
        more = f" ({suppressed} similar suppressed)" if suppressed else ""
        body = {**self._extra,
                "text": f"[{alert.level.upper()}] {alert.code}: {alert.message}{more}",
                "level": alert.level, "code": alert.code, "message": alert.message, "ts": ts,
                "ts_ns": alert.ts_ns, "source": self._source, "suppressed": suppressed}
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        error: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self._timeout):  # noqa: S310
                    self.sent += 1
                    return
            except (urllib.error.URLError, OSError) as exc:
                error = exc
            if attempt < self._retries:
                self._clock.sleep(0.5 * 2**attempt)
        self.failed += 1
        # the URL is a secret: name the alert and the error only
        _log.warning("alert %s not delivered to the webhook after %d attempts: %s", alert.code,
                     self._retries + 1, error)


class MemoryWatch:
    """Raises ``memory_high`` (warning) while the process's resident memory is above a limit.

    Fed by the resource sampler (:class:`executor.metrics.ProcessSampler`'s ``on_sample``, in
    its thread): the alert goes out when RSS first exceeds the limit and again every
    ``repeat_s`` while it stays above; a sample back under the limit re-arms it. It goes to the
    log, the webhook and ``mia_alerts_total``, not to the journal (the loop is the journal's
    one writer).

    :param alerter: where the alert goes.
    :param limit_bytes: the threshold (``alerts.memory_high_mb``; systemd's ``MemoryHigh``).
    :param repeat_s: seconds between repeats while above.
    :param clock: monotonic time for the repeat, wall time for the alert's ``ts_ns``.
    :raises OperationalError: a non-positive limit or repeat.
    """

    def __init__(self, alerter: Alerter, limit_bytes: int, *, repeat_s: float = 900.0,
                 clock: Clock | None = None) -> None:
        if limit_bytes <= 0 or not repeat_s > 0:
            raise OperationalError(f"alerts: memory limit {limit_bytes} bytes and repeat "
                                   f"{repeat_s} s must be > 0")
        self._alerter, self._limit, self._repeat = alerter, int(limit_bytes), repeat_s
        self._clock = clock or SystemClock()
        self._last: float | None = None  # monotonic time of the last alert while above
        self.raised = 0

    def check(self, cpu_percent: float, rss_bytes: int) -> bool:
        """Judge one sample (the sampler's ``on_sample`` signature).

        :param cpu_percent: the process's CPU, % of one core (in the message).
        :param rss_bytes: its resident memory.
        :return: whether it raised the alert now.
        """
        if rss_bytes <= self._limit:
            self._last = None
            return False
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self._repeat:
            return False
        self._last = now
        self.raised += 1
        mib = 2**20
        self._alerter.alert(
            "memory_high",
            f"process RSS {rss_bytes / mib:,.0f} MiB > alerts.memory_high_mb "
            f"{self._limit / mib:,.0f} (CPU {cpu_percent:.0f} %); systemd throttles it from "
            "MemoryHigh and kills it at MemoryMax: look at mia_process_rss_bytes since the last "
            "model swap (operations.md, memory_high)",
            int(self._clock.now().timestamp() * 1e9))
        return True
