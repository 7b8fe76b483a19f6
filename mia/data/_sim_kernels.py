"""Numba kernels of the synthetic market: only the recursions live here.

Everything that is not a recursion (draws, seasonality, order flow, options) is vectorised numpy in
:mod:`mia.data.synthetic`. Each kernel is a plain loop over bars so numba compiles it once
(``cache=True`` keeps the machine code next to this file between processes).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path


@njit(cache=JIT_CACHE)
def markov_chain(u: np.ndarray, trans_cum: np.ndarray, init: int) -> np.ndarray:
    """Path of a finite Markov chain, one step per bar.

    :param u: uniform draws in [0, 1), one per bar; ``u[0]`` is unused (the path starts at init).
    :param trans_cum: row-wise cumulative transition matrix, shape (k, k), last column 1.
    :param init: state of bar 0.
    :return: int8 states, one per bar.
    """
    n = u.shape[0]
    k = trans_cum.shape[0]
    out = np.empty(n, np.int8)
    s = init
    for t in range(n):
        if t > 0:
            j = 0
            # the last column is 1 and u < 1, so the scan stops inside the row
            while j < k - 1 and u[t] >= trans_cum[s, j]:
                j += 1
            s = j
        out[t] = s
    return out


@njit(cache=JIT_CACHE)
def regime_garch(
    state: np.ndarray,
    target: np.ndarray,
    shock2: np.ndarray,
    alpha: float,
    beta: float,
    blend: float,
    cap: float,
) -> np.ndarray:
    """Per-minute volatility: a regime level times a GARCH(1,1) multiplier with mean about 1.

    ``g[t+1] = (1 - alpha - beta) + (alpha * min(shock2[t], cap) + beta) * g[t]`` (Bollerslev
    1986, written on a unit-mean multiplier). The regime level moves towards the target of the
    current state by ``blend`` per bar, so a regime switch raises volatility over tens of minutes
    rather than in one bar.

    :param state: regime state per bar (indexes ``target``).
    :param target: per-minute volatility of each state.
    :param shock2: squared standardised shock of each bar (diffusion plus jump).
    :param alpha: ARCH weight.
    :param beta: GARCH weight; ``alpha + beta < 1``.
    :param blend: fraction of the gap to the regime target closed each bar.
    :param cap: cap on one bar's squared shock so a single jump cannot explode the variance.
    :return: volatility of each bar, known before the bar's own shock (no look-ahead).
    """
    n = state.shape[0]
    out = np.empty(n)
    g = 1.0
    level = target[state[0]]
    for t in range(n):
        level += blend * (target[state[t]] - level)
        out[t] = level * math.sqrt(g)
        g = (1.0 - alpha - beta) + (alpha * min(shock2[t], cap) + beta) * g
    return out


@njit(cache=JIT_CACHE)
def price_path(
    start_ticks: int,
    tick: float,
    ret: np.ndarray,
    gap: np.ndarray,
    revert: np.ndarray,
    kappa: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Open and close of every bar, in whole ticks.

    The price moves by the log return of each bar, rounded to the tick *as an increment*: rounding
    the increment (not the level) keeps the bar returns independent, so rounding adds no
    spurious autocorrelation.

    :param start_ticks: close before the first bar, in ticks.
    :param tick: tick size in points.
    :param ret: log return of each bar from its open, before mean reversion.
    :param gap: log gap from the previous close to this bar's open (0 inside a session).
    :param revert: True on bars of the mean-reverting (range) regime.
    :param kappa: per-bar mean-reversion speed towards the log price where the spell began.
    :return: ``(open_ticks, close_ticks)``, int64, each at least 1 tick.
    """
    n = ret.shape[0]
    open_t = np.empty(n, np.int64)
    close_t = np.empty(n, np.int64)
    prev = start_ticks
    level = 0.0
    in_range = False
    for t in range(n):
        o = prev
        if gap[t] != 0.0:
            o = max(1, prev + int(math.floor(prev * math.expm1(gap[t]) + 0.5)))
        lp = math.log(o * tick)
        drift = 0.0
        if revert[t]:
            if not in_range:
                level = lp
                in_range = True
            drift = -kappa * (lp - level)
        else:
            in_range = False
        c = max(1, o + int(math.floor(o * math.expm1(ret[t] + drift) + 0.5)))
        open_t[t] = o
        close_t[t] = c
        prev = c
    return open_t, close_t


@njit(cache=JIT_CACHE)
def ewma(x: np.ndarray, halflife: float, init: float) -> np.ndarray:
    """Exponentially weighted mean of ``x`` up to and including each bar (past only).

    :param x: input series.
    :param halflife: half-life in bars.
    :param init: value before the first bar.
    :return: the running mean, one per bar.
    """
    a = 1.0 - 0.5 ** (1.0 / halflife)
    out = np.empty(x.shape[0])
    m = init
    for t in range(x.shape[0]):
        m += a * (x[t] - m)
        out[t] = m
    return out
