"""Transaction costs of futures market orders: commission, half the bid-ask spread, slippage.

One module for every place that fills an order: the training env, the backtest simulator and the
live executor's paper broker. Pure python + numpy (the executor imports it).

Units: prices and spreads in index points, money in USD, quantities in signed contracts
(``+`` buys, ``-`` sells).

**Fill.** A market order of ``q`` contracts against a reference price ``P`` (the open of the fill
bar in the env and the backtest; the live mid in the paper broker) fills at::

    fill = P + sign(q) * impact,    impact = spread / 2 + slippage_ticks * tick_size

and pays ``commission_per_side`` per contract. Against trading at ``P`` it therefore costs::

    cost(q) = |q| * (commission_per_side + impact * multiplier)            [USD]

so PnL computed with fill prices and commissions equals PnL at reference prices minus ``cost``
(held by a test). The env and the simulator use the second form: reference-price PnL minus a
precomputed USD cost per contract per bar (:meth:`CostModel.unit_costs`).

**Spread.** The bar's ``bid_ask_spread`` column (points) when the bars carry the order-flow group,
else ``default_spread_ticks * tick_size`` from ``params.yaml`` (one tick is the usual ES / MNQ
spread in liquid hours). The env and the simulator charge the spread of the *fill* bar ``t + 1``:
it is realised cost accounting, never an input to the decision taken at ``t``.

**Where the reference's ``slippage_estimate = bid_ask_spread x order_volume`` enters.** The
reference nets it out of the reward (``reward_net = raw_reward - slippage_estimate``, plus
commissions). Applied to *our* order, ``order_volume`` is our own size ``|q|``, and
``bid_ask_spread x |q|`` is the spread a round trip pays: half on the way in, half on the way
out. We charge it per fill (``spread / 2 x |q|`` at each side, times the multiplier for USD), so a
position opened and closed pays exactly ``slippage_estimate x multiplier`` in spread cost, and
``slippage_ticks`` adds market impact beyond the touch. The registry's ``slippage_estimate``
*feature* multiplies the spread by the bars' ``order_volume`` column (the market's resting size):
it is something the agent observes, not a cost we pay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mia.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from mia.config import EnvConfig
    from mia.types import ContractSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class CostModel:
    """Costs of one contract's market orders.

    :param multiplier: USD per index point (ES 50, MNQ 2).
    :param tick_size: minimum price increment, points.
    :param commission_per_side: USD per contract per fill.
    :param slippage_ticks: ticks the fill moves against the order beyond half the spread.
    :param default_spread: full bid-ask spread in points used when no bar spread is given.
    """

    multiplier: float
    tick_size: float
    commission_per_side: float
    slippage_ticks: float
    default_spread: float

    def __post_init__(self) -> None:
        bad = [f"{name}={value!r}" for name, value, positive in (
            ("multiplier", self.multiplier, True), ("tick_size", self.tick_size, True),
            ("commission_per_side", self.commission_per_side, False),
            ("slippage_ticks", self.slippage_ticks, False),
            ("default_spread", self.default_spread, False),
        ) if not math.isfinite(value) or value < 0 or (positive and value == 0)]
        if bad:
            raise ConfigError(f"cost model: {', '.join(bad)}; multiplier and tick_size must be "
                              "> 0, the costs finite and >= 0 (params.yaml env section)")

    @classmethod
    def from_config(cls, spec: ContractSpec, cfg: EnvConfig) -> CostModel:
        """Build the cost model of a contract from the ``env`` section of ``params.yaml``.

        :param spec: the contract (``mia.data.contracts.contract("ES")``).
        :param cfg: env config: ``commission_per_side``, ``slippage_ticks``,
            ``default_spread_ticks``.
        :return: the cost model.
        """
        return cls(multiplier=float(spec.multiplier), tick_size=float(spec.tick_size),
                   commission_per_side=float(cfg.commission_per_side),
                   slippage_ticks=float(cfg.slippage_ticks),
                   default_spread=float(cfg.default_spread_ticks) * float(spec.tick_size))

    @property
    def slippage(self) -> float:
        """Points a fill moves against the order beyond half the spread."""
        return self.slippage_ticks * self.tick_size

    def impact(self, spread: float | None = None) -> float:
        """Points a fill moves against the order: half the spread plus slippage.

        :param spread: the full bid-ask spread in points; ``None`` uses the default.
        :return: impact in points (>= 0).
        :raises DataValidationError: the spread is negative or not finite.
        """
        s = self.default_spread if spread is None else float(spread)
        if not (math.isfinite(s) and s >= 0.0):
            raise DataValidationError(f"bid_ask_spread {spread!r} must be finite and >= 0 "
                                      "(points); fix the bar or pass None for the default")
        return 0.5 * s + self.slippage

    def fill_price(self, reference: float, quantity: float, spread: float | None = None) -> float:
        """Price a market order fills at: the reference moved against the order.

        :param reference: reference price in points (bar open, or the live mid).
        :param quantity: signed contracts; ``+`` buys (fills higher), ``-`` sells (lower), ``0``
            fills at the reference.
        :param spread: full bid-ask spread in points; ``None`` uses the default.
        :return: fill price in points (not rounded to the tick: impact is an expectation).
        """
        side = (quantity > 0) - (quantity < 0)
        return float(reference) + side * self.impact(spread)

    def cost(self, quantity: float, spread: float | None = None) -> float:
        """USD cost of a market order against trading at the reference price.

        :param quantity: signed contracts traded (the position change).
        :param spread: full bid-ask spread in points; ``None`` uses the default.
        :return: ``|quantity| * (commission_per_side + impact * multiplier)``, USD.
        """
        return abs(float(quantity)) * (self.commission_per_side
                                       + self.impact(spread) * self.multiplier)

    def unit_costs(self, n_bars: int, spread: np.ndarray | None = None) -> np.ndarray:
        """USD cost of trading one contract at each bar: the per-bar form of :meth:`cost`.

        :param n_bars: number of bars.
        :param spread: (n_bars,) full bid-ask spread per bar in points, or ``None`` for the
            default spread at every bar.
        :return: (n_bars,) float64, USD per contract traded at that bar.
        :raises DataValidationError: ``spread`` has the wrong length, a negative or a non-finite
            value (the message names the first bad row).
        """
        if spread is None:
            return np.full(n_bars, self.cost(1.0), dtype=np.float64)
        s = np.asarray(spread, dtype=np.float64)
        if s.shape != (n_bars,):
            raise DataValidationError(f"bid_ask_spread has shape {s.shape}, expected ({n_bars},)"
                                      ": one spread per bar")
        bad = ~(np.isfinite(s) & (s >= 0.0))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataValidationError(f"bid_ask_spread at row {row} is {float(s[row])}; spreads "
                                      "must be finite and >= 0 points: fix or drop those bars")
        return self.commission_per_side + (0.5 * s + self.slippage) * self.multiplier
