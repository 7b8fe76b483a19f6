"""The live row's normalisation, compiled (``Normalizer.transform_into``).

Kept apart so that importing the normaliser stays pure numpy (tests/unit/test_imports.py): the
training env and the backtest never pay numba's import.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path


@njit(cache=JIT_CACHE)
def normalise_into(x: np.ndarray, center: np.ndarray, scale: np.ndarray, clip: float,
                    out: np.ndarray) -> int:
    # Normalizer.transform's operations in its order, (x - c) / s then the clip, in float64,
    # rounded once to float32: the same bits as the batch path. :return: the first non-finite
    # input's index, or -1 (an infinite input is refused, never clipped into a number).
    for j in range(x.shape[0]):
        v = x[j]
        if not np.isfinite(v):
            return j
        z = (v - center[j]) / scale[j]
        if z > clip:
            z = clip
        if z < -clip:
            z = -clip
        out[j] = z
    return -1
