"""Fitting the ensemble (mia.ensemble.fit) on tables of known agents."""

from __future__ import annotations

import numpy as np
import pytest

from mia.config import load_config
from mia.data.contracts import contract
from mia.ensemble.fit import FoldTables, fit_ensemble, posterior, simulate_ensemble
from mia.ensemble.vote import Ensemble
from mia.errors import OperationalError
from mia.features.spec import make_spec
from mia.training.data import TrainingData
from mia.training.layout import Layout


def _market(n: int = 3000, seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 4800 + np.cumsum(rng.choice([-0.5, 0.5], n) * rng.integers(1, 4, n))
    open_ = np.r_[close[0], close[:-1]]  # no gaps: a bar's move is open -> close
    lay = Layout(n_rows=n, start=0, selection=slice(0, 0), folds=(), holdout=slice(n, n))
    spec = make_spec(["ret_1"])
    data = TrainingData(symbol="ES", features=np.zeros((n, 1), np.float32), spec=spec,
                        open=open_, close=close, spread=None, contract=contract("ES"),
                        layout=lay, data_hash="t")
    nxt = np.sign(np.r_[close[1:] - open_[1:], 0.0])  # what bar t+1 will do
    return data, nxt


def _tables(data: TrainingData, nxt: np.ndarray, rows: slice) -> FoldTables:
    m = 5
    rng = np.random.default_rng(1)
    perfect = np.repeat(nxt[rows][:, None], 2 * m + 1, axis=1)
    return FoldTables(rows=rows, max_contracts=m, outputs={
        "sac": perfect,                                        # knows the next bar
        "ppo": rng.uniform(-1, 1, perfect.shape),              # noise
        "ddpg": -perfect,                                      # always wrong
    })


def test_posterior_is_prior_times_evidence_normalised_with_a_floor():
    post = posterior({"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}, {"sac": 1.0, "ppo": 0.5, "ddpg": 0.0})
    assert post == pytest.approx({"sac": 0.4 / 0.556, "ppo": 0.15 / 0.556, "ddpg": 0.006 / 0.556})
    with pytest.raises(OperationalError, match="none of the prior's agents"):
        posterior({"sac": 1.0}, {"qrdqn": 1.0})


def test_fit_finds_the_skilled_agent_and_beats_the_prior_on_validation():
    params = load_config(None).params
    data, nxt = _market()
    tables = [_tables(data, nxt, slice(0, 1500)), _tables(data, nxt, slice(1500, 2999))]
    ens = fit_ensemble(params, data, tables, {"sac": 0.9, "ppo": 0.5, "ddpg": 0.1})
    assert ens.weights["sac"] == max(ens.weights.values())
    by_name = {c["name"]: c["validation_sharpe"] for c in ens.fit["candidates"]}
    assert ens.fit["validation_sharpe"] >= by_name["prior"]
    assert ens.fit["validation_sharpe"] == max(by_name.values())
    assert sum(ens.weights.values()) == pytest.approx(1.0)


def test_the_ensemble_position_feeds_back_into_the_agents_it_asks():
    params = load_config(None).params
    data, nxt = _market(400)
    rows = slice(0, 399)
    t = _tables(data, nxt, rows)
    # an agent that wants long only when the ensemble is flat (level 5 = 0 contracts)
    flip = np.full_like(t.outputs["sac"], -1.0)
    flip[:, 5] = 1.0
    tables = FoldTables(rows=rows, max_contracts=5, outputs={"sac": flip})
    sim = simulate_ensemble(Ensemble(weights={"sac": 1.0}, threshold=0.5), tables, data, params)
    # flat -> long 5 -> (now long: it says short) -> short 5 -> short ... : it never returns flat
    assert list(sim.positions[1:4]) == [5, -5, -5]


def test_effective_trials_fall_with_correlation():
    from mia.ensemble.fit import effective_trials, mean_correlation

    rng = np.random.default_rng(0)
    base = rng.normal(size=2000)
    twins = [base + 0.01 * rng.normal(size=2000) for _ in range(10)]
    assert mean_correlation(twins) > 0.99
    assert effective_trials(10, mean_correlation(twins)) < 1.2
    independent = [rng.normal(size=2000) for _ in range(10)]
    assert effective_trials(10, mean_correlation(independent)) > 9.5
    assert mean_correlation([np.zeros(5), base[:5]]) == 0.0  # a flat trial has no correlation


def test_the_fit_record_is_strict_json_when_an_agent_never_traded():
    # an agent with a flat validation record has a NaN PSR: the record goes into bundle.json
    import json

    params = load_config(None).params
    data, nxt = _market()
    tables = [_tables(data, nxt, slice(0, 1500)), _tables(data, nxt, slice(1500, 2999))]
    ens = fit_ensemble(params, data, tables, {"sac": 0.9, "ppo": float("nan"), "ddpg": 0.1})
    text = json.dumps(ens.to_dict(), allow_nan=False)
    assert json.loads(text)["fit"]["psr"]["ppo"] is None
