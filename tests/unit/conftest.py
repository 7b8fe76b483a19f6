from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from mia.data.calendar import session_index


def make_bars(
    start: date = date(2024, 1, 2),
    end: date = date(2024, 1, 3),
    symbol: str = "ES",
    seed: int = 0,
    groups: bool = False,
) -> pd.DataFrame:
    """Small valid bars built by hand (independent of the synthetic market)."""
    ts = session_index(start, end)
    rng = np.random.default_rng(seed)
    close = 4800 + np.cumsum(rng.normal(0, 0.5, len(ts))).round(2)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.25
    low = np.minimum(open_, close) - 0.25
    frame = pd.DataFrame(
        {
            "ts": ts,
            "symbol": symbol,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(0, 500, len(ts)).astype(float),
        }
    )
    if groups:
        v = frame["volume"]
        frame = frame.assign(
            bid_volume=v * 0.5,
            ask_volume=v * 0.5,
            taker_volume=v * 0.3,
            bid_ask_spread=0.25,
            order_volume=10.0,
        )
    return frame


@pytest.fixture
def bars() -> pd.DataFrame:
    return make_bars()
