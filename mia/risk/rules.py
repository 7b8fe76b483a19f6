"""The risk rules of one contract: ``params.yaml: risk`` compiled for the hot path.

:class:`RiskRules` is built once per symbol (contract facts + the risk section + the regime
thresholds of ``features.regime_thresholds``) and passed to every call, so the gate reads plain
attributes instead of walking the config, and every number comes from ``params.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mia.errors import ConfigError
from mia.risk.state import Mode
from mia.types import REGIMES

if TYPE_CHECKING:
    from mia.config import RiskConfig
    from mia.types import ContractSpec

# Integer sizes come from float products (equity x fraction / (points x multiplier)); a product
# that is an integer on paper can land a few ulps below it (0.29 x 100 = 28.999999999999996).
# Flooring x + EPS keeps hand-computed sizes exact without ever rounding up a real fraction.
EPS = 1e-9


def floor_size(x: float) -> int:
    """:param x: a contract count. :return: ``floor(x + EPS)``; 0 when negative or not finite."""
    return max(0, math.floor(x + EPS)) if math.isfinite(x) else 0


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskRules:
    """Everything the risk calls need, as plain attributes.

    :param cfg: the ``risk`` section of ``params.yaml``.
    :param symbol: contract root.
    :param multiplier: USD per index point.
    :param tick_size: price increment, points; stop and take-profit levels are rounded to it.
    :param regime_thresholds: posterior probability above which each regime counts as confirmed
        (``features.regime_thresholds``), in :data:`mia.types.REGIMES` order.
    :param take_profit_done: per take-profit level, the cumulative share of a trade's peak size
        closed once that level is reached.
    :param breaker_modes: the state each breaker trips to.
    """

    cfg: RiskConfig
    symbol: str
    multiplier: float
    tick_size: float
    regime_thresholds: tuple[float, float, float]
    take_profit_done: tuple[float, ...]
    breaker_modes: Mapping[str, Mode]

    @classmethod
    def from_config(cls, cfg: RiskConfig, *, spec: ContractSpec,
                    regime_thresholds: Mapping[str, float]) -> RiskRules:
        """Compile the rules of one contract.

        :param cfg: ``params.risk``.
        :param spec: the contract (``mia.data.contracts.contract("ES")``).
        :param regime_thresholds: ``params.features.regime_thresholds``.
        :return: the rules.
        :raises ConfigError: a regime threshold is missing or the contract is not positive.
        """
        missing = [r for r in REGIMES if r not in regime_thresholds]
        if missing:
            raise ConfigError(f"regime_thresholds lacks {missing}; pass "
                              "params.features.regime_thresholds (one per regime)")
        if not (spec.multiplier > 0 and spec.tick_size > 0):
            raise ConfigError(f"contract {spec.symbol}: multiplier {spec.multiplier} and tick "
                              f"{spec.tick_size} must be > 0")
        done, total = [], 0.0
        for share in cfg.take_profit_fractions:
            total += share
            done.append(total)
        trend, range_, defensive = (float(regime_thresholds[r]) for r in REGIMES)
        return cls(cfg=cfg, symbol=spec.symbol, multiplier=float(spec.multiplier),
                   tick_size=float(spec.tick_size), regime_thresholds=(trend, range_, defensive),
                   take_profit_done=tuple(done),
                   breaker_modes={name: Mode[action.upper()]
                                  for name, action in cfg.breaker_actions.items()})

    def round_tick(self, price: float) -> float:
        """:param price: a level in points. :return: the nearest tick price."""
        return round(price / self.tick_size) * self.tick_size

    def remaining_after(self, peak_qty: int, level: int) -> int:
        """Contracts left once take-profit ``level`` is reached (round half up, so one contract
        is closed at the first level rather than never).

        :param peak_qty: the trade's largest size, contracts.
        :param level: index into ``take_profit_r``.
        :return: the size the ladder allows after that level, >= 0.
        """
        return max(0, peak_qty - math.floor(peak_qty * self.take_profit_done[level] + 0.5 + EPS))
