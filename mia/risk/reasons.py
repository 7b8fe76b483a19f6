"""Why the gate decided what it did: small records, formatted only when someone reads them.

A :class:`Reason` carries a code, the measured value, the limit it was held against and an
optional note; :attr:`Reason.text` renders the sentence. Building a record costs a few hundred
nanoseconds, formatting it a few microseconds, so the hot path builds and the journal formats.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from mia.risk.inputs import RISK_FEATURES

_EXITS: Final[dict[str, str]] = {
    "regime": "regime changed {note}",
    "adx": "adx_14 = {value:.4g} < {limit:g} in a trend trade",
    "spoofing": "spoofing_score = {value:.4g} > {limit:g}",
    "reversed_imbalance": "orderflow_imbalance against the trade = {value:.4g} < -{limit:g}",
    "opposite_flow": "trade_aggressiveness = {value:.4g} > {limit:g} with imbalance against",
    "news": "news_impact_score against the trade = {value:.4g} < -{limit:g}",
}

TEMPLATES: Final[dict[str, str]] = {
    "halted": "trading HALTED: flatten, no other order",
    "reducing": "trading REDUCING: no new exposure",
    "risk.base": "risk per trade {value:.3%}",
    "risk.hot_atr": "atr_dynamic / atr_14 = {value:.4g} > {limit:g}: risk cut to hot_atr_risk",
    "risk.hot_flow_imbalance": "|orderflow_imbalance| = {value:.4g} > {limit:g}: "
                               "risk cut to hot_flow_risk",
    "risk.hot_flow_aggressiveness": "trade_aggressiveness = {value:.4g} > {limit:g}: "
                                    "risk cut to hot_flow_risk",
    "risk.hot_skew": "iv_skew = {value:.4g} > {limit:g}: risk cut to hot_skew_risk",
    "stop.wide": "iv_term_structure = {value:.4g} > {limit:g}: stop at wide_stop_atr",
    "size.no_atr": "atr_14 unavailable or not positive: no stop to size, no new exposure",
    "size.risk": "risk sizing allows {value:g} contracts (stop {limit:.4g} points)",
    "leverage": "regime {note}: max leverage {value:g}x",
    "leverage.held": "no confirmed regime: the trade keeps its entry regime {note}, "
                     "max leverage {value:g}x",
    "leverage.fallback": "no confirmed regime: {note} leverage {value:g}x (fallback_regime)",
    "leverage.cut_vix": "vix_es_correlation = {value:.4g} > {limit:g}: leverage cut",
    "leverage.cut_cvar": "cvar_loss = {value:.4g} > {limit:g}: leverage cut",
    "leverage.cut_bid_ask": "|bid_ask_imbalance| = {value:.4g} > {limit:g}: leverage cut",
    "cap.notional": "notional cap of {value:g} contracts at {limit:g}x binds",
    "cap.contracts": "max_contracts {value:g} binds",
    "cap.trim": "position above the cap of {value:g} contracts: trimmed",
    "size.zero": "target {value:.4g} x {limit:g} allowed contracts rounds to 0",
    "hold.no_scale_in": "in a trade: size set at entry ({limit:g} allowed), no scale-in",
    "reduce.policy": "policy target {value:.4g} of the {limit:g} allowed at entry: reduce",
    "tp.early": "orderflow_imbalance in the trade's favour = {value:.4g} > {limit:g}: "
                "next take-profit now",
    **{f"exit.{k}": v + ": exit" for k, v in _EXITS.items()},
    **{f"block.{k}": v + ": no entry" for k, v in _EXITS.items()},
    **{f"skip.{n}": f"{n} unavailable (absent or warming up): its rules not applied"
       for n in (*RISK_FEATURES, "cvar_loss")},
}


class Reason(NamedTuple):
    """One reason of a decision.

    :param code: a key of :data:`TEMPLATES` (``risk.hot_atr``, ``exit.news``, ``skip.iv_skew``...).
    :param value: the measured value (NaN when none).
    :param limit: the limit it was held against (NaN when none).
    :param note: extra words, e.g. ``trend -> defensive``.
    """

    code: str
    value: float = math.nan
    limit: float = math.nan
    note: str = ""

    @property
    def text(self) -> str:
        """:return: the reason as a sentence."""
        return TEMPLATES[self.code].format(value=self.value, limit=self.limit, note=self.note)


# Constant reasons, built once: the hot path hands out the same records.
HALTED: Final = Reason("halted")
REDUCING: Final = Reason("reducing")
NO_ATR: Final = Reason("size.no_atr")
SKIP: Final[dict[str, Reason]] = {n: Reason(f"skip.{n}") for n in (*RISK_FEATURES, "cvar_loss")}
