"""Replay = backtest of the live path (issue 7, item 10): `python -m executor --replay` decides
exactly what `mia.backtest` decides, bar by bar, on the same bars and bundle.

Two implementations of one day of trading meet here: the executor's loop (online features,
`Policy.act` on one row, `decide_one`, the journal, the paper broker, risk engines per book) and
the backtest (batch features, `Policy.act_batch`, vectorised `decide`, cash accounting). The
bundle holds five untrained agents with spread-out outputs (their decisions exercise every
path: entries, flips, stops, take-profits, both risk modifiers), six model features (one cross
feature, so the ES/MNQ join is on the path) and the risk gate's features.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from mia.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FEATURES = ["bid_ask_imbalance", "rsi_14", "ret_1", "cross_corr_60", "natr_14", "ema_dist_20"]
START, END, TRADE_FROM = date(2024, 1, 2), date(2024, 1, 12), date(2024, 1, 10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    from mia.agents import AGENTS, action_kind, build
    from mia.data.contracts import contract
    from mia.ensemble.vote import Ensemble
    from mia.envs.market import Market
    from mia.envs.trading_env import TradingEnv
    from mia.features.batch import run_program
    from mia.features.inputs import build_inputs
    from mia.features.normalize import Normalizer
    from mia.features.registry import registry
    from mia.features.spec import make_spec
    from mia.pipelines import ingest
    from mia.registry.bundle_writer import write_bundle
    from mia.registry.onnx_export import export_policy
    from mia.risk import RISK_FEATURES

    home = tmp_path_factory.mktemp("replay") / "home"
    cfg = load_config(None, env={"MIA_HOME": str(home)})
    data = dataclasses.replace(cfg.params.data, start=START, end=END, symbols=("ES", "MNQ"))
    # $5M: without a confirmed regime the gate allows 1x leverage, one ES contract at $250k,
    # and entries open floor(|target| x allowed); room for sizes makes every path run
    env = dataclasses.replace(cfg.params.env, initial_equity=5_000_000.0)
    # tight stops and near take-profits: exits inside bars happen within the few days traded
    risk = dataclasses.replace(cfg.params.risk, stop_atr=0.5, wide_stop_atr=0.75,
                               take_profit_r=(0.5, 1.0))
    cfg = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, data=data, env=env,
                                                              risk=risk))
    ingest.run(cfg)
    bars = {s: ingest.raw_store(cfg).read(s, START, END) for s in ("ES", "MNQ")}
    inputs = build_inputs(bars["ES"], bars["MNQ"]).matrix
    spec = make_spec(FEATURES)
    reg = registry()
    risk_spec = make_spec([n for n in RISK_FEATURES if n in reg and "regime" not in reg[n].groups])
    raw = run_program(spec, inputs)  # float64, from the first bar: what the executor computes
    risk_raw = run_program(risk_spec, inputs)
    ready = max(spec.warmup, risk_spec.warmup) + 1
    norm = Normalizer.fit(raw, spec.names, slice(ready, ready + 3000))
    p = cfg.params
    market = Market(features=norm.transform(np.where(np.isfinite(raw), raw, 0.0)),
                    names=spec.names, open=bars["ES"]["open"].to_numpy(),
                    close=bars["ES"]["close"].to_numpy(), spread=None, spec=contract("ES"),
                    bound=norm.clip)
    models = {}
    torch.manual_seed(0)
    for i, name in enumerate(AGENTS):
        env = TradingEnv(market, [slice(ready, len(raw))], p.env,
                         discrete=action_kind(name) == "discrete")
        cfg_a = dataclasses.replace(getattr(p.agents, name), total_timesteps=4096)
        model = build(name, cfg_a, env, seed=i)
        with torch.no_grad():  # spread the untrained outputs over the action space
            for param in model.policy.parameters():
                param.mul_(3.0)
        models[name] = model
    exp = export_policy(models)
    # an untrained PPO-Lagrangian wants ~0 everywhere (SB3's 0.01 gain): as a size modifier
    # it would veto every trade; QR-DQN's confidence modifier stays on
    ens = Ensemble(weights={"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}, threshold=0.55,
                   lagrangian_scale=False, quantile_confidence=True)
    bundle = home / "bundle"
    write_bundle(bundle, symbol="ES", spec=spec, normalizer=norm, agents=exp.agents,
                 graph=exp.graph, ensemble=ens.to_dict(), hmm=None, drift=None, risk=p.risk,
                 env=p.env, metrics={}, data_hash="test", git_sha="test",
                 created_at=datetime(2024, 1, 13, tzinfo=UTC), risk_spec=risk_spec)
    return cfg, bars, raw, risk_raw, risk_spec, bundle


def test_replay_decides_bar_for_bar_what_the_backtest_decides(world, tmp_path):
    from executor.app import replay
    from mia.backtest.bundle_eval import (
        decision_table,
        policy_outputs,
        run_window,
        trade_days_of,
    )
    from mia.data.contracts import contract
    from mia.ensemble.vote import Ensemble
    from mia.features.spec import make_spec
    from mia.registry.bundle import read_bundle
    from mia.registry.policy import Policy
    from mia.training.data import TrainingData
    from mia.training.layout import Layout

    cfg, bars, raw, risk_raw, risk_spec, bundle_dir = world
    es = bars["ES"]
    ts = pd.DatetimeIndex(es["ts"]).asi8
    days = trade_days_of(ts)
    first = int(np.argmax(days >= TRADE_FROM))
    rows = slice(first, len(es))
    n = len(es)
    data = TrainingData(symbol="ES", features=raw.astype(np.float32), spec=make_spec(FEATURES),
                        open=es["open"].to_numpy(), close=es["close"].to_numpy(),
                        spread=es["bid_ask_spread"].to_numpy(), contract=contract("ES"),
                        layout=Layout(n_rows=n, start=0, selection=slice(0, 0), folds=(),
                                      holdout=rows),
                        data_hash="test", ts=ts, high=es["high"].to_numpy(),
                        low=es["low"].to_numpy())
    bundle = read_bundle(bundle_dir)
    outputs = policy_outputs(Policy(bundle), raw[rows], bundle.max_contracts)
    fractions = decision_table(Ensemble.from_dict(bundle.ensemble), outputs)
    backtest = run_window(fractions, data, rows, risk_raw[rows], tuple(risk_spec.names),
                          cfg.params, days[rows])
    stats = replay(cfg, bundle=bundle_dir, symbol="ES", cross="MNQ", start=TRADE_FROM, end=END,
                   state_dir=tmp_path / "state", warm_start=START)
    live = [(t, target) for t, book, target in stats.decisions if book == "production"]
    assert stats.faults == 0
    assert [t for t, _ in live] == list(ts[rows])  # one decision per bar, nothing skipped
    want = backtest.targets[:-1]  # the backtest's last bar decides nothing
    got = np.array([target for _, target in live])[:-1]
    assert np.count_nonzero(want) > 50, "the bundle barely trades: the test would prove little"
    assert backtest.exits > 0, "no stop or take-profit: a whole path untested"
    mismatch = np.flatnonzero(got != want)
    assert mismatch.size == 0, (f"{mismatch.size} of {want.size} decisions differ, first at "
                                f"bar {mismatch[:1]}: live {got[mismatch[:5]]} vs backtest "
                                f"{want[mismatch[:5]]}")
    assert stats.orders == backtest.orders
    assert stats.exits == backtest.exits
