from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from mia.backtest.baselines import (
    BASELINES,
    baseline_targets,
    buy_and_hold,
    flat,
    logistic_regression,
    run_baselines,
    sma_crossover,
)
from mia.backtest.simulate import simulate
from mia.envs.costs import CostModel
from mia.envs.market import Market
from mia.errors import ConfigError, OperationalError
from mia.training.splits import Fold, walk_forward_splits
from tests.unit.envs._market import env_config, make_market, planted_market

HORIZON = 15
FREE = CostModel(multiplier=50.0, tick_size=0.25, commission_per_side=0.0, slippage_ticks=0.0,
                 default_spread=0.0)


def _fold(n: int = 6000, scheme: str = "rolling") -> Fold:
    return walk_forward_splits(n, folds=2, scheme=scheme, train_rows=3000 if scheme == "rolling"
                               else None, validation_rows=1000, purge=HORIZON, embargo=60)[1]


def _pnl(market: Market, fold: Fold, targets: np.ndarray, costs: CostModel) -> np.ndarray:
    v = fold.validation
    return simulate(targets, market.open[v], market.close[v], costs, max_contracts=5,
                    initial_equity=250_000.0).pnl


def test_flat_and_buy_and_hold_hold_zero_and_the_limit():
    market, fold = make_market(6000), _fold()
    assert flat(market, fold).tolist() == [0] * 1000
    assert buy_and_hold(market, fold, max_contracts=5).tolist() == [5] * 1000


def test_sma_crossover_equals_the_pandas_rolling_means_rule():
    rng = np.random.default_rng(2)
    close = 4800 + np.cumsum(rng.normal(0, 1, 6000))  # off the tick grid: no exact ties
    market = dataclasses.replace(make_market(6000), close=close)
    fold = _fold()
    s = pd.Series(close)
    expected = np.sign(s.rolling(20).mean() - s.rolling(100).mean()).fillna(0).to_numpy() * 5
    got = sma_crossover(market, fold, max_contracts=5)
    assert got.tolist() == expected[fold.validation].astype(int).tolist()
    assert set(got.tolist()) == {-5, 5}


def test_sma_crossover_is_flat_until_slow_closes_exist():
    market = make_market(400)
    fold = walk_forward_splits(400, folds=1, scheme="rolling", train_rows=30,
                               validation_rows=350, purge=15, embargo=0)[0]  # starts at row 50
    got = sma_crossover(market, fold, max_contracts=2, fast=10, slow=80)
    assert got[:29].tolist() == [0] * 29  # row 50 + 29 = 79 is the first with 80 closes
    assert got[29] != 0
    with pytest.raises(ConfigError, match="fast < slow"):
        sma_crossover(market, fold, max_contracts=2, fast=80, slow=80)


def test_logistic_regression_earns_positive_pnl_out_of_sample_on_a_planted_signal():
    market, _ = planted_market(6000, seed=1, strength=0.3)
    fold = _fold()
    cfg = env_config()
    targets = logistic_regression(market, fold, max_contracts=5, horizon=HORIZON)
    net = _pnl(market, fold, targets, CostModel.from_config(market.spec, cfg))
    assert net.sum() > 0
    hold = _pnl(market, fold, buy_and_hold(market, fold, max_contracts=5),
                CostModel.from_config(market.spec, cfg))
    assert net.sum() > hold.sum()
    assert {-5, 5} <= set(targets.tolist())  # it trades both sides


def test_logistic_regression_on_a_random_walk_earns_nothing_systematic():
    fold = _fold()
    t_stats, net = [], []
    for seed in range(6):
        market, _ = planted_market(6000, seed=seed, strength=0.0)
        targets = logistic_regression(market, fold, max_contracts=5, horizon=HORIZON)
        gross = _pnl(market, fold, targets, FREE)[1:]
        t_stats.append(gross.mean() / (gross.std() / np.sqrt(len(gross))))
        net.append(_pnl(market, fold, targets,
                        CostModel.from_config(market.spec, env_config())).sum())
    assert max(abs(t) for t in t_stats) < 3.5
    assert not all(t > 0 for t in t_stats)
    assert np.mean(net) < 0  # with costs, trading noise loses


def _perturbed_after(market: Market, t: int, seed: int) -> Market:
    rng = np.random.default_rng(seed)
    close, open_, feats = market.close.copy(), market.open.copy(), market.features.copy()
    close[t + 1 :] += rng.normal(0, 20, len(close) - t - 1)
    open_[t + 1 :] += rng.normal(0, 20, len(open_) - t - 1)
    feats[t + 1 :] = rng.uniform(-market.bound, market.bound, feats[t + 1 :].shape)
    return dataclasses.replace(market, close=close, open=open_, features=feats)


@pytest.mark.parametrize("offset", [0, 1, 400, 998])
def test_no_baseline_reads_a_bar_after_its_decision(offset):
    market, _ = planted_market(6000, seed=3, strength=0.3)
    fold = _fold()
    t = fold.validation.start + offset
    before = baseline_targets(market, fold, max_contracts=5, horizon=HORIZON)
    after = baseline_targets(_perturbed_after(market, t, seed=offset), fold, max_contracts=5,
                             horizon=HORIZON)
    for name in BASELINES:
        assert before[name][: offset + 1].tolist() == after[name][: offset + 1].tolist(), name
    # the perturbation does reach later decisions: the test can fail
    assert any(before[n][offset + 1 :].tolist() != after[n][offset + 1 :].tolist()
               for n in ("sma_crossover", "logistic_regression")) or offset == 998


def test_logistic_regression_reads_only_train_segments_and_in_segment_label_windows():
    market, _ = planted_market(6000, seed=4, strength=0.3)
    fold = walk_forward_splits(6000, folds=3, scheme="expanding", train_rows=None,
                               validation_rows=1000, purge=HORIZON, embargo=60)[2]
    assert fold.embargoed  # rows 4000..4060 after fold 0's validation window
    in_segment = np.zeros(6000, dtype=bool)
    label_rows = np.zeros(6000, dtype=bool)
    for seg in fold.train_segments():
        in_segment[seg] = True
        label_rows[seg.start : seg.stop - HORIZON] = True  # label window inside the segment
    validation = np.zeros(6000, dtype=bool)
    validation[fold.validation] = True
    rng = np.random.default_rng(0)
    close, feats = market.close.copy(), market.features.copy()
    hidden = ~in_segment & ~validation  # embargo hole and purge
    close[hidden] += rng.normal(0, 50, int(hidden.sum()))
    unused = ~label_rows & ~validation  # also the last HORIZON rows of each segment
    feats[unused] = rng.uniform(-market.bound, market.bound, (int(unused.sum()), 2))
    assert hidden.sum() == 60 + HORIZON
    changed = dataclasses.replace(market, close=close, features=feats)
    a = logistic_regression(market, fold, max_contracts=5, horizon=HORIZON)
    b = logistic_regression(changed, fold, max_contracts=5, horizon=HORIZON)
    assert a.tolist() == b.tolist()


def test_logistic_regression_with_too_few_labelled_rows_or_bad_arguments_raises():
    market = make_market(400)
    fold = walk_forward_splits(400, folds=1, scheme="rolling", train_rows=40,
                               validation_rows=300, purge=15, embargo=0)[0]
    with pytest.raises(OperationalError, match="labelled train rows"):
        logistic_regression(market, fold, max_contracts=5, horizon=HORIZON)
    with pytest.raises(ConfigError, match="margin"):
        logistic_regression(market, _fold(400 * 15), max_contracts=5, horizon=HORIZON,
                            margin=0.6)


def test_run_baselines_simulates_every_baseline_on_the_validation_window():
    market, fold, cfg = make_market(6000), _fold(), env_config()
    results = run_baselines(market, fold, cfg, horizon=HORIZON)
    assert list(results) == list(BASELINES)
    assert results["flat"].total_pnl == 0.0
    assert not results["flat"].trades
    hold = results["buy_and_hold"]
    assert hold.positions.tolist() == [0] + [cfg.max_contracts] * 999
    assert hold.first_row == fold.validation.start
    assert hold.trades[0].entry_row == fold.validation.start + 1
    for res in results.values():
        assert len(res.pnl) == fold.n_validation
