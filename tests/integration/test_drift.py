from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mia.drift import DriftSummary, drift_report
from mia.errors import DataValidationError

pytestmark = pytest.mark.integration

COLUMNS = [f"feat_{i}" for i in range(10)]
SHIFTED = ("feat_2", "feat_7")


def _frames(rows: int = 2_000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame(rng.normal(size=(rows, 10)).astype(np.float32), columns=COLUMNS)
    current = pd.DataFrame(rng.normal(size=(rows, 10)).astype(np.float32), columns=COLUMNS)
    current["feat_2"] += 1.0  # mean shift
    current["feat_7"] *= 3.0  # variance change
    current.loc[:50, "feat_5"] = np.nan  # NaN alone is not drift: Evidently drops them
    return reference, current


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> DriftSummary:
    reference, current = _frames()
    return drift_report(reference, current, tmp_path_factory.mktemp("drift"), drift_share=0.3)


def test_shifted_columns_are_flagged_and_the_others_are_not(summary):
    assert set(summary.drifted_columns) == set(SHIFTED)
    assert summary.n_drifted == 2
    assert summary.n_columns == 10
    assert summary.drifted_share == pytest.approx(0.2)
    assert not summary.dataset_drifted  # 0.2 < drift_share 0.3
    assert [c.column for c in summary.columns] == COLUMNS
    # 2000 rows per side: Evidently uses the normed Wasserstein distance (drift when >= 0.1)
    by_name = {c.column: c for c in summary.columns}
    assert by_name["feat_2"].method.startswith("Wasserstein")
    assert by_name["feat_2"].score >= by_name["feat_2"].threshold > by_name["feat_0"].score


def test_html_and_json_are_written_and_agree_with_the_summary(summary):
    assert summary.html_path.name == "drift.html"
    assert summary.json_path.name == "drift.json"
    html = summary.html_path.read_text()
    assert len(html) > 10_000
    assert "<html" in html.lower()
    doc = json.loads(summary.json_path.read_text())
    assert doc["n_drifted"] == 2
    assert doc["drifted_share"] == pytest.approx(0.2)
    assert {c["column"] for c in doc["columns"] if c["drifted"]} == set(SHIFTED)
    assert {"score", "method", "threshold", "drifted"} <= set(doc["columns"][0])
    # Evidently's own dataset-level count agrees with the per-column verdicts we read
    counts = [m for m in doc["evidently"]["metrics"] if "DriftedColumnsCount" in m["metric_name"]]
    assert counts[0]["value"]["count"] == 2


def test_small_samples_use_kolmogorov_smirnov_and_still_flag_the_shift(tmp_path):
    reference, current = _frames(rows=600, seed=1)
    result = drift_report(reference, current, tmp_path, columns=["feat_0", "feat_2"])
    assert [c.method for c in result.columns] == ["K-S p_value"] * 2
    assert result.drifted_columns == ("feat_2",)
    assert result.n_columns == 2


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda r, c: (r, c.drop(columns="feat_3")), "different columns.*only in reference"),
        (lambda r, c: (r.head(10), c), "reference has 10 rows, need >= 50"),
        (lambda r, c: (r, c.assign(feat_1="x")), r"non-numeric columns \['feat_1'\]"),
        (lambda r, c: (r.assign(feat_4=np.nan), c), r"columns \['feat_4'\] are all NaN"),
    ],
)
def test_bad_inputs_are_refused_before_evidently_runs(tmp_path, mutate, msg):
    reference, current = mutate(*_frames(rows=200))
    with pytest.raises(DataValidationError, match=msg):
        drift_report(reference, current, tmp_path)
    assert not (tmp_path / "drift.html").exists()


def test_explicit_columns_must_exist_in_both_frames(tmp_path):
    reference, current = _frames(rows=200)
    with pytest.raises(DataValidationError, match=r"current lacks columns \['nope'\]"):
        drift_report(reference.assign(nope=1.0), current, tmp_path, columns=["feat_0", "nope"])
