"""For EVERY registered feature (issue 3, item 2), generated per feature:

(a) batch over N bars equals online bar by bar (exactly: one kernel);
(b) the value at t does not change when bars after t are changed or appended;
(c) online is "not ready" until the declared warm-up, and a stream started fresh at bar s agrees
    with the long-running one from s + warm-up on (1e-9 relative to the feature's scale).
"""

from __future__ import annotations

import numpy as np
import pytest

from mia.features.batch import run_program
from mia.features.inputs import build_inputs
from mia.features.online import OnlineFeatures
from mia.features.ops import INPUTS
from mia.features.registry import registry
from mia.features.spec import make_spec

NAMES = list(registry())
# Pure functions of the bar's timestamp: perturbing later prices cannot move them.
CLOCK_ONLY = {
    "session_cycle",
    "weekday_cycle",
    "is_cash_session",
    "minutes_to_close",
    "gap_minutes",
}
OFFSET = 2000  # bars skipped by the late-starting stream
CUT = 9000  # bars after this are perturbed for the look-ahead check


@pytest.fixture(scope="module")
def runs(market, regime):
    inputs = build_inputs(market["ES"], market["MNQ"]).matrix
    spec = make_spec(NAMES, regime=regime)
    full = run_program(spec, inputs)
    online = OnlineFeatures(spec)
    stepped = np.array([online.update(row).copy() for row in inputs])
    late = run_program(spec, inputs[OFFSET:])
    perturbed = inputs.copy()
    rng = np.random.default_rng(0)
    cols = [i for i, name in enumerate(INPUTS) if name != "ts_minutes"]
    perturbed[CUT + 1 :, cols] *= rng.uniform(0.9, 1.1, (len(inputs) - CUT - 1, len(cols)))
    news = INPUTS.index("news_impact")  # move the news events, not only their size
    perturbed[CUT + 1 :, news] = rng.permutation(perturbed[CUT + 1 :, news])
    changed = run_program(spec, perturbed)
    truncated = run_program(spec, inputs[: CUT + 1])
    return spec, full, stepped, late, changed, truncated


def test_every_feature_has_data_past_its_warmup(runs):
    spec, full, *_ = runs
    assert OFFSET + spec.warmup < len(full), "test market too short for the longest warm-up"


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_online_bar_by_bar(runs, name):
    spec, full, stepped, *_ = runs
    j = spec.names.index(name)
    np.testing.assert_array_equal(stepped[:, j], full[:, j])


@pytest.mark.parametrize("name", NAMES)
def test_value_at_t_ignores_later_bars(runs, name):
    spec, full, _, _, changed, truncated = runs
    j = spec.names.index(name)
    np.testing.assert_array_equal(changed[: CUT + 1, j], full[: CUT + 1, j])
    np.testing.assert_array_equal(truncated[:, j], full[: CUT + 1, j])
    if registry()[name].family not in CLOCK_ONLY:
        assert not np.array_equal(changed[CUT + 1 :, j], full[CUT + 1 :, j]), (
            "perturbing later bars changed nothing: the check would not catch a leak"
        )


@pytest.mark.parametrize("name", NAMES)
def test_declared_warmup_makes_a_late_start_agree(runs, name):
    spec, full, _, late, *_ = runs
    j = spec.names.index(name)
    w = spec.warmups[j]
    got, want = late[w:, j], full[OFFSET + w :, j]
    scale = max(np.max(np.abs(full[spec.warmup :, j])), 1e-300)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * scale)


def test_online_reports_not_ready_until_warmup(market):
    spec = make_spec(["ret_1", "rsi_14", "ema_dist_200"])
    online = OnlineFeatures(spec)
    inputs = build_inputs(market["ES"]).matrix
    readiness = []
    for row in inputs[: spec.warmup + 2]:
        online.update(row)
        readiness.append(online.ready_mask().copy())
    readiness = np.array(readiness)
    for j, w in enumerate(spec.warmups):
        assert not readiness[:w, j].any()
        assert readiness[w:, j].all()
    assert online.ready


def test_parallel_batch_equals_the_single_program(runs, market):
    spec, full, *_ = runs
    inputs = build_inputs(market["ES"], market["MNQ"]).matrix
    np.testing.assert_array_equal(run_program(spec, inputs, workers=2), full)
