"""The router: which book trades which model's decision, and with how much capital."""

from __future__ import annotations

import pytest

from executor.router import NS_PER_DAY, Routing

T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC


@pytest.mark.parametrize("mode", ["split", "overlap", "shadow"])
def test_without_a_canary_production_trades_all_capital_on_its_own_decision(mode):
    r = Routing(mode=mode, share=0.3, canary_since_ns=T0)
    assert r.capital(has_canary=False) == {"production": 1.0}
    assert r.targets(0.4, None, T0 + NS_PER_DAY) == {"production": 0.4}


def test_split_gives_the_canary_its_share_and_production_the_rest():
    r = Routing(mode="split", share=0.15)
    assert r.capital(has_canary=True) == {"production": pytest.approx(0.85), "canary": 0.15}
    assert r.targets(0.4, -0.7, T0) == {"production": 0.4, "canary": -0.7}


def test_split_at_share_zero_leaves_the_canary_book_without_capital():
    assert Routing(mode="split", share=0.0).capital(has_canary=True) == {
        "production": 1.0, "canary": 0.0}


def test_overlap_is_one_book_whose_signal_ramps_linearly_from_old_to_new():
    r = Routing(mode="overlap", share=0.05, overlap_days=4.0, canary_since_ns=T0)
    assert r.capital(has_canary=True) == {"production": 1.0}
    for days, w in ((0.0, 0.0), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0)):
        now = T0 + int(days * NS_PER_DAY)
        assert r.weight_new(now) == pytest.approx(w)
        # w_old * s_old + w_new * s_new (reference.md, "Overlapping transition")
        assert r.targets(0.8, -0.4, now)["production"] == pytest.approx((1 - w) * 0.8 - w * 0.4)
        assert set(r.targets(0.8, -0.4, now)) == {"production"}


def test_overlap_weight_is_clamped_before_the_canary_arrives_and_after_the_ramp():
    r = Routing(mode="overlap", overlap_days=2.0, canary_since_ns=T0)
    assert r.weight_new(T0 - NS_PER_DAY) == 0.0
    assert r.weight_new(T0 + 30 * NS_PER_DAY) == 1.0
    assert r.targets(0.8, -0.4, T0 + 30 * NS_PER_DAY) == {"production": -0.4}  # old model off


def test_overlap_of_zero_days_switches_to_the_new_model_at_once():
    assert Routing(mode="overlap", overlap_days=0.0, canary_since_ns=T0).weight_new(T0) == 1.0


def test_shadow_runs_the_canary_on_a_shadow_book_and_production_keeps_all_capital():
    r = Routing(mode="shadow", share=0.05)
    assert r.capital(has_canary=True) == {"production": 1.0, "shadow": 0.05}
    assert r.targets(0.4, -0.7, T0) == {"production": 0.4, "shadow": -0.7}


def test_shadow_book_without_a_share_is_sized_like_the_whole_account():
    assert Routing(mode="shadow", share=0.0).capital(has_canary=True)["shadow"] == 1.0
