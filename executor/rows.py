"""A live bar -> the feature machine's input row (mia.features.ops.INPUTS order).

The batch path builds the same rows from a frame (mia.features.inputs.build_inputs); here one
bar at a time, with the other symbol's close of the same minute for the cross features. Columns
of an optional group the bar does not carry stay NaN (the bundle's spec only holds features whose
groups the training data had; a missing group at live time is a data fault the loop reports).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from mia.features.ops import INPUTS
from mia.types import Bar

_NS_PER_MINUTE: Final[int] = 60_000_000_000
_COL: Final[dict[str, int]] = {name: i for i, name in enumerate(INPUTS)}
_BASE: Final[tuple[tuple[str, int], ...]] = tuple(
    (name, _COL[name]) for name in ("open", "high", "low", "close", "volume"))


def ts_ns(bar: Bar) -> int:
    """:return: the bar's close time, ns since the epoch UTC."""
    return int(bar.ts.timestamp()) * 1_000_000_000 + bar.ts.microsecond * 1000


def input_row(bar: Bar, cross_close: float | None, out: np.ndarray | None = None) -> np.ndarray:
    """Fill an input row from a bar.

    :param bar: the bar (optional groups in ``bar.extra``).
    :param cross_close: the other symbol's close at the same ``ts``, or None (cross features
        then see NaN).
    :param out: a row to reuse (NaN-filled here), or None for a new one.
    :return: (N_INPUTS,) float64.
    """
    row = np.full(len(INPUTS), np.nan) if out is None else out
    if out is not None:
        row.fill(np.nan)
    for name, j in _BASE:
        row[j] = getattr(bar, name)
    if bar.extra:
        for name, value in bar.extra.items():
            k = _COL.get(name)
            if k is not None:
                row[k] = value
    row[_COL["ts_minutes"]] = ts_ns(bar) // _NS_PER_MINUTE
    if cross_close is not None:
        row[_COL["xclose"]] = cross_close
    return row
