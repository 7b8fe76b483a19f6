"""Exits at market: regime change, microstructure warnings, bad news (reference.md lines 55-57).

Each rule reads the bar's features for a trade of ``side`` (+1 long, -1 short) and fires when
the market turned against that side:

======================  ==============================================================
code (key)              fires when
======================  ==============================================================
``regime``              the confirmed regime differs from the entry regime (an entry
                        without a confirmed regime exits only on ``defensive``)
``adx`` (exit_adx)      a trend trade and adx_14 < ``exit_adx``
``spoofing``            spoofing_score > ``exit_spoofing`` (either side)
``reversed_imbalance``  side x orderflow_imbalance < -``exit_reversed_imbalance``
``opposite_flow``       trade_aggressiveness > ``exit_opposite_aggressiveness`` and
                        side x orderflow_imbalance < 0
``news``                side x news_impact_score < -``exit_news_impact``
======================  ==============================================================

Signs: bad news (< -0.5) exits a long; for a short the same rule reads good news (> +0.5) as its
bad news — the defensive setup of the reference *enters* shorts on bad news. The same rules,
evaluated for a trade not yet opened (entry regime = the bar's regime), block an entry they
would exit at the next bar: entering into a warning only pays the round trip.
"""

from __future__ import annotations

from typing import Final

from mia.risk.inputs import RiskFeatures
from mia.risk.reasons import Reason
from mia.risk.rules import RiskRules

_CODES: Final[dict[str, tuple[str, ...]]] = {
    prefix: tuple(f"{prefix}.{k}" for k in ("regime", "adx", "spoofing", "reversed_imbalance",
                                             "opposite_flow", "news"))
    for prefix in ("exit", "block")
}


def exit_reasons(rules: RiskRules, side: int, f: RiskFeatures, regime: str | None,
                 entry_regime: str | None, out: list[Reason], *, entry: bool = False) -> bool:
    """Evaluate every exit rule for a trade of ``side``.

    :param rules: the rules.
    :param side: +1 long, -1 short.
    :param f: the bar's features.
    :param regime: the bar's confirmed regime (``None``: none confirmed).
    :param entry_regime: the regime the trade was opened in (for a prospective entry, the bar's).
    :param out: a reason is appended for each rule that fires.
    :param entry: ``True`` for a prospective entry: codes are ``block.*`` instead of ``exit.*``.
    :return: whether any rule fired.
    """
    c = rules.cfg
    regime_c, adx_c, spoof_c, rev_c, flow_c, news_c = _CODES["block" if entry else "exit"]
    n = len(out)
    if regime is not None and regime != entry_regime and (
            entry_regime is not None or regime == "defensive"):
        out.append(Reason(regime_c, note=f"{entry_regime or 'unconfirmed'} -> {regime}"))
    if entry_regime == "trend" and f.adx_14 < c.exit_adx:
        out.append(Reason(adx_c, f.adx_14, c.exit_adx))
    if f.spoofing_score > c.exit_spoofing:
        out.append(Reason(spoof_c, f.spoofing_score, c.exit_spoofing))
    flow = side * f.orderflow_imbalance
    if flow < -c.exit_reversed_imbalance:
        out.append(Reason(rev_c, flow, c.exit_reversed_imbalance))
    if f.trade_aggressiveness > c.exit_opposite_aggressiveness and flow < 0.0:
        out.append(Reason(flow_c, f.trade_aggressiveness, c.exit_opposite_aggressiveness))
    news = side * f.news_impact_score
    if news < -c.exit_news_impact:
        out.append(Reason(news_c, news, c.exit_news_impact))
    return len(out) > n
