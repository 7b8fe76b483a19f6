"""Small typed records that cross module boundaries.

Leaf module: imports nothing from :mod:`mia`. Column names and groups of a bar are defined here so
that the data layer, the features and the executor agree on them (design.md section 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal, NamedTuple

Symbol = Literal["ES", "MNQ"]
SYMBOLS: Final[tuple[str, ...]] = ("ES", "MNQ")

Regime = Literal["trend", "range", "defensive"]
REGIMES: Final[tuple[str, ...]] = ("trend", "range", "defensive")

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "ts", "symbol", "open", "high", "low", "close", "volume",
)
# Optional input groups: each is all-or-nothing in a frame. A feature whose group is absent is
# not built (the feature build report says which and why).
OPTIONAL_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "orderflow": ("bid_volume", "ask_volume", "taker_volume", "bid_ask_spread", "order_volume"),
    "options": ("iv_call", "iv_put", "strike", "iv_1m", "iv_3m"),
    "gamma": ("max_pain", "zero_gamma", "call_wall", "net_gamma"),
    "vix": ("vix",),
    "news": ("news_impact",),
}
# Columns that are volumes (non-negative) and prices (positive).
VOLUME_COLUMNS: Final[tuple[str, ...]] = (
    "volume", "bid_volume", "ask_volume", "taker_volume", "order_volume",
)
PRICE_COLUMNS: Final[tuple[str, ...]] = (
    "open", "high", "low", "close", "strike", "max_pain", "zero_gamma", "call_wall",
)


class Bar(NamedTuple):
    """One bar of one symbol; ``ts`` is the bar's close, tz-aware UTC.

    Optional groups travel in ``extra`` (column name -> value) so a Bar stays cheap to build.
    """

    ts: datetime
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    extra: dict[str, float] | None = None


class ContractSpec(NamedTuple):
    """Exchange facts of one futures contract.

    :param symbol: root symbol, e.g. ``ES``.
    :param multiplier: dollars per index point.
    :param tick_size: minimum price increment in points.
    """

    symbol: str
    multiplier: float
    tick_size: float

    @property
    def tick_value(self) -> float:
        """:return: dollars per tick."""
        return self.multiplier * self.tick_size


class RangeHash(NamedTuple):
    """Content hash of the bars of one symbol over a time range.

    :param symbol: the symbol hashed.
    :param rows: number of bars hashed.
    :param sha256: hex digest of the canonical bytes of those bars.
    """

    symbol: str
    rows: int
    sha256: str
