import math

import pytest

from mia.config import GateConfig
from mia.errors import OperationalError
from mia.registry.gate import GateMetrics, evaluate_gate

CFG = GateConfig(sharpe_margin=0.1, min_deflated_sharpe=0.95, max_drawdown=0.2, max_cvar=0.1,
                 auto_canary=True)
NAN = math.nan


def metrics(sharpe=1.5, dsr=0.97, mdd=0.08, cvar=0.02):
    return GateMetrics(sharpe=sharpe, deflated_sharpe=dsr, max_drawdown=mdd, cvar_95=cvar)


def test_candidate_beating_production_by_the_margin_within_limits_passes():
    verdict = evaluate_gate(metrics(sharpe=1.5), metrics(sharpe=1.2), {}, CFG, True)
    assert verdict.passed
    assert verdict.reasons == ()
    assert verdict.reference == "production"
    assert len(verdict.checks) == 5
    assert all(c.startswith("pass: ") for c in verdict.checks)


def test_sharpe_exactly_at_production_plus_margin_passes_and_just_below_fails():
    assert evaluate_gate(metrics(sharpe=1.25), metrics(sharpe=1.0), {},
                         GateConfig(sharpe_margin=0.25, min_deflated_sharpe=0.95,
                                    max_drawdown=0.2, max_cvar=0.1, auto_canary=True),
                         True).passed
    low = evaluate_gate(metrics(sharpe=1.29), metrics(sharpe=1.2), {}, CFG, True)
    assert not low.passed
    assert low.reasons == ("out-of-sample Sharpe 1.290 does not beat production 1.200 "
                           "+ margin 0.1 = 1.300",)


def test_without_production_the_best_finite_baseline_is_the_reference():
    # flat has zero-variance returns, so a NaN Sharpe: it is not a reference
    baselines = {"flat": metrics(sharpe=NAN), "buy_and_hold": metrics(sharpe=0.9),
                 "sma_crossover": metrics(sharpe=1.45)}
    verdict = evaluate_gate(metrics(sharpe=1.5), None, baselines, CFG, True)
    assert not verdict.passed
    assert verdict.reference == "baseline sma_crossover"
    assert "does not beat best baseline (sma_crossover) 1.450 + margin 0.1 = 1.550" in \
        verdict.reasons[0]
    assert evaluate_gate(metrics(sharpe=1.6), None, baselines, CFG, True).passed


@pytest.mark.parametrize(("candidate", "reason"), [
    (metrics(dsr=0.90), "deflated Sharpe 0.9000 < limit 0.95"),
    (metrics(mdd=0.25), "max drawdown 0.2500 > limit 0.2"),
    (metrics(cvar=0.12), "CVaR 95% 0.1200 > limit 0.1"),
])
def test_each_limit_breach_is_rejected_with_its_numbers(candidate, reason):
    verdict = evaluate_gate(candidate, metrics(sharpe=1.0), {}, CFG, True)
    assert not verdict.passed
    assert verdict.reasons == (reason,)
    assert f"FAIL: {reason}" in verdict.checks


def test_failed_data_validation_rejects_an_otherwise_good_candidate():
    verdict = evaluate_gate(metrics(), metrics(sharpe=1.0), {}, CFG, False)
    assert not verdict.passed
    assert verdict.reasons == ("data validation failed on the candidate's data; fix the data "
                               "and retrain",)


def test_every_nan_metric_fails_its_rule_with_a_reason():
    verdict = evaluate_gate(metrics(sharpe=NAN, dsr=NAN, mdd=NAN, cvar=NAN), metrics(), {},
                            CFG, True)
    assert not verdict.passed
    assert verdict.reasons == (
        "out-of-sample Sharpe is NaN (missing or not computable)",
        "deflated Sharpe is NaN (missing or not computable)",
        "max drawdown is NaN (missing or not computable)",
        "CVaR 95% is NaN (missing or not computable)",
    )


def test_nan_production_sharpe_fails_instead_of_waving_the_candidate_through():
    verdict = evaluate_gate(metrics(sharpe=3.0), metrics(sharpe=NAN), {}, CFG, True)
    assert not verdict.passed
    assert "no reference: production's Sharpe is NaN" in verdict.reasons[0]


def test_only_nan_baselines_and_no_production_fails_with_the_baseline_names():
    verdict = evaluate_gate(metrics(sharpe=3.0), None, {"flat": metrics(sharpe=NAN)}, CFG, True)
    assert not verdict.passed
    assert "no baseline has a finite Sharpe (flat)" in verdict.reasons[0]


def test_negative_drawdown_or_cvar_is_rejected_as_a_sign_convention_error():
    verdict = evaluate_gate(metrics(mdd=-0.05, cvar=-0.01), metrics(sharpe=1.0), {}, CFG, True)
    assert verdict.reasons == (
        "max drawdown -0.0500 is negative; pass it as a positive fraction of equity",
        "CVaR 95% -0.0100 is negative; pass it as a positive fraction of equity",
    )


def test_deflated_sharpe_outside_zero_one_is_rejected():
    verdict = evaluate_gate(metrics(dsr=1.7), metrics(sharpe=1.0), {}, CFG, True)
    assert verdict.reasons == ("deflated Sharpe 1.700 is not a probability in [0, 1]; check the "
                               "DSR inputs",)


def test_no_production_and_no_baselines_is_refused_before_judging():
    with pytest.raises(OperationalError, match="no production version and no baselines"):
        evaluate_gate(metrics(), None, {}, CFG, True)


def test_gate_metrics_read_their_namespace_and_missing_or_bad_values_are_nan():
    m = GateMetrics.from_metrics({"holdout/sharpe": "1.25", "holdout/deflated_sharpe": 0.96,
                                  "holdout/max_drawdown": "n/a", "wf/cvar_95": 0.01})
    assert (m.sharpe, m.deflated_sharpe) == (1.25, 0.96)
    assert math.isnan(m.max_drawdown)
    assert math.isnan(m.cvar_95)
    assert GateMetrics.from_metrics({"wf/cvar_95": 0.01}, "wf").cvar_95 == 0.01
