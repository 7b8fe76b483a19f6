"""Compiled QR-DQN vote kernels, one code path for the vectorised vote and the live one.

The live vote (:func:`mia.ensemble.vote.decide_one`) reads QR-DQN's (n_quantiles, 3) quantiles
once per bar; numpy's mean / argmax / median on so small an array cost ~10 us a bar, these
~0.3 us. The vectorised vote loops the same kernels over its rows, so both paths agree exactly
by construction (tests/unit/ensemble/test_vote.py holds them equal).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path


@njit(cache=JIT_CACHE)
def best_action(q: np.ndarray) -> int:
    """:param q: (n_quantiles, 3) quantiles of short, flat, long.
    :return: the action with the highest mean (the first on a tie, as ``argmax``); sums are
        accumulated in float64."""
    best, best_sum = 0, 0.0
    for a in range(q.shape[1]):
        s = 0.0
        for i in range(q.shape[0]):
            s += q[i, a]
        if a == 0 or s > best_sum:
            best, best_sum = a, s
    return best


@njit(cache=JIT_CACHE)
def side_share(q: np.ndarray, side: int) -> float:
    """:param q: (n_quantiles, 3). :param side: 0 short, 1 flat, 2 long.
    :return: share of ``side``'s quantiles above the flat action's median (1.0 for flat)."""
    if side == 1:
        return 1.0
    n = q.shape[0]
    flat = np.sort(q[:, 1].astype(np.float64))
    median = float(flat[n // 2]) if n % 2 == 1 else 0.5 * float(flat[n // 2 - 1] + flat[n // 2])
    above = 0
    for i in range(n):
        if q[i, side] > median:
            above += 1
    share: float = above / n
    return share


@njit(cache=JIT_CACHE)
def best_actions(q: np.ndarray) -> np.ndarray:
    """:param q: (rows, n_quantiles, 3). :return: (rows,) :func:`best_action` of each row."""
    out = np.empty(q.shape[0], dtype=np.int64)
    for r in range(q.shape[0]):
        out[r] = best_action(q[r])
    return out


@njit(cache=JIT_CACHE)
def side_shares(q: np.ndarray, side: np.ndarray) -> np.ndarray:
    """:param q: (rows, n_quantiles, 3). :param side: (rows,) sides.
    :return: (rows,) :func:`side_share` of each row."""
    out = np.empty(q.shape[0], dtype=np.float64)
    for r in range(q.shape[0]):
        out[r] = side_share(q[r], side[r])
    return out
