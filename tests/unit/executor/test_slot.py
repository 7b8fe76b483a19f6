"""A model slot decides what the bundle's Policy and the ensemble's decide_one decide on the
batch features of the same rows: the online path adds nothing and drops nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from executor.slot import ModelSlot
from mia.ensemble.vote import Ensemble, decide_one
from mia.errors import OperationalError
from mia.registry.bundle import read_bundle
from mia.registry.policy import Policy
from mia.risk import FeatureTap


@pytest.fixture(scope="module")
def fed(world):
    """The production slot fed every stored ES bar, its outputs kept per row."""
    slot = ModelSlot.load(world.production, "1")
    raw, risk = [], []
    for row in world.inputs:
        slot.update(np.ascontiguousarray(row))
        raw.append(slot.raw_features().copy())
        risk.append(slot.risk_features())
    return slot, np.array(raw), risk


def test_online_slot_features_equal_the_batch_features_at_every_row(world, fed):
    _, raw, _ = fed
    np.testing.assert_array_equal(raw, world.raw)  # NaN where batch is NaN too (warm-up)


def test_slot_risk_features_equal_the_batch_risk_features_at_every_row(world, fed):
    _, _, risk = fed
    bundle = read_bundle(world.production)
    tap = FeatureTap(bundle.risk_spec.names)
    for i in range(0, len(risk), 97):
        want, got = tap.read(world.risk_raw[i]), risk[i]
        np.testing.assert_array_equal(np.array(got, dtype=float), np.array(want, dtype=float))


def test_slot_decision_equals_policy_act_and_decide_one_on_the_same_rows(world, fed):
    slot = ModelSlot.load(world.production, "1")
    slot.warm(world.inputs[:1000])
    bundle = read_bundle(world.production)
    policy, ens = Policy(bundle), Ensemble.from_dict(bundle.ensemble)
    limit = bundle.max_contracts
    fractions = []
    for i in range(1000, 1400):
        slot.update(np.ascontiguousarray(world.inputs[i]))
        position = (i % (2 * limit + 1)) - limit  # every position the bundle allows
        got = slot.decide(position)
        out = policy.act(world.raw[i], position)
        actions = {k: v.fraction for k, v in out.items() if v.quantiles is None}
        want = decide_one(ens, actions, out["qrdqn"].quantiles)
        assert (got.fraction, got.confidence) == want, f"row {i}, position {position}"
        assert got.actions == actions
        fractions.append(got.fraction)
    # the comparison means something only if the bundle takes both sides and stays flat at times
    assert min(fractions) < 0 < max(fractions)
    assert 0.0 in fractions


def test_slot_is_ready_only_after_its_longest_warm_up(world):
    slot = ModelSlot.load(world.production, "1")
    for row in world.inputs[:slot.warmup]:
        slot.update(np.ascontiguousarray(row))
    assert not slot.ready
    slot.update(np.ascontiguousarray(world.inputs[slot.warmup]))
    assert slot.ready
    # the risk features warm up longest here: the model's alone would be ready much earlier
    assert slot.warmup == slot.risk.spec.warmup > slot.features.spec.warmup


def test_warming_on_too_little_history_says_how_many_bars_are_needed(world):
    slot = ModelSlot.load(world.production, "7")
    with pytest.raises(OperationalError, match=rf"model v7: 100 bars of history, its features "
                                               rf"need {slot.warmup + 1} to warm up"):
        slot.warm(world.inputs[:100])


def test_the_loop_never_asks_a_cold_slot_because_its_features_look_finite(world):
    # why the loop checks ``slot.ready`` before ``decide``: inside their warm-up the kernels
    # output finite numbers (RSI 100 after two bars), so the policy's non-finite check cannot
    # tell a cold slot from a warm one
    slot = ModelSlot.load(world.production, "1")
    for row in world.inputs[:3]:
        slot.update(np.ascontiguousarray(row))
    assert not slot.ready
    assert np.isfinite(slot.raw_features()).all()


def test_deciding_before_the_features_are_warm_refuses_rather_than_trading_on_them(world):
    slot = ModelSlot.load(world.production, "1")
    for row in world.inputs[:3]:
        slot.update(np.ascontiguousarray(row))
    with pytest.raises(OperationalError, match="warm"):
        slot.decide(0)


def test_a_tampered_bundle_never_becomes_a_slot(world, tmp_path):
    broken = shutil.copytree(world.production, tmp_path / "broken")
    graph = broken / "policy.onnx"
    graph.write_bytes(graph.read_bytes()[:-1])
    with pytest.raises(OperationalError, match="policy.onnx"):
        ModelSlot.load(broken, "9")


def test_two_bundles_of_one_spec_decide_differently(world):
    # the canary fixture is a real alternative model, not a copy of production
    a, b = ModelSlot.load(world.production, "1"), ModelSlot.load(world.canary, "2")
    a.warm(world.inputs[:1200])
    b.warm(world.inputs[:1200])
    np.testing.assert_array_equal(a.raw_features(), b.raw_features())
    assert a.decide(0) != b.decide(0) or a.decide(1) != b.decide(1)
