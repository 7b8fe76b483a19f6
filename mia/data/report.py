"""Human summary of what the raw store holds (used by ``mia data …`` and ``mia demo``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

import numpy as np
import pandas as pd

from mia.data.calendar import trade_dates
from mia.data.schema import present_groups
from mia.data.store import BarStore

_MINUTES_PER_YEAR = 252 * 23 * 60


class SymbolStats(NamedTuple):
    """One symbol's bars over a range, summarised."""

    symbol: str
    sessions: int
    bars: int
    first: pd.Timestamp
    last: pd.Timestamp
    open: float
    close: float
    ann_vol: float
    volume_per_session: float
    groups: tuple[str, ...]
    sha256: str
    returns: pd.Series


def summarize(store: BarStore, symbol: str, start: date | None, end: date | None) -> SymbolStats:
    """Statistics of one symbol's bars over trade dates ``start..end`` (None: unbounded).

    :param store: the raw store.
    :param symbol: the symbol.
    """
    bars, digest = store.read_hashed(symbol, start, end)
    close = bars["close"].to_numpy()
    logret = np.diff(np.log(close))
    sessions = len(np.unique(trade_dates(bars["ts"])))
    return SymbolStats(
        symbol=symbol,
        sessions=sessions,
        bars=len(bars),
        first=bars["ts"].iat[0],
        last=bars["ts"].iat[-1],
        open=float(bars["open"].iat[0]),
        close=float(close[-1]),
        ann_vol=float(np.std(logret) * np.sqrt(_MINUTES_PER_YEAR)) if len(logret) > 1 else 0.0,
        volume_per_session=float(bars["volume"].sum() / max(sessions, 1)),
        groups=present_groups(list(bars.columns)),
        sha256=digest.sha256,
        returns=pd.Series(logret, index=bars["ts"].iloc[1:].to_numpy()),
    )


def print_summary(
    store: BarStore, symbols: Sequence[str], start: date | None, end: date | None
) -> None:
    """Print a table of the symbols' holdings, and their return correlation when several.

    :param store: the raw store.
    :param symbols: symbols to show.
    :param start: first trade date or None for all.
    :param end: last trade date or None for all.
    """
    rows = [summarize(store, s, start, end) for s in symbols]
    print(
        f"{'symbol':<7}{'sessions':>9}{'bars':>10}  {'first bar (UTC)':<16}  {'last bar (UTC)':<16}"
        f"{'open → close':>24}{'ann.vol':>9}{'vol/session':>13}  {'sha256':<12}  groups"
    )
    for r in rows:
        print(
            f"{r.symbol:<7}{r.sessions:>9}{r.bars:>10}  {r.first:%Y-%m-%d %H:%M}  "
            f"{r.last:%Y-%m-%d %H:%M}{r.open:>12.2f} → {r.close:<9.2f}{r.ann_vol:>9.1%}"
            f"{r.volume_per_session:>13,.0f}  {r.sha256[:12]}  "
            f"{', '.join(r.groups) or 'OHLCV only'}"
        )
    if len(rows) > 1:
        rets = pd.concat([r.returns for r in rows], axis=1, join="inner")
        corr = np.corrcoef(rets.to_numpy().T)
        pairs = [
            f"{rows[i].symbol}–{rows[j].symbol} {corr[i, j]:.2f}"
            for i in range(len(rows))
            for j in range(i + 1, len(rows))
        ]
        print(f"1-minute return correlation: {', '.join(pairs)}")
