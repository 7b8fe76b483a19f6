"""The drift watch's decision: PSI of a live window against a bundle's drift reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mia.drift import bin_proportions, reference_quantiles
from mia.errors import DataValidationError, OperationalError
from mia.pipelines.drift_watch import assess


def _reference(x: np.ndarray, names: list[str]) -> dict:
    # what the drift stage writes into the bundle (JSON: +inf padding as null)
    edges = reference_quantiles(x, 10)
    return {"features": names, "bars": len(x),
            "edges": [[float(e) if np.isfinite(e) else None for e in row] for row in edges],
            "expected": bin_proportions(x, edges).tolist()}


@pytest.fixture
def world():
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(10)]
    ref = rng.normal(size=(20_000, 10))
    return names, _reference(ref, names), rng


def test_a_day_of_the_same_distribution_is_not_drift(world):
    names, reference, rng = world
    live = pd.DataFrame(rng.normal(size=(1380, 10)), columns=names)
    psi, drifted, share, verdict = assess(reference, live, psi_threshold=0.2, drift_share=0.3)
    assert max(psi.values()) < 0.05
    assert drifted == ()
    assert not verdict


def test_shifted_features_over_the_share_are_drift(world):
    names, reference, rng = world
    x = rng.normal(size=(1380, 10))
    x[:, :4] += 1.0  # four of ten features move by one standard deviation
    psi, drifted, share, verdict = assess(reference, pd.DataFrame(x, columns=names),
                                          psi_threshold=0.2, drift_share=0.3)
    assert drifted == ("f0", "f1", "f2", "f3")
    assert share == 0.4
    assert verdict
    _, _, _, strict = assess(reference, pd.DataFrame(x, columns=names), psi_threshold=0.2,
                             drift_share=0.5)
    assert not strict  # 40 % drifted is below a 50 % share


def test_a_feature_gone_nan_live_counts_as_drift(world):
    names, reference, rng = world
    x = rng.normal(size=(1380, 10))
    x[:, 5] = np.nan
    psi, drifted, _, _ = assess(reference, pd.DataFrame(x, columns=names), psi_threshold=0.2,
                                drift_share=0.3)
    assert drifted == ("f5",)
    assert psi["f5"] > 5


def test_live_log_missing_a_feature_or_a_broken_reference_is_an_error(world):
    names, reference, rng = world
    live = pd.DataFrame(rng.normal(size=(100, 9)), columns=names[:9])
    with pytest.raises(DataValidationError, match="lacks 1 of the bundle's features"):
        assess(reference, live, psi_threshold=0.2, drift_share=0.3)
    with pytest.raises(OperationalError, match="malformed"):
        assess({"features": names}, live, psi_threshold=0.2, drift_share=0.3)
