"""One tiny real world for the executor's tests: a data store, two bundles, executors on demand.

The store holds four CME trade dates of ES and MNQ from the synthetic market, ingested by
``mia.pipelines.ingest`` exactly as ``make demo`` does. The bundles hold the five agents
untrained (SB3 models built from ``params.yaml``, exported to ONNX), their output layers scaled so
their decisions spread over the action space: the same recipe as
``tests/e2e/test_replay_equals_backtest.py``, so the bundles trade every path (entries, flips,
stops, take-profits) within a few hundred bars. ``production`` and ``canary`` differ only in the
agents' seeds: same features, different decisions.

Dates: 2024-01-02 .. 01-03 warm the features (1380 bars a session; the risk features need 748),
01-04 .. 01-05 are traded.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
START, WARM_END, TRADE_FROM, END = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), \
    date(2024, 1, 5)
SYMBOLS = ("ES", "MNQ")
# one cross feature: the ES/MNQ join of the loop is on every test's path
FEATURES = ("bid_ask_imbalance", "rsi_14", "ret_1", "cross_corr_60", "natr_14", "ema_dist_20")


@dataclasses.dataclass(frozen=True, kw_only=True)
class World:
    """What the session fixture built.

    :param cfg: MIA configuration (MIA_HOME in a temp dir; $5M equity).
    :param home: MIA_HOME. :param store: the raw bar store's root.
    :param production: a bundle directory. :param canary: another (other agent seeds).
    :param inputs: ES input rows of every stored bar (``mia.features.inputs.build_inputs``).
    :param ts: ES bar close times, ns since the epoch, one per input row.
    :param raw: the production spec's batch features over ``inputs`` (``run_program``).
    :param risk_raw: the risk spec's batch features over ``inputs``.
    """

    cfg: Any
    home: Path
    store: Path
    production: Path
    canary: Path
    inputs: np.ndarray
    ts: np.ndarray
    raw: np.ndarray
    risk_raw: np.ndarray

    def replay(self, start: date = TRADE_FROM, end: date = END, **kwargs: Any) -> Any:
        """:return: a ReplayFeed of ES and MNQ over ``start..end`` (kwargs: ReplayFeed's)."""
        from executor.feeds.replay import ReplayFeed

        return ReplayFeed(self.store, SYMBOLS, start, end, **kwargs)

    def history(self) -> Any:
        """:return: a ReplayFeed of the warm-up days (01-02 .. 01-03), for ``Executor.warm``."""
        return self.replay(START, WARM_END)


def _agents(market: Any, rows: slice, params: Any, seed: int) -> Any:
    import torch

    from mia.agents import AGENTS, action_kind, build
    from mia.envs.trading_env import TradingEnv
    from mia.registry.onnx_export import export_policy

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    models = {}
    for i, name in enumerate(AGENTS):
        env = TradingEnv(market, [rows], params.env, discrete=action_kind(name) == "discrete")
        cfg = dataclasses.replace(getattr(params.agents, name), total_timesteps=4096)
        model = build(name, cfg, env, seed=seed * 10 + i)
        with torch.no_grad():  # spread the untrained outputs over the action space
            for p in model.policy.parameters():
                p.mul_(3.0)
        models[name] = model
    return export_policy(models)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Ingest four trade days of ES + MNQ and write two real bundles (a few seconds)."""
    from mia.config import load_config
    from mia.data.contracts import contract
    from mia.ensemble.vote import Ensemble
    from mia.envs.market import Market
    from mia.features.batch import run_program
    from mia.features.inputs import build_inputs
    from mia.features.normalize import Normalizer
    from mia.features.registry import registry
    from mia.features.spec import make_spec
    from mia.pipelines import ingest
    from mia.registry.bundle_writer import write_bundle
    from mia.risk import RISK_FEATURES

    home = tmp_path_factory.mktemp("executor-world") / "home"
    cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)})
    p = cfg.params
    # $5M: without a confirmed regime the gate allows 1x leverage (one ES contract per ~$240k),
    # so a canary book of 20 % or more can hold contracts; params.yaml's stops (2 ATR) keep
    # positions open across bars, so a kill or a stop finds something to flatten
    params = dataclasses.replace(
        p, data=dataclasses.replace(p.data, start=START, end=END, symbols=SYMBOLS),
        env=dataclasses.replace(p.env, initial_equity=5_000_000.0))
    cfg = dataclasses.replace(cfg, params=params)
    ingest.run(cfg)
    bars = {s: ingest.raw_store(cfg).read(s, START, END) for s in SYMBOLS}
    inputs = build_inputs(bars["ES"], bars["MNQ"]).matrix
    spec = make_spec(list(FEATURES))
    reg = registry()
    risk_spec = make_spec([n for n in RISK_FEATURES if n in reg and "regime" not in reg[n].groups])
    raw, risk_raw = run_program(spec, inputs), run_program(risk_spec, inputs)
    ready = max(spec.warmup, risk_spec.warmup) + 1
    norm = Normalizer.fit(raw, spec.names, slice(ready, ready + 3000))
    es = bars["ES"]
    market = Market(features=norm.transform(np.where(np.isfinite(raw), raw, 0.0)),
                    names=spec.names, open=es["open"].to_numpy(), close=es["close"].to_numpy(),
                    spread=None, spec=contract("ES"), bound=norm.clip)
    ens = Ensemble(weights={"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}, threshold=0.55,
                   lagrangian_scale=False, quantile_confidence=True)
    paths = {}
    for seed, name in enumerate(("production", "canary")):
        exp = _agents(market, slice(ready, len(raw)), params, seed)
        paths[name] = write_bundle(
            home / f"bundle-{name}", symbol="ES", spec=spec, normalizer=norm, agents=exp.agents,
            graph=exp.graph, ensemble=ens.to_dict(), hmm=None, drift=None, risk=params.risk,
            env=params.env, metrics={"wf/sharpe": 1.0}, data_hash=f"test-{name}",
            git_sha="test", created_at=datetime(2024, 1, 6, tzinfo=UTC),
            risk_spec=risk_spec).path
    ts = pd.DatetimeIndex(es["ts"]).asi8
    return World(cfg=cfg, home=home, store=home / "data" / "raw", production=paths["production"],
                 canary=paths["canary"], inputs=inputs, ts=ts, raw=raw, risk_raw=risk_raw)


MakeExecutor = Callable[..., Any]


@pytest.fixture
def make_executor(world: World, tmp_path: Path) -> Iterator[MakeExecutor]:
    """A factory of warm executors on a fresh state directory (closed at teardown).

    ``make_executor(canary=False, share=0.05, mode="split", kill_file=None, rollback=None,
    state_dir=None, warm=True, watcher=None, slots=None, capital=None)`` returns
    ``(executor, opened)``: the
    loop in replay mode (a bar's ts is "now", as the backtest sees it) on a real journal
    (``sync=normal``, every record committed), the paper broker and the snapshot store of
    ``executor.app.open_state``, warmed over 01-02 .. 01-03.
    """
    from executor.app import open_state
    from executor.loop import Executor, Services
    from executor.router import Routing
    from executor.settings import RollbackSettings
    from executor.slot import ModelSlot

    opened: list[Any] = []

    def make(*, canary: bool = False, share: float = 0.05, mode: str = "split",
             kill_file: Path | None = None, rollback: RollbackSettings | None = None,
             state_dir: Path | None = None, warm: bool = True, watcher: Any = None,
             slots: dict[str, Any] | None = None,
             capital: float | None = None) -> tuple[Executor, Any]:
        p = world.cfg.params
        state = open_state(state_dir or tmp_path / "state", SYMBOLS, p)
        opened.append(state)
        if slots is None:
            slots = {"production": ModelSlot.load(world.production, "1"),
                     "canary": ModelSlot.load(world.canary, "2") if canary else None}
        ex = Executor(symbol="ES", cross_symbol="MNQ", params=p,
                      state=state.recovered.state, slots=slots,
                      services=Services(journal=state.journal, broker=state.broker,
                                        snapshots=state.snapshots, watcher=watcher),
                      routing=Routing(mode=mode,  # type: ignore[arg-type]
                                      share=share if slots.get("canary") is not None else 0.0),
                      rollback=rollback or RollbackSettings(),
                      capital=p.env.initial_equity if capital is None else capital,
                      kill_file=kill_file, record=True, replay=True,
                      release_dir=state_dir or tmp_path / "state")
        if warm:
            ex.warm(world.history())
        return ex, state

    yield make
    for state in opened:
        state.broker.close()
        state.journal.close()


def free_port() -> int:
    """:return: a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    """A TCP port free on 127.0.0.1 (nothing listens there)."""
    return free_port()


@pytest.fixture
def make_live(world: World, tmp_path: Path) -> MakeExecutor:
    """A factory of executors built by ``executor.app.live`` from an ``executor.yaml``.

    ``make_live(**keys)`` writes a local-models, replay-feed file (keys override or add
    top-level settings; ``None`` drops one), picks free metrics and admin ports, and returns
    ``(executor, settings)``. live() starts its metrics server, the admin endpoint (when the
    token variable is set) and a resource sampler as daemon threads, as in production.
    """
    from executor.app import live
    from executor.settings import load_settings

    def make(**keys: Any) -> tuple[Any, Any]:
        doc: dict[str, Any] = {
            "symbol": "ES", "cross_symbol": "MNQ", "state_dir": str(tmp_path / "live-state"),
            "feed": {"kind": "replay", "start": TRADE_FROM.isoformat(),
                     "end": TRADE_FROM.isoformat()},
            "models": {"source": "local", "production": str(world.production)},
            "kill_file": str(tmp_path / "KILL"), "admin_port": free_port()}
        doc.update(keys)
        path = tmp_path / "executor.yaml"
        path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))
        settings = load_settings(path)
        p = world.cfg.params
        cfg = dataclasses.replace(world.cfg, params=dataclasses.replace(
            p, executor=dataclasses.replace(p.executor, metrics_port=free_port())))
        return live(settings, cfg), settings

    return make
