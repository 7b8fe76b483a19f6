"""The bar's feature values the risk rules read, and how they are picked out of a feature row.

The rules use named features of reference.md (``atr_14``, ``atr_dynamic``, flow, options, VIX,
news, ``adx_14``, regime probabilities). They read *raw* values — points, fractions,
probabilities — so the row must come from ``mia.features`` before ``mia.features.normalize``.
A feature the row does not carry (OHLCV-only data, a group not built) or one still warming up
(NaN) is *unavailable*: its rules do not trigger and the gate's reasons say so. ``atr_14`` is
the exception that blocks: without it no stop can be sized, so no new exposure is taken.

``cvar_loss`` is no feature: it is the CVaR of recent trade losses as a fraction of equity
(reference "cut to 1x when ... cvar loss > 0.1"), measured by whoever keeps the trade record
(the executor's book, the backtest); set it with ``features._replace(cvar_loss=x)``.

Note the model's bundle may select only 150 features: the caller builds the ones listed in
:data:`RISK_FEATURES` as well (they are cheap), or the rules that need them stay off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

import numpy as np

_NAN: Final[float] = math.nan


class RiskFeatures(NamedTuple):
    """Raw values of the features the rules read; NaN = unavailable at this bar.

    Units: ``atr_14`` / ``atr_dynamic`` in points; imbalances, aggressiveness, correlation and
    probabilities as fractions; ``iv_*`` as implied-volatility fractions (``iv_skew`` per point
    of strike); ``adx_14`` 0-100; ``news_impact_score`` signed; ``cvar_loss`` equity fraction.
    """

    atr_14: float = _NAN
    atr_dynamic: float = _NAN
    orderflow_imbalance: float = _NAN
    bid_ask_imbalance: float = _NAN
    trade_aggressiveness: float = _NAN
    iv_skew: float = _NAN
    iv_term_structure: float = _NAN
    vix_es_correlation: float = _NAN
    spoofing_score: float = _NAN
    news_impact_score: float = _NAN
    adx_14: float = _NAN
    regime_p_trend: float = _NAN
    regime_p_range: float = _NAN
    regime_p_defensive: float = _NAN
    cvar_loss: float = _NAN

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> RiskFeatures:
        """:param values: feature name -> raw value; other names are ignored.
        :return: the record, NaN where ``values`` has no entry."""
        return cls(*(float(values.get(name, _NAN)) for name in cls._fields))


# the feature names a FeatureTap looks for (cvar_loss is supplied by the caller, module doc)
RISK_FEATURES: Final[tuple[str, ...]] = RiskFeatures._fields[:-1]


class FeatureTap:
    """Picks :class:`RiskFeatures` out of feature rows laid out as ``names``.

    Built once per feature spec; :meth:`read` then costs one ``take`` on the row.

    :param names: the row's column names in order (``FeatureSpec.names``).
    """

    __slots__ = ("_absent_pos", "_idx", "absent", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        col = {n: i for i, n in enumerate(self.names)}
        idx = [col.get(name, 0) for name in RISK_FEATURES]  # 0: a placeholder, overwritten
        self._idx = np.asarray(idx, dtype=np.intp)
        self._absent_pos = tuple(j for j, n in enumerate(RISK_FEATURES) if n not in col)
        self.absent: tuple[str, ...] = tuple(RISK_FEATURES[j] for j in self._absent_pos)

    def read(self, row: np.ndarray, cvar_loss: float = _NAN) -> RiskFeatures:
        """:param row: one raw feature row (float32 or float64), laid out as ``names``.
        :param cvar_loss: CVaR of recent trade losses, equity fraction, or NaN if not tracked.
        :return: the risk features of that row."""
        values = row.take(self._idx).tolist()
        for j in self._absent_pos:
            values[j] = _NAN
        values.append(cvar_loss)
        return RiskFeatures._make(values)
