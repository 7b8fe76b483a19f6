"""The engine's call order over a synthetic market with real features and the real cost model.

A random policy trades two weeks of seeded ES bars the way the bundle backtest will: decide at
the close of bar t, fill at the open of t + 1, stops and take-profits inside each bar at the
prices :func:`mia.risk.bar_exits` gives. The loop holds the risk invariants at every bar.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from mia.data.calendar import trade_dates
from mia.data.contracts import contract
from mia.data.synthetic import generate_market
from mia.envs.costs import CostModel
from mia.features.batch import build_features
from mia.risk import RISK_FEATURES, FeatureTap, Mode, RiskEngine
from mia.types import REGIMES
from tests.unit.risk._rules import PARAMS, rules

ES = rules("ES")


@pytest.fixture(scope="module")
def market():
    m = generate_market(["ES"], date(2024, 1, 2), date(2024, 1, 12), seed=11)
    bars = m.bars["ES"]
    names = [n for n in RISK_FEATURES if not n.startswith(("regime_p_", "spoofing"))
             and n != "vix_es_correlation"]
    ff = build_features(bars, names=names)
    # the generator's own regime as one-hot probabilities: known at bar t, no look-ahead
    onehot = (np.asarray(m.regimes)[:, None] == np.asarray(REGIMES)[None, :]).astype(float)
    matrix = np.hstack([ff.matrix.astype(np.float64), onehot])
    return bars, matrix, (*ff.spec.names, *(f"regime_p_{r}" for r in REGIMES))


def test_random_policy_through_the_engine_keeps_every_risk_invariant(market):
    bars, matrix, names = market
    tap = FeatureTap(names)
    assert set(tap.absent) == {"spoofing_score", "vix_es_correlation"}
    costs = CostModel.from_config(contract("ES"), PARAMS.env)
    ts = bars["ts"].astype("int64").to_numpy()
    dates = trade_dates(bars["ts"])
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    rng = np.random.default_rng(5)
    targets = np.clip(np.cumsum(rng.normal(0, 0.3, len(bars))), -1, 1)
    cash, pos, pending = PARAMS.env.initial_equity, 0, 0
    eng = RiskEngine(ES, equity=cash, trade_date=dates[0], now_ns=int(ts[0]))
    seen: dict[str, int] = {}

    def fill(q: int, price: float, t: int) -> None:
        nonlocal cash, pos
        cash -= q * costs.fill_price(price, q) * costs.multiplier + abs(q) * 2.25
        eng.on_fill(q, price, now_ns=int(ts[t]))
        pos += q

    for t in range(len(bars)):
        if pending:
            fill(pending, o[t], t)  # last bar's decision fills at this open
            pending = 0
        f = tap.read(matrix[t])
        br = eng.on_bar(now_ns=int(ts[t]), open=o[t], high=h[t], low=lo[t], close=c[t],
                        features=f)
        for e in br.exits:
            trade = eng.trade
            assert trade is not None
            assert e.quantity * trade.side < 0
            if e.reason == "stop":
                assert lo[t] <= e.price <= h[t]
            if e.reason.endswith("_gap"):
                assert e.price == o[t]
            seen[e.reason] = seen.get(e.reason, 0) + 1
            fill(e.quantity, e.price, t)
        for ev in br.events + eng.on_equity(now_ns=int(ts[t]), trade_date=dates[t],
                                            equity=cash + pos * c[t] * costs.multiplier):
            seen[ev.cause] = seen.get(ev.cause, 0) + 1
        d = eng.decide(float(targets[t]), position=pos, equity=cash + pos * c[t] * 50.0,
                       price=c[t], features=f)
        assert abs(d.target) <= ES.cfg.max_contracts
        if d.mode is not Mode.RUNNING:
            assert abs(d.target) <= abs(pos)
            assert d.target * pos >= 0
        if eng.trade is not None:
            assert eng.trade.side * eng.trade.qty == pos
        seen[d.action] = seen.get(d.action, 0) + 1
        pending = d.order
    # the run exercised the paths it checks
    assert seen.get("enter", 0) > 20
    assert seen.get("exit", 0) > 10
    assert seen.get("stop", 0) + seen.get("stop_gap", 0) > 0
    assert seen.get("take_profit", 0) + seen.get("take_profit_gap", 0) > 0
