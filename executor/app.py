"""Building an executor from its settings: state, broker, models, feeds, metrics (the wiring).

One function per kind of start: :func:`replay` (a backtest of the live path: a local bundle over
history as fast as possible) and :func:`live` (``executor.yaml``: models from the registry or
local paths, a replay or Redis feed, metrics, alerts, the feature log, systemd). Both go through
:func:`open_state`: startup and crash recovery are one code path (design.md section 8).

The live process, in the order :func:`live` builds it: metrics and the alerter first (recovery's
alerts go through them), the models, recovery (a position mismatch latches the production
engine in REDUCING), the loop (:class:`LiveExecutor`: its stop flushes the feature log), the
warm-up, then the side services: the feature log with the online PSI (``mia_psi``), the
metrics endpoint, the admin endpoint, and the resource sampler, which every 5 s also sets
``mia_model_version`` / ``mia_canary_share`` and judges ``memory_high``. ``mia_stage_seconds``
comes from :class:`TimedSlot` (``features``, ``decide``), :class:`executor.metrics.Timed`
around the journal (``journal``) and the broker (``broker``), and the loop itself (``validate``,
``risk``: :meth:`executor.loop.Executor._tick`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from executor.broker.paper import PaperBroker
from executor.calendar import trade_date
from executor.feeds.base import FeedEvent, FeedItem
from executor.journal import Journal, private_dir
from executor.loop import Executor, Services
from executor.recovery import AlertSink, MismatchHold, recover
from executor.router import Routing
from executor.settings import ExecutorSettings, RollbackSettings
from executor.slot import ModelSlot
from executor.snapshots import SnapshotStore
from executor.stats import TickStats
from mia.envs.costs import CostModel
from mia.errors import OperationalError, StoreError

if TYPE_CHECKING:
    from executor.metrics import ExecutorMetrics
    from mia.registry.bundle import Bundle

SESSION_BARS: Final[int] = 1380  # one-minute bars in a CME Globex session (23 h)
_log = logging.getLogger("executor.app")


@dataclass(frozen=True, kw_only=True)
class Opened:
    """The durable state of one executor directory, recovered."""

    journal: Journal
    broker: PaperBroker
    snapshots: SnapshotStore
    recovered: Any


def open_state(state_dir: Path, symbols: Sequence[str], params: Any, *,
               sync: str = "normal", hold: MismatchHold | None = None,
               alert: AlertSink | None = None) -> Opened:
    """Open (or create) the journal, the paper broker and the snapshots, then recover.

    :param sync: the journal's durability: ``full`` survives power loss, ``normal`` survives a
        process crash (kill -9; the default), ``off`` is for replays.
    :param hold: what puts the risk engines in REDUCING after a position mismatch
        (:func:`executor.recovery.recover`); ``None``: the journal's trading state only.
    :param alert: where recovery's alerts go besides the journal (level, code, message).
    """
    from mia.data.contracts import contract

    root = private_dir(state_dir)
    journal = Journal(root / "journal.sqlite", sync=sync)  # type: ignore[arg-type]
    costs = {s: CostModel.from_config(contract(s), params.env) for s in symbols}
    broker = PaperBroker(root / "paper_broker.sqlite", costs,
                         max_order_contracts=2 * params.risk.max_contracts,
                         sync=sync)  # type: ignore[arg-type]
    snapshots = SnapshotStore(root / "snapshots", keep=params.executor.snapshots_kept)
    recovered = recover(journal, broker, snapshots,
                        multipliers={s: contract(s).multiplier for s in symbols},
                        hold=hold, alert=alert)
    r = recovered
    _log.info("recovered %s: %s, then %d journal records; broker: %d fills drained, %d orders "
              "resent, %d unknown orders, %d position mismatches", root,
              r.loaded.path.name if r.loaded.path else "no snapshot (a clean start)", r.replayed,
              r.drained, len(r.resubmitted), len(r.unknown), len(r.mismatches))
    return Opened(journal=journal, broker=broker, snapshots=snapshots, recovered=recovered)


def warm_dates(store_root: Path, symbol: str, start: date, warmup: int,
               warm_start: date | None) -> tuple[date, date] | None:
    """The trade dates before ``start`` that hold at least ``warmup + 1`` bars (or from
    ``warm_start``). :return: (first, last) or None when ``start`` is the first stored date."""
    from mia.data.store import BarStore

    days = [d for d in BarStore(store_root).dates(symbol) if d < start]
    if warm_start is not None:
        days = [d for d in days if d >= warm_start]
    else:  # one spare session for short days
        days = days[-(math.ceil((warmup + 1) / SESSION_BARS) + 1):]
    return (days[0], days[-1]) if days else None


def replay(cfg: Any, *, bundle: Path, symbol: str, cross: str | None, start: date, end: date,
           state_dir: Path, warm_start: date | None = None, canary: Path | None = None,
           canary_share: float = 0.05) -> TickStats:
    """Run the live loop over history with local bundles (the backtest of the live path).

    :param cfg: MIA configuration (params, MIA_HOME with the raw store).
    :param bundle: the production bundle directory. :param warm_start: first date warming the
        features (default: just enough sessions before ``start``).
    :param canary: a canary bundle directory (its own book at ``canary_share``), or None.
    :return: the run's stats, every decision included.
    """
    from executor.feeds.replay import ReplayFeed

    p = cfg.params
    store = cfg.endpoints.mia_home / "data" / "raw"
    symbols = [symbol] + ([cross] if cross else [])
    slot = ModelSlot.load(bundle, "local")
    second = ModelSlot.load(canary, "local-canary") if canary is not None else None
    opened = open_state(state_dir, symbols, p, sync="off")
    ex = Executor(symbol=symbol, cross_symbol=cross, params=p, state=opened.recovered.state,
                  slots={"production": slot, "canary": second},
                  services=Services(journal=opened.journal, broker=opened.broker,
                                    snapshots=opened.snapshots),
                  routing=Routing(share=canary_share if second is not None else 0.0),
                  rollback=RollbackSettings(),
                  capital=p.env.initial_equity, record=True, replay=True,
                  snapshot_ns=10**18)
    warmup = max(slot.warmup, second.warmup if second is not None else 0)
    window = warm_dates(store, symbol, start, warmup, warm_start)
    if window is not None:
        ex.warm(ReplayFeed(store, symbols, window[0], window[1]))
    if not slot.ready or (second is not None and not second.ready):
        raise OperationalError(f"replay: {slot.features.bars_seen} bars of history before "
                               f"{start} do not warm the bundle's features ({slot.warmup + 1} "
                               "needed); start later or pass an earlier --warm-start")
    # one transaction each: a replay needs no per-bar durability. The journal commits first:
    # orders it holds and the broker lacks are resubmitted by a recovery, the reverse would be
    # fills nobody ordered
    with opened.broker.batch(), opened.journal.batch():
        stats = ex.run(ReplayFeed(store, symbols, start, end))
    opened.broker.close()
    opened.journal.close()
    return stats


class LiveExecutor(Executor):
    """The loop of the live process: its graceful stop also closes the process's side services.

    :attr:`closing` runs in order after :meth:`Executor.shutdown` (working orders cancelled,
    final snapshot): the feature log writes its last rows, the sampler stops, the webhook
    drains. A failing step is logged and the next one still runs.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closing: list[tuple[str, Callable[[], Any]]] = []

    def shutdown(self, flatten: bool = False) -> None:
        """:meth:`Executor.shutdown`, then each of :attr:`closing`.

        :param flatten: send the order that closes each book's position.
        """
        super().shutdown(flatten)
        for name, close in self.closing:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - the next service still closes
                _log.error("stop: closing the %s failed (%s: %s)", name, type(exc).__name__,
                           exc)


class TimedSlot(ModelSlot):
    """A model slot that adds its feature update and its decision to the tick's stages
    (``mia_stage_seconds{stage="features"|"decide"}``, :meth:`ExecutorMetrics.add_stage`).

    A warm-up (the watcher's thread, on history) is not timed: the stages are the loop's.

    :param bundle: a verified bundle. :param version: its version.
    :param metrics: where the time goes (``None``: not timed).
    """

    def __init__(self, bundle: Bundle, version: str,
                 metrics: ExecutorMetrics | None = None) -> None:
        super().__init__(bundle, version)
        self.metrics = metrics

    @classmethod
    def loader(cls, metrics: ExecutorMetrics) -> Callable[[str | Path, str], ModelSlot]:
        """:return: a ``(bundle directory, version) -> slot`` that times into ``metrics``."""
        from mia.registry.bundle import read_bundle

        return lambda path, version: cls(read_bundle(path), version, metrics)

    def update(self, row: np.ndarray) -> None:
        """:meth:`ModelSlot.update`, timed as ``features``."""
        m = self.metrics
        if m is None:
            super().update(row)
            return
        t0 = time.perf_counter_ns()
        super().update(row)
        m.add_stage("features", (time.perf_counter_ns() - t0) * 1e-9)

    def decide(self, position: int) -> Any:
        """:meth:`ModelSlot.decide`, timed as ``decide``."""
        m = self.metrics
        if m is None:
            return super().decide(position)
        t0 = time.perf_counter_ns()
        try:
            return super().decide(position)
        finally:
            m.add_stage("decide", (time.perf_counter_ns() - t0) * 1e-9)

    def warm(self, rows: np.ndarray) -> None:
        """:meth:`ModelSlot.warm`, not timed (another thread, history)."""
        m, self.metrics = self.metrics, None
        try:
            super().warm(rows)
        finally:
            self.metrics = m


def live(settings: ExecutorSettings, cfg: Any) -> LiveExecutor:
    """Build the live executor of ``executor.yaml`` (recovered, warm, not yet running).

    :return: the executor; :func:`executor.__main__.main` runs it with signals and systemd.
    """
    from executor.alerts import Alert, Alerter, MemoryWatch
    from executor.feature_log import DriftGauges, FeatureLog, SlotFeatures
    from executor.metrics import ExecutorMetrics, MetricsServer, ProcessSampler, Timed
    from mia.data.contracts import contract
    from mia.risk import RiskRules

    p = cfg.params
    symbols = [settings.symbol] + ([settings.cross_symbol] if settings.cross_symbol else [])
    # first: recovery's alerts reach the log, the webhook and mia_alerts_total through it
    metrics = ExecutorMetrics()
    alerter = Alerter(os.environ.get(settings.webhook_env) or None,
                      extra_body=settings.alerts.webhook_fields, metrics=metrics)

    def alert(level: str, code: str, message: str) -> None:
        alerter.send(Alert(level=level, code=code, message=message, ts_ns=time.time_ns()))

    load = TimedSlot.loader(metrics)
    slots: dict[str, ModelSlot | None] = {"production": None, "canary": None}
    watcher = None
    share = 0.0
    if settings.models.source == "local":
        slots["production"] = load(settings.models.production or "", "local-production")
        if settings.models.canary:
            slots["canary"] = load(settings.models.canary, "local-canary")
            share = settings.models.canary_share
    else:
        watcher = _first_models(cfg, settings, slots, load)
        share = watcher.share
    routing = Routing(mode=settings.routing, share=share, overlap_days=settings.overlap_days)
    capital = p.env.initial_equity
    rules: dict[str, RiskRules] = {settings.symbol: RiskRules.from_config(
        p.risk, spec=contract(settings.symbol),
        regime_thresholds=p.features.regime_thresholds)}
    hold = MismatchHold(rules=rules, now_ns=time.time_ns(), equity=capital * routing.capital(
        slots["canary"] is not None)["production"])
    opened = open_state(settings.state_path, symbols, p, hold=hold, alert=alert)
    broker_calls = dict.fromkeys(("on_bar", "poll_fills", "submit", "fill_stop", "cancel"),
                                 "broker")
    services = Services(journal=Timed(opened.journal, metrics, {"append": "journal"}),
                        broker=Timed(opened.broker, metrics, broker_calls),
                        snapshots=opened.snapshots, metrics=metrics, alerter=alerter,
                        features=None)
    # a replay feed's bars are history: judged by their own ts, not the wall clock
    ex = LiveExecutor(symbol=settings.symbol, cross_symbol=settings.cross_symbol, params=p,
                      state=opened.recovered.state, slots=slots, services=services,
                      routing=routing, rollback=settings.rollback, capital=capital,
                      kill_file=Path(settings.kill_file) if settings.kill_file else None,
                      replay=settings.feed.kind == "replay",
                      flatten_on_stop=settings.flatten_on_stop,
                      history_bars=settings.warmup_days * SESSION_BARS,
                      snapshot_ns=int(p.executor.snapshot_seconds * 1e9),
                      release_dir=settings.state_path)
    warm_live(ex, settings, cfg.endpoints.mia_home / "data" / "raw", now_ns=time.time_ns())
    metrics.discard_stages()  # the warm-up's feature updates are no tick's
    if watcher is not None:
        # the watcher warms new slots on the loop's rows; its thread never writes the journal
        # (one writer: the loop): its alerts go to the log and the webhook
        watcher.attach(history=ex.history, alert=lambda level, code, msg: alerter.send(
            Alert(level=level, code=code, message=msg, ts_ns=ex._now_ns())))
        services.watcher = watcher
    drift = DriftGauges(metrics)
    log = FeatureLog(cfg.endpoints.mia_home, on_rows=drift.observe)
    services.features = SlotFeatures(log, settings.symbol, lambda: ex.slots["production"],
                                     on_bundle=drift.use)
    MetricsServer(metrics, host=p.executor.metrics_host, port=p.executor.metrics_port)
    from executor.admin import executor_status, start_admin

    start_admin(settings, lambda: executor_status(ex), alerter=alerter)  # off without its token
    memory = MemoryWatch(alerter, settings.alerts.memory_high_bytes)

    def on_sample(cpu: float, rss: int) -> None:
        publish_models(ex, metrics)
        memory.check(cpu, rss)

    sampler = ProcessSampler(metrics, on_sample=on_sample)
    sampler.start()
    ex.closing += [("feature log", log.close), ("resource sampler", sampler.stop),
                   ("alert webhook", alerter.flush)]
    return ex


def publish_models(ex: Executor, metrics: ExecutorMetrics) -> None:
    """Set ``mia_model_version`` per slot and ``mia_canary_share`` from the loop's state (the
    resource sampler's thread, every 5 s; the loop replaces slots and routing whole, so a read
    sees the old or the new one).

    A slot's gauge is its registered version, 0 when empty or a local bundle (not registered);
    the share is 0 while no canary is loaded.

    :param ex: the running executor. :param metrics: its metrics.
    """
    for name in ("production", "canary"):
        slot = ex.slots.get(name)
        version = slot.version if slot is not None else ""
        metrics.set_model_version(name, int(version) if version.isdigit() else None)
    metrics.set_canary_share(ex.routing.share if ex.slots.get("canary") is not None else 0.0)


def warm_live(ex: Executor, settings: ExecutorSettings, store_root: Path, *,
              now_ns: int) -> int:
    """Warm a live executor's features on the data store before its first bar.

    The last ``warmup_days`` stored trade dates up to where the feed takes over: after a
    restart, every bar up to the newest one journaled (the feed resumes after it); on a fresh
    start, the days before ``feed.start`` (replay) or every stored bar up to now (a live feed).
    The rows also fill :meth:`Executor.history`, on which a model swap warms its new slot. Too
    little history is a warning, not a stop: the features then warm on the feed's bars and the
    slots decide once ready.

    :param ex: the executor (not yet running). :param settings: its ``executor.yaml``.
    :param store_root: the raw store (``$MIA_HOME/data/raw``). :param now_ns: the wall clock.
    :return: the bars the features advanced over.
    """
    from mia.data.store import BarStore

    symbols = [settings.symbol] + ([settings.cross_symbol] if settings.cross_symbol else [])
    last = ex.state.last_bar_ns.get(settings.symbol)
    f = settings.feed
    start = date.fromisoformat(f.start) if f.kind == "replay" and f.start else None
    bound: int | None
    end: date | None
    if last is not None and (start is None or trade_date(last) >= start):
        bound, end = last, trade_date(last)  # a restart: up to the journal's newest bar
    elif f.kind == "replay":
        bound, end = None, yesterday(start) if start is not None else None
    else:
        bound, end = now_ns, trade_date(now_ns)
    days = [] if end is None else BarStore(store_root).dates(settings.symbol, end=end)
    days = days[-settings.warmup_days:]
    n = 0
    if days:
        try:
            bars: Iterable[FeedEvent] = _until(_replay_feed(store_root, symbols, days), bound)
            n = ex.warm(bars)
        except StoreError as exc:
            ex.alert("warning", "warmup_short", f"warm-up from {store_root}: {exc}")
    slots = [s for s in ex.slots.values() if s is not None]
    if not all(s.ready for s in slots):
        need = max(s.warmup for s in slots) + 1
        ex.alert("warning", "warmup_short", f"{n} bars of history in {store_root} up to "
                 f"{end or 'the first bar'} (warmup_days {settings.warmup_days}); the features "
                 f"need {need}: the executor decides once the feed's bars have warmed them; "
                 "fill the data store or raise warmup_days to start warm")
    return n


def _replay_feed(store_root: Path, symbols: Sequence[str], days: Sequence[date]) -> Any:
    from executor.feeds.replay import ReplayFeed

    return ReplayFeed(store_root, symbols, days[0], days[-1])


def _until(events: Iterable[FeedEvent], bound: int | None) -> Iterator[FeedEvent]:
    # the events in ts order up to ``bound`` (inclusive; None: all)
    for event in events:
        if bound is not None and isinstance(event, FeedItem) and event.ts_ns > bound:
            return
        yield event


def _first_models(cfg: Any, settings: ExecutorSettings, slots: dict[str, ModelSlot | None],
                  load: Callable[[Path, str], ModelSlot]) -> Any:
    # At start the production model must load (there is nothing to keep running yet); the
    # canary may fail (an alert, production trades alone).
    from executor.models import ModelWatcher

    watcher = ModelWatcher(cfg, settings.symbol, history=lambda: (0, _empty()),
                           alert=lambda *a: None, poll_seconds=cfg.params.executor.poll_seconds,
                           load_slot=load)
    wanted = watcher.wanted()
    if wanted.production is None:
        raise OperationalError(f"mia-{settings.symbol} has no production alias; promote a "
                               "version ('mia registry promote') or run with local models")
    slots["production"] = watcher.load(wanted.production)
    watcher.running("production", wanted.production)
    if wanted.canary is not None:
        try:
            slots["canary"] = watcher.load(wanted.canary)
            watcher.running("canary", wanted.canary)
            watcher.share = wanted.share
        except Exception:  # noqa: BLE001 - the next poll retries; production trades alone
            slots["canary"] = None
    return watcher


def _empty() -> Any:
    return np.empty((0, 23))


def yesterday(d: date) -> date:
    """:return: the day before ``d``."""
    return d - timedelta(days=1)
