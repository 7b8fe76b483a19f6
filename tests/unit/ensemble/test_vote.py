"""The ensemble's vote (mia.ensemble.vote): mapping, threshold, risk modifiers, one code path."""

from __future__ import annotations

import numpy as np
import pytest

from mia.ensemble.vote import (
    Ensemble,
    continuous_vote,
    decide,
    decide_one,
    quantile_share,
    quantile_vote,
)
from mia.errors import OperationalError

W = {"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}


def test_continuous_vote_is_the_probability_of_long_from_the_target():
    np.testing.assert_allclose(continuous_vote(np.array([1.0, 0.5, -0.25, 0.0, 3.0])),
                               [1.0, 0.75, 0.375, 0.5, 1.0])


def test_quantile_vote_is_long_flat_or_short_on_the_best_mean():
    q = np.zeros((3, 51, 3))
    q[0, :, 2] = 1.0  # long best
    q[1, :, 0] = 0.5  # short best
    q[2, :, 1] = 0.2  # flat best
    np.testing.assert_array_equal(quantile_vote(q), [1.0, 0.0, 0.5])


def test_agreement_below_the_threshold_stays_flat():
    ens = Ensemble(weights=W, threshold=0.65)
    # P(long) = 0.4 x 0.6 + 0.3 x 0.5 + 0.3 x 0.4 = 0.51: undecided
    frac, conf = decide(ens, {"sac": np.array(0.2), "ppo": np.array(0.0), "ddpg": np.array(-0.2)})
    assert float(frac) == 0.0
    assert float(conf) == 0.0
    # P(long) = 0.4 + 0.3 + 0.15 = 0.85 >= 0.65: long, sized by the net conviction 2P - 1
    frac, conf = decide(ens, {"sac": np.array(1.0), "ppo": np.array(1.0), "ddpg": np.array(0.0)})
    assert float(frac) == pytest.approx(0.7)
    assert float(conf) == pytest.approx(0.85)


def test_a_lone_agent_trades_as_it_would_alone_outside_the_dead_zone():
    ens = Ensemble(weights={"ppo": 1.0}, threshold=0.65)
    a = np.array([-1.0, -0.6, -0.2, 0.0, 0.29, 0.31, 0.8])
    frac, _ = decide(ens, {"ppo": a})
    np.testing.assert_allclose(frac, [-1.0, -0.6, 0.0, 0.0, 0.0, 0.31, 0.8])


def test_ppo_lagrangian_scales_the_size_and_vetoes_the_other_side():
    ens = Ensemble(weights=W, threshold=0.65, lagrangian_scale=True)
    base = {"sac": np.array(1.0), "ppo": np.array(1.0), "ddpg": np.array(1.0)}  # size 1
    assert float(decide(ens, {**base, "ppo_lagrangian": np.array(0.4)})[0]) == pytest.approx(0.4)
    assert float(decide(ens, {**base, "ppo_lagrangian": np.array(-0.9)})[0]) == 0.0


def test_quantile_confidence_is_the_share_of_the_side_above_flat():
    q = np.zeros((51, 3))
    q[:, 2] = np.linspace(-1, 3, 51)  # long: 38 of its 51 quantiles above flat's median 0
    assert float(quantile_share(q, np.asarray(2))) == pytest.approx(38 / 51)
    assert float(quantile_share(q, np.asarray(1))) == 1.0


@pytest.mark.parametrize(("lag", "quant"), [(False, False), (True, False), (False, True),
                                            (True, True)])
def test_the_live_scalar_vote_equals_the_vectorised_vote_exactly(lag, quant):
    rng = np.random.default_rng(3)
    weights = {"sac": 0.5, "ppo": 0.2, "ddpg": 0.1, "qrdqn": 0.2}
    ens = Ensemble(weights=weights, threshold=0.55, lagrangian_scale=lag,
                   quantile_confidence=quant)
    n = 4000
    acts = {k: np.clip(rng.normal(0, 0.8, n), -1.2, 1.2) for k in
            ("sac", "ppo", "ddpg", "ppo_lagrangian")}
    q = rng.normal(0, 1, (n, 51, 3))
    frac, conf = decide(ens, {**acts, "qrdqn": q})
    for t in range(n):
        f1, c1 = decide_one(ens, {k: float(v[t]) for k, v in acts.items()}, q[t])
        assert (f1, c1) == (float(frac[t]), float(conf[t])), t
    assert 0.05 < np.mean(frac != 0) < 0.95  # both branches were exercised


def test_bad_weights_and_missing_agents_are_refused():
    with pytest.raises(OperationalError, match="sum to 1"):
        Ensemble(weights={"sac": 0.5}, threshold=0.65)
    with pytest.raises(OperationalError, match="threshold"):
        Ensemble(weights={"sac": 1.0}, threshold=1.5)
    with pytest.raises(OperationalError, match="no output from"):
        decide(Ensemble(weights=W, threshold=0.6), {"sac": np.array(1.0)})


def test_ensemble_round_trips_through_its_bundle_block():
    ens = Ensemble(weights=W, threshold=0.65, lagrangian_scale=True, fit={"chosen": "prior"})
    assert Ensemble.from_dict(ens.to_dict()) == ens
    with pytest.raises(OperationalError, match="malformed"):
        Ensemble.from_dict({"weights": W})
