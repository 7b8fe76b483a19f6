"""Shared helpers of the risk tests: the repo's params.yaml rules and feature records."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mia.config import load_params
from mia.data.contracts import contract
from mia.risk import RiskFeatures, RiskRules

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
PARAMS = load_params(REPO_PARAMS, env={})

TREND: dict[str, float] = {"regime_p_trend": 0.9, "regime_p_range": 0.05,
                           "regime_p_defensive": 0.05}
RANGE: dict[str, float] = {"regime_p_trend": 0.1, "regime_p_range": 0.8,
                           "regime_p_defensive": 0.1}
DEFENSIVE: dict[str, float] = {"regime_p_trend": 0.05, "regime_p_range": 0.05,
                               "regime_p_defensive": 0.9}
# every feature present and quiet: no rule triggers (iv_skew as in the synthetic market)
QUIET: dict[str, float] = {
    "atr_14": 4.0, "atr_dynamic": 4.0, "orderflow_imbalance": 0.05, "bid_ask_imbalance": 0.05,
    "trade_aggressiveness": 0.3, "iv_skew": -1e-5, "iv_term_structure": 0.01,
    "vix_es_correlation": -0.7, "spoofing_score": 0.1, "news_impact_score": 0.0,
    "adx_14": 30.0, "cvar_loss": 0.02, **TREND,
}


# The hand-computed cases (e.g. 6 ES contracts for a 2 ATR stop) need room above the repo's
# limit of 5 (which follows env.max_contracts); the cap itself is tested with explicit values.
MAX_CONTRACTS = 10


def rules(symbol: str = "ES", **overrides: Any) -> RiskRules:
    """:return: the repo's risk rules for ``symbol`` with a limit of :data:`MAX_CONTRACTS`
    contracts, then ``overrides`` of risk keys."""
    cfg = dataclasses.replace(PARAMS.risk, **{"max_contracts": MAX_CONTRACTS, **overrides})
    return RiskRules.from_config(cfg, spec=contract(symbol),
                                 regime_thresholds=PARAMS.features.regime_thresholds)


def quiet(**kw: float) -> RiskFeatures:
    """:return: all features present and quiet, then ``kw`` applied."""
    return RiskFeatures(**{**QUIET, **kw})


def codes(reasons: Any) -> list[str]:
    """:return: the reason codes of a decision or a reason list."""
    return [r.code for r in getattr(reasons, "reasons", reasons)]
