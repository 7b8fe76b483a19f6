from __future__ import annotations

import json

import numpy as np
import pytest

from mia.errors import OperationalError
from mia.features.normalize import (
    IQR_TO_SIGMA,
    Normalizer,
    observation,
    observation_matrix,
    observation_names,
)


def _raw(n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(3.0, 2.0, n), rng.standard_t(3, n) * 10, rng.random(n)])


NAMES = ("a", "b", "c")


def test_fit_uses_only_the_given_training_rows():
    raw = _raw()
    train = np.arange(0, 600)
    shifted = raw.copy()
    shifted[600:] = 1e6  # validation rows: nothing of them may reach the statistics
    a = Normalizer.fit(raw, NAMES, train)
    b = Normalizer.fit(shifted, NAMES, train)
    assert np.array_equal(a.center, b.center)
    assert np.array_equal(a.scale, b.scale)
    assert np.array_equal(a.center, np.median(raw[:600], axis=0))


def test_transform_gives_float32_robust_z_scores_clipped_to_the_bound():
    raw = _raw()
    norm = Normalizer.fit(raw, NAMES, slice(0, 1000), clip=3.0)
    q25, q50, q75 = np.percentile(raw, [25, 50, 75], axis=0)
    z = norm.transform(raw)
    assert z.dtype == np.float32
    assert z.shape == raw.shape
    expected = np.clip((raw - q50) / ((q75 - q25) / IQR_TO_SIGMA), -3.0, 3.0)
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    assert np.abs(z).max() == 3.0
    # one row (the executor's call) gives the same numbers as the matrix
    np.testing.assert_array_equal(norm.transform(raw[7]), z[7])


def test_gaussian_feature_comes_out_with_unit_scale():
    raw = np.random.default_rng(1).normal(5.0, 4.0, (200_000, 1))
    z = Normalizer.fit(raw, ("g",), slice(None)).transform(raw)
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.std()) - 1.0) < 0.01


def test_zero_iqr_feature_falls_back_to_std_and_constant_feature_to_one():
    sparse = np.zeros(1000)
    sparse[::50] = 1.0  # a news flag: IQR 0, std > 0
    raw = np.column_stack([sparse, np.full(1000, 7.0)])
    norm = Normalizer.fit(raw, ("flag", "const"), slice(None))
    assert norm.scale[0] == pytest.approx(sparse.std())
    assert norm.scale[1] == 1.0
    assert np.all(norm.transform(raw)[:, 1] == 0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_on_a_non_finite_training_row_names_the_feature_and_the_row(bad):
    raw = _raw()
    raw[:50, 1] = np.nan  # warm-up rows, outside the training rows: allowed
    raw[412, 2] = bad
    with pytest.raises(OperationalError, match=r"feature 'c' is .* at row 412"):
        Normalizer.fit(raw, NAMES, np.arange(50, 900))
    raw[412, 2] = 0.5
    Normalizer.fit(raw, NAMES, np.arange(50, 900))


def test_fit_on_no_rows_or_mismatched_names_is_rejected():
    with pytest.raises(OperationalError, match="empty fold"):
        Normalizer.fit(_raw(), NAMES, np.empty(0, dtype=np.int64))
    with pytest.raises(OperationalError, match="3 names"):
        Normalizer.fit(_raw()[:, :2], NAMES, slice(None))


def test_to_dict_round_trips_through_json_exactly():
    norm = Normalizer.fit(_raw(), NAMES, slice(0, 700), clip=4.0)
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back.names == norm.names
    assert back.clip == 4.0
    assert np.array_equal(back.center, norm.center)
    assert np.array_equal(back.scale, norm.scale)
    np.testing.assert_array_equal(back.transform(_raw()), norm.transform(_raw()))


def test_from_dict_with_missing_key_or_bad_values_is_rejected():
    good = Normalizer.fit(_raw(), NAMES, slice(None)).to_dict()
    with pytest.raises(OperationalError, match="expected"):
        Normalizer.from_dict({k: v for k, v in good.items() if k != "clip"})
    with pytest.raises(OperationalError, match="scale has shape"):
        Normalizer.from_dict({**good, "scale": good["scale"][:2]})
    with pytest.raises(OperationalError, match="scale must be > 0"):
        Normalizer.from_dict({**good, "scale": [1.0, 0.0, 1.0]})
    with pytest.raises(OperationalError, match="cannot read"):
        Normalizer.from_dict({**good, "format": 99})


def test_transform_keeps_non_finite_inputs_nan_instead_of_clipping():
    norm = Normalizer.fit(_raw(), NAMES, slice(None))
    z = norm.transform(np.array([np.inf, np.nan, 0.5]))
    assert np.isnan(z[0])
    assert np.isnan(z[1])
    assert np.isfinite(z[2])


def test_transform_with_the_wrong_feature_count_is_rejected():
    norm = Normalizer.fit(_raw(), NAMES, slice(None))
    with pytest.raises(OperationalError, match="same bundle"):
        norm.transform(np.zeros(4))


def test_observation_appends_the_position_share_as_last_element():
    z = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    obs = observation(z, -2, 5)
    assert obs.dtype == np.float32
    assert obs.tolist() == pytest.approx([0.5, -1.0, 2.0, -0.4])
    assert observation_names(NAMES) == ("a", "b", "c", "position")


def test_observation_rejects_a_position_beyond_the_limit_and_nan_features():
    with pytest.raises(OperationalError, match="outside the limit"):
        observation(np.zeros(3), 6, 5)
    with pytest.raises(OperationalError, match="1 non-finite"):
        observation(np.array([0.0, np.nan, 0.0]), 0, 5)


def test_observation_matrix_rows_are_observations_of_a_flat_position():
    z = Normalizer.fit(_raw(), NAMES, slice(None)).transform(_raw())
    mat = observation_matrix(z)
    assert mat.shape == (1000, 4)
    assert mat.flags.c_contiguous
    for t in (0, 500, 999):
        np.testing.assert_array_equal(mat[t], observation(z[t], 0, 5))
