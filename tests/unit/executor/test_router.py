"""The router: which book trades which model's decision, and with how much capital."""

from __future__ import annotations

import pytest

from executor.router import NS_PER_DAY, Routing
from mia.errors import ConfigError

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


def test_shadow_book_without_a_share_has_no_capital_and_production_keeps_all():
    # the shadow's capital is notional, the canary's share; at 0 there is no shadow book
    assert Routing(mode="shadow", share=0.0).capital(has_canary=True) == {
        "production": 1.0, "shadow": 0.0}


@pytest.mark.parametrize("share", [0.05, 0.5, 1.0])
def test_shadow_never_takes_real_capital_from_production(share):
    capital = Routing(mode="shadow", share=share).capital(has_canary=True)
    assert capital["production"] == 1.0
    assert capital["shadow"] == share


def test_split_at_share_one_leaves_production_no_capital():
    assert Routing(mode="split", share=1.0).capital(has_canary=True) == {
        "production": 0.0, "canary": 1.0}


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_share_outside_zero_to_one_is_refused_with_the_fix(share):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\].*set-share"):
        Routing(mode="split", share=share)


def test_an_unknown_routing_mode_is_refused():
    with pytest.raises(ConfigError, match="use split, overlap or shadow"):
        Routing(mode="blend", share=0.1)  # type: ignore[arg-type]


def test_a_negative_overlap_is_refused():
    with pytest.raises(ConfigError, match="overlap_days"):
        Routing(mode="overlap", overlap_days=-1.0)
