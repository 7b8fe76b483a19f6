"""The risk keys of params.yaml: ranges and cross-checks name the key and the fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from mia.config import parse_params
from mia.data.contracts import contract
from mia.errors import ConfigError
from mia.risk import Mode, RiskRules
from tests.unit.risk._rules import PARAMS, REPO_PARAMS

RAW = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))


def _errors(**risk: Any) -> list[str]:
    doc = copy.deepcopy(RAW)
    doc["risk"].update(risk)
    with pytest.raises(ConfigError) as info:
        parse_params(doc, "params.yaml")
    return str(info.value).splitlines()


@pytest.mark.parametrize(("risk", "message"), [
    ({"hot_atr_risk": 0.02}, "risk.hot_atr_risk: 0.02 is above risk_per_trade 0.01"),
    ({"loss_breaker": 0.03}, "risk.loss_breaker: 0.03 must be below daily_loss_limit 0.03"),
    ({"exit_adx": 30.0}, "risk.exit_adx: 30.0 is above trend_adx 25.0"),
    ({"take_profit_fractions": [1.0]}, "risk.take_profit_fractions: need one share per"),
    ({"take_profit_fractions": [0.6, 0.6]}, "risk.take_profit_fractions: shares sum to 1.2"),
    ({"breaker_actions": {"loss": "halted"}}, "risk.breaker_actions: keys must be exactly"),
    ({"latency_breaches": 0}, "risk.latency_breaches: 0 is out of range; expected > 0"),
    ({"trend_adx": 120.0}, "risk.trend_adx: 120.0 is out of range; expected [0, 100]"),
])
def test_bad_risk_key_is_named_with_its_fix(risk, message):
    assert any(message in e for e in _errors(**risk))


def test_breaker_action_typo_lists_the_choices():
    actions = {**RAW["risk"]["breaker_actions"], "latency": "halt"}
    (error,) = _errors(breaker_actions=actions)
    assert "risk.breaker_actions.latency: expected 'reducing' or 'halted'" in error


def test_fallback_regime_must_be_a_regime():
    (error,) = _errors(fallback_regime="panic")
    assert "risk.fallback_regime: expected 'trend' or 'range' or 'defensive'" in error


def test_rules_compile_modes_ladder_and_contract():
    r = RiskRules.from_config(PARAMS.risk, spec=contract("MNQ"),
                              regime_thresholds=PARAMS.features.regime_thresholds)
    assert (r.symbol, r.multiplier, r.tick_size) == ("MNQ", 2.0, 0.25)
    assert r.regime_thresholds == (0.7, 0.6, 0.7)
    assert r.take_profit_done == (0.5, 1.0)
    assert r.breaker_modes["data_quality"] is Mode.HALTED
    assert r.breaker_modes["volatility"] is Mode.REDUCING
    with pytest.raises(ConfigError, match="regime_thresholds lacks"):
        RiskRules.from_config(PARAMS.risk, spec=contract("ES"), regime_thresholds={"trend": 0.7})
