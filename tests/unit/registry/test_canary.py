"""The canary review's rules: step up, hold, roll back on drawdown / under-performance / limits /
errors, promote after the observation period (pure; params.yaml's canary_review thresholds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mia.config import load_config
from mia.errors import OperationalError
from mia.registry.canary import BookStats, CanaryEvidence, next_share, review_canary

REPO = Path(__file__).resolve().parents[3]
PARAMS = load_config(REPO / "params.yaml", env={"MIA_HOME": "/tmp/mia-unused"}).params
RULES = PARAMS.canary_review  # step 3 days, promote 5, 10 trades, dd 3 %, gap 1 %, errors 5 %
STEPS = PARAMS.executor.canary_steps  # 0.05, 0.15, 0.5, 1.0
EQUITY = 250_000.0


def book(share: float, ret: float = 0.0, *, trades: int = 12, dd: float = 0.005) -> BookStats:
    capital = EQUITY * share
    return BookStats(capital=capital, pnl=ret * capital, max_drawdown=dd, trades=trades,
                     position=0)


def evidence(share: float = 0.05, *, days: int = 3, canary_ret: float = 0.004,
             production_ret: float = 0.002, trades: int = 12, dd: float = 0.005, bars: int = 4000,
             errors: int = 0, **kw: tuple[str, ...]) -> CanaryEvidence:
    return CanaryEvidence(days=days, bars=bars, errors=errors,
                          canary=book(share, canary_ret, trades=trades, dd=dd),
                          production=book(1.0 - share, production_ret, trades=30), **kw)


def decide(e: CanaryEvidence, share: float = 0.05, **rules: float):
    return review_canary(e, share=share, steps=STEPS,
                         rules=dataclasses.replace(RULES, **rules) if rules else RULES)


def test_a_healthy_canary_after_its_step_days_and_trades_steps_to_the_next_share():
    d = decide(evidence())
    assert (d.action, d.share, d.to_share) == ("step", 0.05, 0.15)
    assert "3 trade days and 12 trades at share 0.05" in d.reason
    assert "+0.40% vs production's +0.20%" in d.reason


@pytest.mark.parametrize(("share", "to"), [(0.15, 0.5), (0.5, 1.0), (0.1, 0.15)])
def test_each_step_leads_to_the_next_of_the_schedule_even_from_a_hand_set_share(share, to):
    assert decide(evidence(share), share=share).to_share == to


def test_a_young_step_holds_and_says_what_it_waits_for():
    d = decide(evidence(days=2, trades=4))
    assert d.action == "hold"
    assert d.to_share is None
    assert d.reasons == ("2/3 trade days at share 0.05", "4/10 canary trades at share 0.05")


def test_enough_days_but_too_few_trades_still_holds():
    d = decide(evidence(days=9, trades=9))
    assert d.action == "hold"
    assert d.reasons == ("9/10 canary trades at share 0.05",)


def test_drawdown_above_the_limit_rolls_back_even_before_enough_trades():
    d = decide(evidence(days=1, trades=2, dd=0.031))
    assert d.action == "rollback"
    assert d.reasons == ("canary drawdown 3.10% > canary_review.max_drawdown 3.00%",)


def test_drawdown_at_exactly_the_limit_is_not_a_rollback():
    assert decide(evidence(dd=0.03)).action == "step"


def test_underperformance_after_enough_trades_rolls_back_with_the_numbers():
    d = decide(evidence(canary_ret=-0.006, production_ret=0.005))
    assert d.action == "rollback"
    (why,) = d.reasons
    assert "-0.60% trails production's +0.50% by 1.10% over 12 trades" in why


def test_underperformance_is_not_judged_before_min_trades():
    d = decide(evidence(canary_ret=-0.02, production_ret=0.02, trades=9))
    assert d.action == "hold"


def test_trailing_by_less_than_the_margin_keeps_the_canary():
    assert decide(evidence(canary_ret=-0.004, production_ret=0.005)).action == "step"


def test_a_risk_limit_on_the_canary_book_or_the_executors_own_rollback_rolls_back():
    d = decide(evidence(limit_events=("limit.daily_loss: loss 3.2% > 3%",),
                        executor_rollbacks=("canary drawdown 3.5% > rollback.max_drawdown",)))
    assert d.action == "rollback"
    assert d.reasons == ("the executor rolled the canary back: canary drawdown 3.5% > "
                         "rollback.max_drawdown",
                         "risk hold on the canary book: limit.daily_loss: loss 3.2% > 3%")


def test_every_trigger_is_listed_in_the_reason():
    d = decide(evidence(dd=0.05, canary_ret=-0.05, errors=400))
    assert d.action == "rollback"
    assert len(d.reasons) == 3


def test_the_error_rate_is_judged_only_after_min_bars():
    assert decide(evidence(bars=99, errors=50)).action == "step"
    d = decide(evidence(bars=100, errors=6))
    assert d.action == "rollback"
    assert d.reasons == ("canary decision errors 6/100 bars > canary_review.max_error_rate 5.0%",)
    assert decide(evidence(bars=100, errors=5)).action == "step"


def test_the_last_step_is_promoted_only_after_the_observation_period():
    young = decide(evidence(1.0, days=4), share=1.0)
    assert young.action == "hold"
    assert young.reasons == ("4/5 trade days at share 1",)
    d = decide(evidence(1.0, days=5), share=1.0)
    assert (d.action, d.to_share) == ("promote", None)


def test_at_full_share_the_canary_is_judged_against_flat_since_production_holds_no_capital():
    e = evidence(1.0, days=5, canary_ret=-0.011)
    assert e.production.capital == 0
    d = decide(e, share=1.0)
    assert d.action == "rollback"
    assert "trails flat (production holds no capital) +0.00% by 1.10%" in d.reasons[0]
    assert decide(evidence(1.0, days=5, canary_ret=-0.009), share=1.0).action == "promote"


def test_thresholds_come_from_the_rules_given():
    assert decide(evidence(days=3), step_days=4).action == "hold"
    assert decide(evidence(dd=0.02), max_drawdown=0.01).action == "rollback"


@pytest.mark.parametrize("share", [0.0, 1.5, float("nan")])
def test_a_share_outside_the_unit_interval_is_refused_with_the_fix(share):
    with pytest.raises(OperationalError, match="set-share"):
        decide(evidence(), share=share)


def test_next_share_is_none_at_or_past_the_last_step():
    assert next_share(1.0, STEPS) is None
    assert next_share(0.05, STEPS) == 0.15
    assert next_share(0.15000000001, STEPS) == 0.5


def test_params_reject_an_unknown_rollback_cause_with_the_known_ones():
    import yaml

    from mia.config import parse_params
    from mia.errors import ConfigError

    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["canary_review"]["rollback_causes"] = ["limit.daily_loss", "breaker.typo"]
    with pytest.raises(ConfigError, match=r"rollback_causes: \['breaker.typo'\] unknown; use "
                                          r"some of limit.daily_loss, limit.max_drawdown"):
        parse_params(doc)
