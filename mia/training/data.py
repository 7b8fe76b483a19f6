"""What a walk-forward trains on: one symbol's selected features, prices and lineage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mia.envs.market import Market
from mia.errors import OperationalError
from mia.features.normalize import Normalizer
from mia.features.spec import FeatureSpec
from mia.training.layout import Layout
from mia.types import ContractSpec


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    """One symbol's table, row-aligned: raw features of the selected spec and the bars' prices.

    :param symbol: the symbol.
    :param features: (T, F) float32 raw features, NaN before each feature's warm-up.
    :param spec: the selected FeatureSpec (its order is the model's input order).
    :param open: (T,) bar opens, points. ``close`` likewise.
    :param spread: (T,) bid-ask spread per bar in points, or None (cost model default).
    :param contract: the contract (multiplier, tick).
    :param layout: selection / walk-forward / holdout rows (mia.training.layout).
    :param data_hash: content hash of the bars (lineage).
    :param ts: (T,) int64 bar-close times, ns since the epoch UTC (the risk engine's clock in a
        backtest), or None where no backtest runs on the table.
    :param high: (T,) bar highs, points (stops inside a bar), or None. ``low`` likewise.
    """

    symbol: str
    features: np.ndarray
    spec: FeatureSpec
    open: np.ndarray
    close: np.ndarray
    spread: np.ndarray | None
    contract: ContractSpec
    layout: Layout
    data_hash: str
    ts: np.ndarray | None = None
    high: np.ndarray | None = None
    low: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = len(self.close)
        if self.features.shape != (t, len(self.spec.names)) or len(self.open) != t:
            raise OperationalError(
                f"{self.symbol}: features {self.features.shape}, {len(self.open)} opens and {t} "
                f"closes for a spec of {len(self.spec.names)} features; rebuild features and "
                "selection from the same bars"
            )
        if self.layout.n_rows != t:
            raise OperationalError(f"{self.symbol}: a layout of {self.layout.n_rows} rows for "
                                   f"{t} bars")

    def market(self, normalizer: Normalizer) -> Market:
        """:param normalizer: fitted on a fold's train rows. :return: the env's input record."""
        return Market(features=normalizer.transform(self.features), names=self.spec.names,
                      open=self.open, close=self.close, spread=self.spread, spec=self.contract,
                      bound=normalizer.clip)
