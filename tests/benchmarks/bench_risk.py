"""Risk benchmarks (issue 7 item 5): the pre-trade check under 50 us per call.

100k bars of a seeded synthetic ES market with real features (a 150-feature row holding the
risk features, built by ``mia.features``; regime probabilities are the generator's own regime,
one-hot) drive a random-walk policy through :class:`mia.risk.RiskEngine` in the backtest's call
order: fill at the next open, stops inside the bar, equity marks, decision. Timed per call with
``perf_counter_ns``: ``gate.check`` alone (through ``RiskEngine.decide``), ``FeatureTap.read``,
and the whole per-bar risk work (tap + on_bar + fills + on_equity + decide).
Results: tests/benchmarks/results/risk.json. Target: check p50 and p99 <= 50 us.
"""

from __future__ import annotations

from tests.benchmarks.common import measure, record

GATE = """
import gc, time
from datetime import date
import numpy as np
from mia.config import load_params
from mia.data.calendar import trade_dates
from mia.data.contracts import contract
from mia.data.synthetic import generate_market
from mia.features.batch import build_features
from mia.features.registry import registry
from mia.risk import RISK_FEATURES, FeatureTap, Mode, RiskEngine, RiskRules
from mia.types import REGIMES

N = 100_000
P = load_params("params.yaml", env={})
m = generate_market(["ES"], date(2024, 1, 2), date(2024, 4, 30), seed=7)
bars = m.bars["ES"].iloc[:N]
risk = [n for n in RISK_FEATURES if n in registry() and not n.startswith("regime_p_")]
others = [n for n, d in registry().items() if "regime" not in d.groups and n not in risk]
names = risk + others[::2][:150 - len(risk) - 3]
ff = build_features(bars, names=names)
onehot = (np.asarray(m.regimes)[:N, None] == np.asarray(REGIMES)[None, :]).astype(np.float32)
rows = np.hstack([ff.matrix, onehot])
cols = (*ff.spec.names, *(f"regime_p_{r}" for r in REGIMES))
rules = RiskRules.from_config(P.risk, spec=contract("ES"),
                              regime_thresholds=P.features.regime_thresholds)
tap = FeatureTap(cols)
ts = bars["ts"].astype("int64").to_numpy().tolist()
dates = trade_dates(bars["ts"]).tolist()
o, h, lo, c = (bars[k].to_numpy().tolist() for k in ("open", "high", "low", "close"))
rng = np.random.default_rng(1)
targets = np.clip(np.cumsum(rng.normal(0, 0.3, N)), -1, 1).tolist()
MULT = rules.multiplier

def run(n):
    eng = RiskEngine(rules, equity=P.env.initial_equity, trade_date=dates[0], now_ns=ts[0])
    cash, pos, pending = P.env.initial_equity, 0, 0
    gate, tapt, whole = np.empty(n), np.empty(n), np.empty(n)
    clock = time.perf_counter_ns
    actions = {}
    for t in range(n):
        t0 = clock()
        if pending:
            cash -= pending * o[t] * MULT
            eng.on_fill(pending, o[t], now_ns=ts[t])
            pos += pending
            pending = 0
        t1 = clock()
        f = tap.read(rows[t])
        t2 = clock()
        br = eng.on_bar(now_ns=ts[t], open=o[t], high=h[t], low=lo[t], close=c[t], features=f)
        for e in br.exits:
            cash -= e.quantity * e.price * MULT
            eng.on_fill(e.quantity, e.price, now_ns=ts[t])
            pos += e.quantity
        equity = cash + pos * c[t] * MULT
        eng.on_equity(now_ns=ts[t], trade_date=dates[t], equity=equity)
        if eng.mode is Mode.HALTED:  # latched (drawdown): a person would reset it here
            for cause in [hd.cause for hd in eng.state.holds]:
                eng.reset(cause, by="bench", why="keep the policy trading", now_ns=ts[t])
        t3 = clock()
        d = eng.decide(targets[t], position=pos, equity=equity, price=c[t], features=f)
        t4 = clock()
        pending = d.order
        actions[d.action] = actions.get(d.action, 0) + 1
        gate[t], tapt[t], whole[t] = t4 - t3, t2 - t1, t4 - t0
    return gate / 1e3, tapt / 1e3, whole / 1e3, actions

run(5_000)  # warm caches
gate, tapt, whole, actions = run(N)
def q(x):
    p = np.percentile(x, [50, 99, 99.9])
    return {"p50_us": round(p[0], 2), "p99_us": round(p[1], 2), "p999_us": round(p[2], 2),
            "mean_us": round(float(x.mean()), 2)}
RESULT = {"calls": N, "features_in_row": len(cols), "check": q(gate), "feature_tap": q(tapt),
          "per_bar_total": q(whole), "actions": actions}
"""


def main() -> None:
    record("risk", {
        "gate_check_100k_bars": {**measure(GATE, env={"OMP_NUM_THREADS": "1"}),
                                 "target_p50_us": 50, "target_p99_us": 50},
    })


if __name__ == "__main__":
    main()
