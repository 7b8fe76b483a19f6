"""Turn bars into the machine's input matrix and say which input groups are available."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from mia.data.schema import present_groups
from mia.errors import DataValidationError
from mia.features.ops import INPUTS, N_INPUTS
from mia.types import OPTIONAL_GROUPS

_NS_PER_MINUTE = 60_000_000_000


class Inputs(NamedTuple):
    """The input matrix of one symbol.

    :param matrix: (T, N_INPUTS) float64 in column-major (Fortran) order, so each input is one
        contiguous array for the batch driver; absent groups are NaN. A row is one bar.
    :param ts: bar-close timestamps (UTC).
    :param groups: input groups available (optional groups present, plus ``cross``).
    :param missing: group -> why it is unavailable.
    """

    matrix: np.ndarray
    ts: pd.DatetimeIndex
    groups: frozenset[str]
    missing: dict[str, str]


def build_inputs(bars: pd.DataFrame, cross: pd.DataFrame | None = None) -> Inputs:
    """Inputs from canonical bars of ONE symbol (see :func:`mia.data.schema.validate_bars`).

    :param bars: the symbol's bars, ts increasing.
    :param cross: the other symbol's bars; the ``cross`` group is available only when it has a
        bar at every ``ts`` of ``bars`` (no forward fill across its gaps).
    """
    sym = bars["symbol"].to_numpy()
    if len(sym) == 0 or (sym != sym[0]).any():
        raise DataValidationError(
            "features are built per symbol from at least one bar; pass one symbol's bars"
        )
    n = len(bars)
    values = np.full((N_INPUTS, n), np.nan, dtype=np.float64).T  # (n, N_INPUTS), column-major
    have = set(present_groups(list(bars.columns)))
    missing = {
        g: f"columns {', '.join(cols)} absent from the bars"
        for g, cols in OPTIONAL_GROUPS.items()
        if g not in have
    }
    for j, name in enumerate(INPUTS):
        if name in bars.columns:
            values[:, j] = bars[name].to_numpy(dtype=np.float64)
    ts = pd.DatetimeIndex(bars["ts"])
    values[:, INPUTS.index("ts_minutes")] = ts.asi8 // _NS_PER_MINUTE
    if cross is None:
        missing["cross"] = "no second symbol given"
    else:
        other = pd.Series(cross["close"].to_numpy(), index=pd.DatetimeIndex(cross["ts"]))
        aligned = other.reindex(ts)
        gaps = int(aligned.isna().sum())
        if gaps:
            missing["cross"] = (
                f"{cross['symbol'].iat[0]} has no bar at {gaps} of "
                f"{n} timestamps (cross features need both at every bar)"
            )
        else:
            values[:, INPUTS.index("xclose")] = aligned.to_numpy()
            have.add("cross")
    return Inputs(matrix=values, ts=ts, groups=frozenset(have), missing=missing)
