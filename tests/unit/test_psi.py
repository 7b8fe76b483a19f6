from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from mia.drift.psi import (
    EPSILON,
    PSIMonitor,
    bin_proportions,
    psi_value,
    reference_quantiles,
)
from mia.errors import DataValidationError, OperationalError


def _feed(monitor: PSIMonitor, rows: np.ndarray) -> None:
    for row in rows:
        monitor.update(row)


def test_reference_quantiles_give_equal_mass_bins_for_continuous_features():
    ref = np.random.default_rng(0).normal(size=(50_000, 3))
    edges = reference_quantiles(ref, n_bins=10)
    assert edges.shape == (3, 9)
    assert edges.dtype == np.float64
    np.testing.assert_allclose(bin_proportions(ref, edges)[:, :10], 0.1, atol=1e-3)
    assert (bin_proportions(ref, edges)[:, 10] == 0).all()  # no missing in a clean reference


def test_discrete_features_get_deduplicated_edges_padded_with_inf():
    rng = np.random.default_rng(1)
    flag = (rng.random(10_000) < 0.3).astype(float)  # 70 % zeros
    edges = reference_quantiles(flag[:, None], n_bins=10)
    assert edges[0, :2].tolist() == [0.0, 1.0]
    assert np.isinf(edges[0, 2:]).all()
    shares = bin_proportions(flag[:, None], edges)[0]
    assert shares[0] == 0  # below 0: unreachable
    assert shares[1] == pytest.approx(0.7, abs=0.02)
    assert shares[2] == pytest.approx(0.3, abs=0.02)
    # the same flag distribution live is stable when the true shares are passed
    monitor = PSIMonitor(edges, window=5_000, expected=shares[None, :])
    _feed(monitor, (rng.random((5_000, 1)) < 0.3).astype(float))
    assert monitor.psi()[0] < 0.01


def test_psi_is_near_zero_for_samples_from_the_reference_distribution():
    rng = np.random.default_rng(2)
    edges = reference_quantiles(rng.normal(size=(20_000, 5)), n_bins=10)
    monitor = PSIMonitor(edges, window=5_000)
    _feed(monitor, rng.normal(size=(5_000, 5)))
    assert monitor.n_observed == 5_000
    assert (monitor.psi() < 0.02).all()
    assert not monitor.drifted(0.2).any()


def test_psi_is_large_for_a_shifted_distribution_only_on_the_shifted_feature():
    rng = np.random.default_rng(3)
    edges = reference_quantiles(rng.normal(size=(20_000, 4)), n_bins=10)
    monitor = PSIMonitor(edges, window=5_000)
    live = rng.normal(size=(5_000, 4))
    live[:, 2] += 0.75  # three quarters of a standard deviation
    _feed(monitor, live)
    psi = monitor.psi()
    assert psi[2] > 0.2
    assert monitor.drifted(0.2).tolist() == [False, False, True, False]


def test_psi_matches_a_hand_computed_example():
    # one feature, edge at 0: bins (-inf, 0) and [0, inf); reference 50/50, no missing.
    monitor = PSIMonitor(np.array([[0.0]]), window=4, expected=np.array([[0.5, 0.5]]))
    _feed(monitor, np.array([[-1.0], [-2.0], [-0.5], [3.0]]))
    # live 3/4, 1/4, missing 0 -> (0.25 ln 1.5) + (-0.25 ln 0.5) + 0 = 0.25 ln 3
    assert monitor.counts.tolist() == [[3, 1, 0]]
    assert monitor.psi()[0] == pytest.approx(0.25 * np.log(3.0), abs=1e-12)
    # an empty bin is floored at EPSILON on both sides: a = [1, 0, 0] vs e = [.5, .5, 0]
    _feed(monitor, np.array([[-1.0], [-1.0], [-1.0], [-1.0]]))
    expected = (1 - 0.5) * np.log(1 / 0.5) + (EPSILON - 0.5) * np.log(EPSILON / 0.5)
    assert monitor.psi()[0] == pytest.approx(expected, abs=1e-12)


def test_window_evicts_the_oldest_bar_and_matches_a_recount():
    rng = np.random.default_rng(4)
    edges = reference_quantiles(rng.normal(size=(5_000, 3)), n_bins=5)
    window = 7
    monitor = PSIMonitor(edges, window=window)
    rows = rng.normal(size=(40, 3))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    for i, row in enumerate(rows):
        monitor.update(row)
        held = rows[max(0, i + 1 - window): i + 1]
        recount = bin_proportions(held, edges) * len(held)
        np.testing.assert_allclose(monitor.counts, recount, atol=1e-9)
        assert monitor.n_observed == len(held)


def test_nan_and_inf_count_in_the_missing_bucket_and_show_as_drift():
    rng = np.random.default_rng(5)
    edges = reference_quantiles(rng.normal(size=(5_000, 2)), n_bins=10)
    monitor = PSIMonitor(edges, window=100)
    live = rng.normal(size=(100, 2))
    live[:30, 1] = np.nan  # a broken live input
    live[30, 1] = np.inf
    _feed(monitor, live)
    assert monitor.counts[1, -1] == 31
    assert monitor.drifted(0.2).tolist() == [False, True]


def test_memory_stays_fixed_however_many_bars_are_fed():
    rng = np.random.default_rng(6)
    edges = reference_quantiles(rng.normal(size=(5_000, 20)), n_bins=10)
    monitor = PSIMonitor(edges, window=500)
    rows = rng.normal(size=(20_000, 20))
    _feed(monitor, rows[:1_000])  # compile and fill the window first
    before = monitor.nbytes
    tracemalloc.start()
    _feed(monitor, rows[1_000:])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert monitor.nbytes == before
    assert peak < 64 * 1024  # 19k updates, no per-bar allocation that accumulates
    assert monitor.n_observed == 500


def test_update_rejects_a_vector_of_the_wrong_shape():
    monitor = PSIMonitor(np.zeros((3, 4)), window=10)
    with pytest.raises(DataValidationError, match=r"got shape \(4,\), expected \(3,\)"):
        monitor.update(np.zeros(4))
    with pytest.raises(DataValidationError, match="expected"):
        monitor.update(np.zeros((1, 3)))
    with pytest.raises(DataValidationError, match="list"):
        monitor.update([0.0, 0.0, 0.0])  # type: ignore[arg-type]
    monitor.update(np.zeros(3, dtype=np.int64))  # integer vectors are accepted
    assert monitor.n_observed == 1


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"edges": np.zeros(3)}, "edges must be"),
        ({"edges": np.array([[1.0, 0.0]])}, "non-decreasing"),
        ({"window": 0}, "window=0"),
        ({"expected": np.ones((2, 5))}, "expected has shape"),
        ({"expected": np.full((2, 4), 0.5)}, "sum to 1"),
    ],
)
def test_constructor_rejects_inconsistent_inputs(kwargs, msg):
    args = {"edges": np.zeros((2, 2)), "window": 5, **kwargs}
    with pytest.raises(OperationalError, match=msg):
        PSIMonitor(**args)


def test_psi_before_any_bar_and_bad_references_are_refused():
    with pytest.raises(OperationalError, match="no bar observed yet"):
        PSIMonitor(np.zeros((1, 1)), window=3).psi()
    with pytest.raises(OperationalError, match=r"features \[1\] have no finite"):
        reference_quantiles(np.array([[1.0, np.nan], [2.0, np.nan]]))
    with pytest.raises(OperationalError, match="n_bins=1"):
        reference_quantiles(np.ones((5, 1)), n_bins=1)


def test_psi_value_is_zero_for_identical_shares_and_symmetric_in_sign():
    e = np.array([[0.2, 0.3, 0.5, 0.0]])
    a = np.array([[0.3, 0.3, 0.4, 0.0]])
    assert psi_value(e, e)[0] == 0.0
    assert psi_value(a, e)[0] == pytest.approx(psi_value(e, a)[0])


def test_psi_module_imports_no_evidently_lightgbm_shap_or_matplotlib():
    code = ("import sys, mia.drift.psi; "
            "print([m for m in ('evidently', 'lightgbm', 'shap', 'matplotlib') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
