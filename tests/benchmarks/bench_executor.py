"""Executor benchmark (issue 7): replay bars through the live loop with production + canary.

Two bundles of five untrained agents (params.yaml architectures, weights do not change latency)
on 150 features, ES traded with MNQ as the cross symbol, a real journal and paper broker (the
replay's journal and broker state in one transaction each, as ``python -m executor --replay``
runs it). Results: tests/benchmarks/results/executor.json.

Targets (issue 7): tick-to-decision (bar in -> order out) p50 <= 100 us, p99 <= 250 us; RSS <=
500 MB; replay >= 20k bars/s; within about 2x of a compiled reference measured in the same run.

- ``executor``: ``executor.app.replay`` over the window: per-bar tick latency (the loop's own
  ``perf_counter_ns`` from bar in to the last order out, journal and broker included), bars/s of
  the whole replay (warm-up excluded), peak RSS of the process.
- ``reference``: the same bars through the bare pipeline for both bundles (online features ->
  ONNX policy -> vote -> risk gate's decision), no journal, broker, join or books: the floor the
  executor's wiring adds to. The pipeline's parts are compiled (numba kernels for the features,
  ONNX Runtime for the agents, the risk gate's scalar path). Its bars/s (every bar of its
  loop) bounds what a replay that decides every bar can reach on the machine:
  ``ratio_bars_per_second`` is the executor's share of it.

Usage: ``python -m tests.benchmarks.bench_executor [trade_days]`` (default 725, ~1M bars).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.benchmarks.common import measure, record

WORLD = """
import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from mia.agents import AGENTS, action_kind, build
from mia.config import load_config
from mia.data.calendar import trade_dates
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

home = Path(HOME)
cfg = load_config(None, env={"MIA_HOME": str(home)})
start = date(2021, 1, 4)
end = start + timedelta(days=int(DAYS * 7 / 5) + 10)
data = dataclasses.replace(cfg.params.data, start=start, end=end, symbols=("ES", "MNQ"))
cfg = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, data=data))
ingest.run(cfg)
es = ingest.raw_store(cfg).read("ES", start, end)
mnq = ingest.raw_store(cfg).read("MNQ", start, end)
first = es["ts"].iloc[0].date()
inputs = build_inputs(es.iloc[:20000], mnq[mnq["ts"] <= es["ts"].iloc[19999]]).matrix
reg = registry()
spec = make_spec([k for k, d in reg.items() if "regime" not in d.groups][:150])
risk_spec = make_spec([n for n in RISK_FEATURES if n in reg and "regime" not in reg[n].groups])
raw = run_program(spec, inputs)
ready = max(spec.warmup, risk_spec.warmup) + 1
norm = Normalizer.fit(raw, spec.names, slice(ready, len(raw)))
p = cfg.params
market = Market(features=norm.transform(np.where(np.isfinite(raw), raw, 0.0)), names=spec.names,
                open=es["open"].to_numpy()[:20000], close=es["close"].to_numpy()[:20000],
                spread=None, spec=contract("ES"), bound=norm.clip)
for which in ("production", "canary"):
    torch.manual_seed(len(which))
    models = {}
    for i, name in enumerate(AGENTS):
        env = TradingEnv(market, [slice(ready, len(raw))], p.env,
                         discrete=action_kind(name) == "discrete")
        model = build(name, dataclasses.replace(getattr(p.agents, name),
                                                total_timesteps=4096), env, seed=i)
        with torch.no_grad():  # spread the untrained outputs: the books trade, orders flow
            for param in model.policy.parameters():
                param.mul_(3.0)
        models[name] = model
    exp = export_policy(models)
    # an untrained PPO-Lagrangian wants ~0 (a veto as size modifier): votes, does not scale
    ens = Ensemble(weights={a: 1.0 / 5 for a in AGENTS}, threshold=0.55,
                   lagrangian_scale=False, quantile_confidence=True)
    write_bundle(home / which, symbol="ES", spec=spec, normalizer=norm, agents=exp.agents,
                 graph=exp.graph, ensemble=ens.to_dict(), hmm=None, drift=None, risk=p.risk,
                 env=p.env, metrics={}, data_hash="bench", git_sha="bench",
                 created_at=datetime(2021, 1, 1, tzinfo=UTC), risk_spec=risk_spec)
days = trade_dates(es["ts"])
uniq = sorted(set(days))
RESULT = {"bars": int(len(es)), "first": str(uniq[0]), "trade_from": str(uniq[10]),
          "last": str(uniq[-1]), "features": len(spec.names)}
"""

EXECUTOR = """
import dataclasses
import gc
import time
from datetime import date
from pathlib import Path

import numpy as np

from executor.app import replay
from mia.config import load_config

home = Path(HOME)
cfg = load_config(None, env={"MIA_HOME": str(home)})
# $5M: without a confirmed regime the gate allows 1x leverage; room for sizes in both books
env = dataclasses.replace(cfg.params.env, initial_equity=5_000_000.0)
cfg = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, env=env))
gc.freeze()  # the world's objects are long-lived: keep the collector off them
t0 = time.perf_counter()
stats = replay(cfg, bundle=home / "production", canary=home / "canary", canary_share=0.05,
               symbol="ES", cross="MNQ", start=date.fromisoformat(TRADE_FROM),
               end=date.fromisoformat(LAST), state_dir=home / "state",
               warm_start=date.fromisoformat(FIRST))
total = time.perf_counter() - t0
lat = np.asarray(stats.latency_ns, dtype=np.float64) / 1e3
RESULT = {"bars": stats.bars, "orders": stats.orders, "fills": stats.fills,
          "faults": stats.faults, "replay_seconds_incl_warmup": round(total, 2),
          "tick_p50_us": round(float(np.percentile(lat, 50)), 2),
          "tick_p99_us": round(float(np.percentile(lat, 99)), 2),
          "tick_p999_us": round(float(np.percentile(lat, 99.9)), 2),
          "tick_mean_us": round(float(lat.mean()), 2)}
"""

REFERENCE = """
import time
from pathlib import Path
from datetime import date

import numpy as np
import pandas as pd

from executor.slot import ModelSlot
from mia.config import load_config
from mia.data.contracts import contract
from mia.features.inputs import build_inputs
from mia.pipelines import ingest
from mia.risk import RiskEngine, RiskRules

home = Path(HOME)
cfg = load_config(None, env={"MIA_HOME": str(home)})
p = cfg.params
es = ingest.raw_store(cfg).read("ES", date.fromisoformat(FIRST), date.fromisoformat(LAST))
mnq = ingest.raw_store(cfg).read("MNQ", date.fromisoformat(FIRST), date.fromisoformat(LAST))
n = min(len(es), N_REF)
rows = build_inputs(es.iloc[:n], mnq[mnq["ts"] <= es["ts"].iloc[n - 1]]).matrix
slots = [ModelSlot.load(home / w, w) for w in ("production", "canary")]
rules = RiskRules.from_config(p.risk, spec=contract("ES"),
                              regime_thresholds=p.features.regime_thresholds)
ts = pd.DatetimeIndex(es["ts"].iloc[:n]).asi8
engines = [RiskEngine(rules, equity=1e6, trade_date=date(2021, 1, 4), now_ns=int(ts[0]))
           for _ in slots]
lat = []
warm = max(s.warmup for s in slots) + 1
close = es["close"].to_numpy()
t_all = time.perf_counter()
for i in range(n):
    t = time.perf_counter_ns()
    row = np.ascontiguousarray(rows[i])
    for s, e in zip(slots, engines):
        s.update(row)
        if i >= warm:
            d = s.decide(0)
            e.decide(d.fraction, position=0, equity=1e6, price=float(close[i]),
                     features=s.risk_features())
    if i >= warm:
        lat.append(time.perf_counter_ns() - t)
loop_s = time.perf_counter() - t_all
a = np.asarray(lat, dtype=np.float64) / 1e3
RESULT = {"bars": len(a), "bars_per_second": round(n / loop_s, 1),
          "tick_p50_us": round(float(np.percentile(a, 50)), 2),
          "tick_p99_us": round(float(np.percentile(a, 99)), 2),
          "tick_p999_us": round(float(np.percentile(a, 99.9)), 2)}
"""


def _bind(code: str, **values: object) -> str:
    head = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return head + code


def main(days: int = 725) -> None:
    """Build the world, then measure the replay and the reference in fresh processes."""
    with tempfile.TemporaryDirectory() as tmp:
        home = str(Path(tmp) / "home")
        world = measure(_bind(WORLD, HOME=home, DAYS=days))
        window = {"FIRST": world["first"], "TRADE_FROM": world["trade_from"],
                  "LAST": world["last"]}
        run = measure(_bind(EXECUTOR, HOME=home, **window))
        ref = measure(_bind(REFERENCE, HOME=home, N_REF=200_000, **window))
    replay_s = run["replay_seconds_incl_warmup"]
    results = {
        "world": {"bars": world["bars"], "features": world["features"], "agents_per_bundle": 5,
                  "bundles": 2, "build_seconds": world["wall_seconds"]},
        "executor": {**run, "bars_per_second": round(run["bars"] / replay_s, 1)},
        "reference_pipeline": ref,
        "ratio_p50": round(run["tick_p50_us"] / ref["tick_p50_us"], 2),
        "ratio_p99": round(run["tick_p99_us"] / ref["tick_p99_us"], 2),
        # the reference's bars/s over all its bars (warm-up ones too: features only)
        "ratio_bars_per_second": round(run["bars"] / replay_s / ref["bars_per_second"], 2),
        "targets": {"tick_p50_us": 100, "tick_p99_us": 250, "rss_mb": 500,
                    "bars_per_second": 20000},
    }
    record("executor", results)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 725)
