from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mia.errors import OperationalError
from mia.selection import (
    SelectionResult,
    forward_log_return,
    select_features,
    write_selection_report,
)
from mia.selection.shap_rank import fit_surrogate, mean_abs_shap

pytestmark = pytest.mark.integration

ROWS, FEATURES, FOLDS, WARMUP = 9_000, 200, 3, 120
PLANTED = ("f_017", "f_088", "f_123", "f_190")


def _frame(seed: int, rows: int = ROWS, features: int = FEATURES) -> pd.DataFrame:
    """Noise feature frame like the feature store's: float32, NaN during warm-up."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, features)).astype(np.float32)
    values[:WARMUP] = np.nan
    return pd.DataFrame(values, columns=[f"f_{i:03d}" for i in range(features)])


def _planted_label(X: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    a, b, c, d = (np.nan_to_num(X[name].to_numpy(np.float64)) for name in PLANTED)
    y = 0.5 * a + 0.4 * b - 0.4 * c + 0.3 * np.tanh(2 * d) + rng.normal(size=len(X))
    y[-15:] = np.nan  # the last `horizon` rows have no forward return
    return y


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, np.ndarray, SelectionResult]:
    X = _frame(3)
    y = _planted_label(X, 3)
    return X, y, select_features(X, y, n_select=10, folds=FOLDS, purge=15, embargo=60, seed=7)


def test_planted_predictive_columns_rank_in_the_top_10_of_every_fold(planted):
    _, _, result = planted
    ranks = result.ranking.set_index("feature")
    for k in range(FOLDS):
        assert (ranks.loc[list(PLANTED), f"rank_fold{k}"] <= 10).all(), k
    assert set(result.selected[:4]) == set(PLANTED)
    assert result.rows_used == ROWS - WARMUP - 15
    assert result.folds == FOLDS
    assert result.stability > result.chance_stability
    assert list(result.ranking["selected"]) == [True] * 10 + [False] * (FEATURES - 10)
    assert result.ranking["mean_rank"].is_monotonic_increasing


def test_noise_only_label_is_ranked_but_its_stability_stays_near_chance(planted):
    # Refusal rule: only a surrogate that explains nothing (all SHAP zero) is refused. Trees
    # always find splits in noise, so a noise label yields a ranking whose per-fold top sets
    # barely overlap; callers read `stability` against `chance_stability` (0.05 here).
    X, _, signal = planted
    noise = np.random.default_rng(11).normal(size=len(X))
    result = select_features(X, noise, n_select=10, folds=FOLDS, purge=15, embargo=60, seed=7)
    assert result.stability < 0.25
    assert result.stability < signal.stability
    assert not set(result.selected) & set(PLANTED)


def test_asking_for_more_features_than_the_frame_has_is_refused_with_the_fix():
    X = _frame(0, rows=2_000, features=20)
    y = np.random.default_rng(0).normal(size=len(X))
    with pytest.raises(OperationalError, match=r"only 20; lower selection.n_selected to <= 20"):
        select_features(X, y, n_select=150, folds=2, purge=15, embargo=0, seed=7)


def test_features_that_never_vary_carry_no_signal_and_selection_is_refused():
    X = pd.DataFrame(np.ones((3_000, 12), dtype=np.float32),
                     columns=[f"c{i}" for i in range(12)])
    y = np.random.default_rng(0).normal(size=len(X))
    with pytest.raises(OperationalError, match="no feature carries signal; selection refused"):
        select_features(X, y, n_select=5, folds=2, purge=15, embargo=0, seed=7)


@pytest.mark.parametrize(
    ("label", "msg"),
    [(np.full(3_000, np.nan), "label is empty"), (np.full(3_000, 0.25), "label is constant")],
)
def test_an_empty_or_constant_label_is_refused(label, msg):
    X = _frame(0, rows=3_000, features=12)
    with pytest.raises(OperationalError, match=msg):
        select_features(X, label, n_select=5, folds=2, purge=15, embargo=0, seed=7)


def test_too_few_usable_rows_names_the_columns_that_are_mostly_nan():
    X = _frame(0, rows=3_000, features=12)
    X.loc[: 2_500, "f_007"] = np.nan  # e.g. an options feature with no options data yet
    y = np.random.default_rng(0).normal(size=len(X))
    with pytest.raises(OperationalError, match=r"499 of 3000 rows.*need >= 1060.*f_007 \(2501\)"):
        select_features(X, y, n_select=5, folds=3, purge=15, embargo=0, seed=7)


def test_same_seed_gives_an_identical_ranking():
    X = _frame(5, rows=3_000, features=40)
    rng = np.random.default_rng(6)
    y = np.nan_to_num(X["f_001"].to_numpy(np.float64)) + rng.normal(size=len(X))
    a = select_features(X, y, n_select=8, folds=2, purge=15, embargo=30, seed=7)
    b = select_features(X, y, n_select=8, folds=2, purge=15, embargo=30, seed=7)
    pd.testing.assert_frame_equal(a.ranking, b.ranking, check_exact=True)
    assert a.selected == b.selected


def test_lightgbm_pred_contrib_equals_shap_tree_explainer_on_a_small_model():
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1_500, 8))
    y = X[:, 0] - 0.5 * X[:, 3] * X[:, 4] + rng.normal(scale=0.5, size=len(X))
    booster = fit_surrogate(X, y, seed=7, rounds=25)
    contrib = booster.predict(X[:300], pred_contrib=True)
    reference = shap.TreeExplainer(booster).shap_values(X[:300])
    np.testing.assert_allclose(contrib[:, :-1], reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mean_abs_shap(booster, X[:300]), np.abs(reference).mean(axis=0),
                               atol=1e-9, rtol=0)


def test_report_writes_json_in_order_and_non_empty_charts(planted, tmp_path):
    _, _, result = planted
    paths = write_selection_report(result, tmp_path / "selection")
    assert set(paths) == {"selection", "ranking", "stability"}
    doc = json.loads(paths["selection"].read_text())
    assert doc["selected"] == list(result.selected)
    assert doc["stability"] == pytest.approx(result.stability)
    assert len(doc["features"]) == FEATURES
    assert len(doc["features"][0]["mean_abs_shap_by_fold"]) == FOLDS
    for key in ("ranking", "stability"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5_000
    # rerunning overwrites (idempotent task) instead of failing or appending
    assert write_selection_report(result, tmp_path / "selection") == paths


def test_label_at_t_reads_only_close_t_and_close_t_plus_h():
    rng = np.random.default_rng(0)
    close = 4_800 * np.exp(np.cumsum(rng.normal(0, 1e-4, 500)))
    h, t = 15, 200
    base = forward_log_return(close, h)
    assert base.dtype == np.float64
    assert np.isnan(base[-h:]).all()
    assert np.isfinite(base[:-h]).all()
    assert base[t] == pytest.approx(np.log(close[t + h] / close[t]), abs=1e-15)
    past = close.copy()
    past[:t] *= 1.5  # rewrite history before t
    assert forward_log_return(past, h)[t] == base[t]
    between = close.copy()
    between[t + 1 : t + h] *= 1.5  # path inside the horizon does not enter a point return
    assert forward_log_return(between, h)[t] == base[t]
    future = close.copy()
    future[t + h] *= 1.01
    assert forward_log_return(future, h)[t] != base[t]


def test_label_rejects_non_positive_prices_and_bad_horizons():
    from mia.errors import ConfigError, DataValidationError

    with pytest.raises(DataValidationError, match=r"close\[2\]=0.0 is not a positive"):
        forward_log_return(np.array([1.0, 2.0, 0.0, 3.0]), 1)
    with pytest.raises(ConfigError, match="horizon=0"):
        forward_log_return(np.ones(5), 0)
