"""Walk-forward training (issue 4, item 3): reproducible, fold-honest, clear on bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mia.errors import ConfigError, OperationalError
from mia.features.normalize import Normalizer
from mia.training.data import TrainingData
from mia.training.walk_forward import FoldResult, evaluate, train_fold
from tests.integration.walk_forward_data import small_params, synthetic_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup():
    p = small_params()
    return p, synthetic_table(p, planted_alpha=0.5)


@pytest.mark.parametrize(("agent", "steps"), [("ppo", 1024), ("sac", 300), ("qrdqn", 300)])
def test_same_seed_and_data_give_identical_metrics(setup, tmp_path, agent, steps):
    p, data = setup
    fold = data.layout.folds[0]
    runs = [train_fold(p, data, agent, fold, folder=tmp_path / str(i), timesteps=steps)
            for i in range(2)]
    assert runs[0].metrics == runs[1].metrics
    np.testing.assert_array_equal(runs[0].pnl, runs[1].pnl)
    np.testing.assert_array_equal(runs[0].actions, runs[1].actions)


def test_the_normaliser_is_fitted_on_the_fold_train_rows_only(setup, tmp_path):
    p, data = setup
    fold = data.layout.folds[1]
    r = train_fold(p, data, "ppo", fold, folder=tmp_path, timesteps=1024)
    saved = Normalizer.from_dict(json.loads((r.folder / "normalizer.json").read_text()))
    expected = Normalizer.fit(data.features, data.spec.names, fold.train_indices())
    np.testing.assert_array_equal(saved.center, expected.center)
    np.testing.assert_array_equal(saved.scale, expected.scale)
    # validation rows changed beyond recognition: the fold's statistics do not move
    wild = data.features.copy()
    wild[fold.validation] *= 100.0
    again = Normalizer.fit(wild, data.spec.names, fold.train_indices())
    np.testing.assert_array_equal(again.center, expected.center)


def test_scoring_covers_exactly_the_validation_rows_and_round_trips(setup, tmp_path):
    p, data = setup
    fold = data.layout.folds[0]
    r = train_fold(p, data, "ppo", fold, folder=tmp_path, timesteps=1024)
    n = fold.validation.stop - fold.validation.start
    assert r.pnl.shape == r.positions.shape == r.actions.shape == (n,)
    assert r.pnl[0] == 0.0  # the first validation bar starts flat: nothing filled yet
    back = FoldResult.load(r.folder)
    assert back.metrics == r.metrics
    assert back.validation == r.validation
    np.testing.assert_array_equal(back.pnl, r.pnl)
    assert {p.name for p in r.folder.iterdir()} >= {"model.zip", "normalizer.json", "oos.npz",
                                                     "result.json"}


def test_evaluation_joins_folds_and_deflates_by_the_agents_tried(setup, tmp_path):
    p, data = setup
    results = [train_fold(p, data, a, f, folder=tmp_path / a / str(f.index), timesteps=1024)
               for a in ("ppo", "ppo_lagrangian") for f in data.layout.folds]
    ev = evaluate(p, data, results)
    assert ev.agents == ("ppo", "ppo_lagrangian")
    assert set(ev.metrics) == {"ppo", "ppo_lagrangian", "flat", "buy_and_hold", "sma_crossover",
                               "logistic_regression"}
    n = sum(f.validation.stop - f.validation.start for f in data.layout.folds)
    assert all(len(v) == n for v in ev.pnl.values())
    np.testing.assert_array_equal(ev.pnl["ppo"], np.concatenate([results[0].pnl,
                                                                 results[1].pnl]))
    for a in ev.agents:  # two trials: the benchmark Sharpe rises above 0, the DSR below the PSR
        m = ev.metrics[a]
        assert m["wf/dsr_benchmark_sharpe"] > 0.0
        assert m["wf/deflated_sharpe"] <= m["wf/probabilistic_sharpe"]
    assert ev.metrics["flat"]["wf/total_return"] == 0.0
    with pytest.raises(OperationalError, match="missing trained folds"):
        evaluate(p, data, results[:3])


def test_bad_hyperparameters_fail_before_any_training(setup, tmp_path):
    p, data = setup
    fold = data.layout.folds[0]
    with pytest.raises(ConfigError, match="timesteps=0"):
        train_fold(p, data, "ppo", fold, folder=tmp_path, timesteps=0)
    with pytest.raises(ConfigError, match="less than one rollout"):
        train_fold(p, data, "ppo", fold, folder=tmp_path, timesteps=100)
    with pytest.raises(ConfigError, match="unknown agent"):
        train_fold(p, data, "a2c", fold, folder=tmp_path)
    assert not (tmp_path / "model.zip").exists()


def test_nan_features_inside_a_fold_are_named_before_training(setup, tmp_path):
    p, data = setup
    bad = data.features.copy()
    row = data.layout.folds[0].train.start + 10
    bad[row, 2] = np.nan
    broken = dataclasses.replace(data, features=bad)
    with pytest.raises(OperationalError, match=rf"{data.spec.names[2]}.*row {row}"):
        train_fold(p, broken, "ppo", broken.layout.folds[0], folder=tmp_path, timesteps=1024)


def test_a_spec_and_feature_matrix_that_disagree_are_refused(setup):
    _, data = setup
    with pytest.raises(OperationalError, match="for a spec of 6 features"):
        TrainingData(**{**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)},
                        "features": data.features[:, :5]})
