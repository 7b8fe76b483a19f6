"""The arithmetic of every op, once: scalar numba functions both drivers inline.

:mod:`mia.features.machine` runs a program two ways, bar by bar (:func:`~machine.step`, the
online path) and op by op over a block of bars (:func:`~machine.run_columns`, the batch path).
Both call the functions here with the same arguments in the same order for each op and bar, so
batch and online agree bit for bit by construction (design.md section 2). Nothing here reads a
clock or does I/O; op codes and state layouts are defined in :mod:`mia.features.ops`.

Kernels never fabricate bars: the machine sees the bar sequence, not a clock, so a missing
minute is neither filled nor forward-filled; returns across a gap span the gap and the
``gap_minutes`` feature exposes it. Divisions by zero (e.g. a zero-volume bar) give 0, never
NaN, so one bad bar cannot poison an EMA forever.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path
from mia.features.ops import (
    ABS,
    ADD,
    ARGMAX3,
    BETA,
    CLIP,
    CORR,
    COS,
    DIV,
    DM_SELECT,
    HMM_K,
    HMM_PARAMS_AT,
    LOG,
    LOG1P,
    MAX2,
    MEAN,
    MIN2,
    MSTD,
    MUL,
    RATIO_M1,
    SCALE,
    SIGN_POS,
    SIN,
    SKEW,
    SQRT,
    SUB,
    SUBDIV,
    TRUE_RANGE,
)
from mia.regime.filter import filter_step, observation_step

TINY: Final[float] = 1e-300
# A window variance below this share of the raw second moment is rounding noise from the running
# sums, not variation (e.g. a spread stuck at one tick): treat it as exactly zero, or z-scores
# would divide by ~1e-9 and explode differently depending on where the stream started.
REL_VAR: Final[float] = 1e-12


@njit(cache=JIT_CACHE, inline="always")
def div(a: float, b: float) -> float:
    return a / b if abs(b) > TINY else 0.0


@njit(cache=JIT_CACHE, inline="always")
def arith(code: int, x: float, y: float, z: float, p0: float, p1: float) -> float:
    """One stateless op: ``x``, ``y``, ``z`` are its input registers, ``p0``, ``p1`` its
    parameters. Called with a constant ``code`` the branch folds away (batch driver)."""
    if code == ADD:
        r = x + y
    elif code == SUB:
        r = x - y
    elif code == MUL:
        r = x * y
    elif code == DIV:
        r = div(x, y)
    elif code == RATIO_M1:
        r = div(x, y) - 1.0 if abs(y) > TINY else 0.0
    elif code == SUBDIV:
        r = div(x - y, z)
    elif code == LOG:
        r = math.log(x) if x > TINY else math.log(TINY)
    elif code == LOG1P:
        r = math.log1p(x) if x > -1.0 else 0.0
    elif code == ABS:
        r = abs(x)
    elif code == SCALE:
        r = x * p0 + p1
    elif code == MAX2:
        r = max(x, y)
    elif code == MIN2:
        r = min(x, y)
    elif code == TRUE_RANGE:  # x=high, y=low, z=previous close
        r = max(x - y, max(abs(x - z), abs(y - z)))
    elif code == DM_SELECT:  # Wilder's directional movement: x=this move, y=opposite move
        r = x if (x > y and x > 0.0) else 0.0
    elif code == CLIP:
        r = min(max(x, p0), p1)
    elif code == SIN:
        r = math.sin(2.0 * math.pi * x / p0)
    elif code == COS:
        r = math.cos(2.0 * math.pi * x / p0)
    elif code == SQRT:
        r = math.sqrt(x) if x > 0.0 else 0.0
    elif code == SIGN_POS:
        r = 1.0 if x > p0 else 0.0
    elif code == ARGMAX3:  # index of the largest of three (first wins ties)
        r = 0.0
        if y > x:
            r, x = 1.0, y
        if z > x:
            r = 2.0
    else:
        r = math.nan  # unknown code: program.py never emits one; NaN makes it visible
    return r


@intrinsic
def fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]  # numba's intrinsic protocol
    """a * b + c rounded once (LLVM's fma intrinsic: one instruction where the CPU has FMA).

    Explicit, never left to the compiler's contraction, so both drivers round alike."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f64 = ir.DoubleType()
        fnty = ir.FunctionType(f64, [f64, f64, f64])
        fn = builder.module.declare_intrinsic("llvm.fma", [f64], fnty)
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=JIT_CACHE, inline="always")
def ema_next(value: float, x: float, alpha: float, decay: float, first: bool) -> float:
    """EMA seeded with its first input; ``decay`` = 1 - alpha.

    As fma(decay, value, alpha * x) the bar-to-bar dependency is one fused multiply-add
    (value + alpha * (x - value) chains three operations): the EMA of a block runs ~2x faster.
    The batch driver keeps ``value`` in a register across a block and the online driver in
    ``state``; both use this expression."""
    return x if first else fma(decay, value, alpha * x)  # type: ignore[call-arg]


# Stateful kernels come as *next-state* functions over plain scalars (count, position, running
# sums): the online driver loads them from ``state`` and stores them back each bar; the batch
# driver keeps them in registers across a block. Ring buffers stay in ``state`` for both.


@njit(cache=JIT_CACHE, inline="always")
def ring_next(
    state: np.ndarray, at: int, n: int, count: float, pos: int, x: float
) -> tuple[float, float, int]:
    """Push ``x`` into the ring ``state[at : at+n]`` written at ``pos``.

    Before the ring is full it is filled with the first value, so lags are defined at once.
    :return: (the value dropped, count + 1, next write position)."""
    if count == 0.0:
        for j in range(n):
            state[at + j] = x
    old = float(state[at + pos])
    state[at + pos] = x
    pos += 1
    return old, count + 1.0, (0 if pos == n else pos)  # no integer modulo on the hot path


@njit(cache=JIT_CACHE, inline="always")
def ring_push(state: np.ndarray, s: int, head: int, n: int, x: float) -> float:
    """:func:`ring_next` with count and position stored at ``state[s]``, ``state[s+1]``."""
    old, state[s], pos = ring_next(state, s + head, n, state[s], int(state[s + 1]), x)
    state[s + 1] = float(pos)
    return old


@njit(cache=JIT_CACHE, inline="always")
def moments_next(
    state: np.ndarray,
    at: int,
    n: int,
    x: float,
    order: int,
    count: float,
    pos: int,
    s1: float,
    s2: float,
    s3: float,
    s4: float,
    shift: float,
) -> tuple[float, int, float, float, float, float, float]:
    """Running sums of (x - shift)^1..order over the last n values (ring at ``at``); the mean
    needs order 1, the standard deviation 2, skew and kurtosis 4.

    Each time the ring wraps, the shift moves to the window mean and the sums are recomputed
    exactly from the ring: rounding never accumulates beyond n steps, and because the values
    are centred, E[d^2] - E[d]^2 does not cancel even for price levels (Welford's concern).
    :return: (count, pos, s1, s2, s3, s4, shift) after ``x``."""
    first = count == 0.0
    old, count, pos = ring_next(state, at, n, count, pos, x)
    if first:
        shift = x
        s1 = s2 = s3 = s4 = 0.0
    elif pos == 0:
        shift = 0.0
        for k in range(n):
            shift += state[at + k]
        shift /= n
        s1 = s2 = s3 = s4 = 0.0
        for k in range(n):
            v = state[at + k] - shift
            s1 += v
            if order > 1:
                v2 = v * v
                s2 += v2
                if order > 2:
                    s3 += v2 * v
                    s4 += v2 * v2
    else:
        u, w = x - shift, old - shift
        s1 += u - w
        if order > 1:
            u2, w2 = u * u, w * w
            s2 += u2 - w2
            if order > 2:
                s3 += u2 * u - w2 * w
                s4 += u2 * u2 - w2 * w2
    return count, pos, s1, s2, s3, s4, shift


@njit(cache=JIT_CACHE, inline="always")
def moment_value(
    code: int, n: int, s1: float, s2: float, s3: float, s4: float, shift: float
) -> float:
    """MEAN, MSTD, SKEW or KURT (population moments) from the running sums."""
    inv = 1.0 / n  # loop-invariant: a block's loop divides once, then multiplies
    m1 = s1 * inv  # mean of the shifted values
    mean = m1 + shift
    var = s2 * inv - m1 * m1
    if var <= REL_VAR * (abs(var) + mean * mean):
        var = 0.0
    if code == MEAN:
        return mean
    if code == MSTD:
        return math.sqrt(var)
    if var <= TINY:
        return 0.0
    if code == SKEW:
        m3 = s3 * inv - 3.0 * m1 * s2 * inv + 2.0 * m1**3
        return m3 / (var * math.sqrt(var))
    m4 = s4 * inv - 4.0 * m1 * s3 * inv + 6.0 * m1 * m1 * s2 * inv - 3.0 * m1**4
    return m4 / (var * var) - 3.0


@njit(cache=JIT_CACHE, inline="always")
def mad(state: np.ndarray, s: int, n: int, x: float) -> float:
    """Mean absolute deviation of the last n values: one pass over the ring for the mean and
    one for the deviations."""
    ring_push(state, s, 2, n, x)
    mean = 0.0
    for k in range(n):
        mean += state[s + 2 + k]
    mean /= n
    acc = 0.0
    for k in range(n):
        acc += abs(state[s + 2 + k] - mean)
    return acc / n


@njit(cache=JIT_CACHE, inline="always")
def extreme_next(
    state: np.ndarray,
    at: int,
    n: int,
    x: float,
    is_max: bool,
    count: float,
    pos: int,
    ext: float,
    ext_bar: float,
) -> tuple[float, float, int, float]:
    """Running max (or min) of the last n values, ring at ``at``.

    Keeps the current extreme and the bar it came from, and scans the ring only when that bar
    leaves the window (TA-Lib's approach in MAX/STOCH): O(1) for most bars, O(n) at worst. The
    extreme of a set does not depend on how it is found, so any bar's value equals a full scan.
    Before n bars it is the extreme of every bar seen.
    :return: (extreme, count, pos, bar of the extreme)."""
    bar = count  # this bar's number, from 0
    first = count == 0.0
    _, count, pos = ring_next(state, at, n, count, pos, x)
    if first or ((x >= ext) if is_max else (x <= ext)):
        return x, count, pos, bar  # ties move to the newest bar: it stays longest
    if ext_bar > bar - n:
        return ext, count, pos, ext_bar
    # the extreme left the window: scan newest to oldest, keeping the newest of equal values
    slot = pos - 1 if pos > 0 else n - 1
    best, back = x, 0
    for d in range(1, n):
        slot = slot - 1 if slot > 0 else n - 1
        v = state[at + slot]
        if (v > best) if is_max else (v < best):
            best, back = v, d
    return best, count, pos, bar - back


@njit(cache=JIT_CACHE, inline="always")
def pair_next(
    state: np.ndarray,
    at: int,
    n: int,
    x: float,
    y: float,
    count: float,
    pos: int,
    a: float,
    b: float,
    aa: float,
    bb: float,
    ab: float,
) -> tuple[float, int, float, float, float, float, float]:
    """Running sums of x, y, x^2, y^2, xy over the last n pairs (rings at ``at`` and
    ``at + n``), recomputed exactly from the rings at each wrap (as :func:`moments_next`).
    :return: (count, pos, a, b, aa, bb, ab) after the pair."""
    if count == 0.0:
        for k in range(n):
            state[at + k] = x
            state[at + n + k] = y
        a, b = n * x, n * y
        aa, bb, ab = n * x * x, n * y * y, n * x * y
    ox, oy = state[at + pos], state[at + n + pos]
    state[at + pos], state[at + n + pos] = x, y
    pos += 1
    if pos == n:
        pos = 0
    count += 1.0
    if pos == 0:
        a = b = aa = bb = ab = 0.0
        for k in range(n):
            u, v = state[at + k], state[at + n + k]
            a += u
            b += v
            aa += u * u
            bb += v * v
            ab += u * v
    elif count > 1.0:
        a += x - ox
        b += y - oy
        aa += x * x - ox * ox
        bb += y * y - oy * oy
        ab += x * y - ox * oy
    return count, pos, a, b, aa, bb, ab


@njit(cache=JIT_CACHE, inline="always")
def pair_value(code: int, n: int, a: float, b: float, aa: float, bb: float, ab: float) -> float:
    """CORR (Pearson) or BETA (cov / var of y) from the running sums."""
    inv = 1.0 / n  # loop-invariant, as in moment_value
    mx, my = a * inv, b * inv
    vx = aa * inv - mx * mx
    vy = bb * inv - my * my
    cov = ab * inv - mx * my
    vx = 0.0 if vx <= REL_VAR * aa * inv else vx
    vy = 0.0 if vy <= REL_VAR * bb * inv else vy
    if code == CORR:
        r = div(cov, math.sqrt(vx * vy)) if vx > 0.0 and vy > 0.0 else 0.0
        return min(max(r, -1.0), 1.0)
    if code == BETA:
        return div(cov, vy) if vy > 0.0 else 0.0
    return math.nan


@njit(cache=JIT_CACHE, inline="always")
def since(state: np.ndarray, s: int, n: int, x: float) -> float:
    """Bars since ``x`` was last non-zero, capped at n."""
    if state[s] == 0.0:
        state[s] = 1.0
        state[s + 1] = 0.0 if x != 0.0 else float(n)
    else:
        state[s + 1] = 0.0 if x != 0.0 else min(state[s + 1] + 1.0, float(n))
    return float(state[s + 1])


@njit(cache=JIT_CACHE, inline="always")
def gap(state: np.ndarray, s: int, x: float) -> float:
    """Minutes missing since the previous bar (0 inside a session); ``x`` = UTC minutes."""
    r = 0.0 if state[s] == 0.0 else max(x - state[s + 1] - 1.0, 0.0)
    state[s] = 1.0
    state[s + 1] = x
    return r


@njit(cache=JIT_CACHE)
def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=JIT_CACHE)
def exchange_minutes(ts_minutes: float) -> float:
    """UTC minutes -> America/New_York minutes, with the US DST rule in force since 2007 (second
    Sunday of March 02:00 EST to first Sunday of November 02:00 EDT). Compiled code has no
    zoneinfo; tests hold this equal to pandas' tz conversion."""
    day = int(math.floor(ts_minutes / 1440.0))
    z = day + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + (3 if mp < 10 else -9)
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    mar1 = _days_from_civil(year, 3, 1)
    start = mar1 + (6 - (mar1 + 3) % 7) % 7 + 7  # second Sunday of March (1970-01-01: Thu)
    nov1 = _days_from_civil(year, 11, 1)
    end = nov1 + (6 - (nov1 + 3) % 7) % 7  # first Sunday of November
    start_utc = start * 1440.0 + 7 * 60  # 02:00 EST = 07:00 UTC
    end_utc = end * 1440.0 + 6 * 60  # 02:00 EDT = 06:00 UTC
    offset = -240.0 if start_utc <= ts_minutes < end_utc else -300.0
    return ts_minutes + offset


@njit(cache=JIT_CACHE, inline="always")
def session_minute(x: float) -> float:
    """1 for the bar closing 18:01 ET ... 1380 at 17:00 ET; ``x`` = UTC minutes."""
    r = (exchange_minutes(x) - 18.0 * 60.0) % 1440.0
    return 1440.0 if r == 0.0 else r


@njit(cache=JIT_CACHE, inline="always")
def weekday(x: float) -> float:
    """Weekday of the CME trade date (a session opening Sunday 18:00 ET trades Monday), Monday 0."""
    et = exchange_minutes(x)
    return float((int(math.floor((et + 360.0) / 1440.0)) + 3) % 7)


@njit(cache=JIT_CACHE)
def hmm(state: np.ndarray, s: int, n: int, x: float) -> float:
    """p(regime n | bars <= t): mia.regime's forward filter, never smoothing.

    Not inlined: its array views carry reference counting that would slow every other op."""
    if state[s + 2] == 0.0:  # first bar: the prior is the fitted start distribution
        for k in range(HMM_K):
            state[s + 3 + k] = state[s + HMM_PARAMS_AT + 21 + k]
    p = s + HMM_PARAMS_AT
    observation_step(state[s : s + 3], x, state[s + 12 : s + 14])
    filter_step(
        state[s + 3 : s + 6],
        state[s + 12 : s + 14],
        state[p : p + 9].reshape((3, 3)),
        state[p + 9 : p + 15].reshape((3, 2)),
        state[p + 15 : p + 21].reshape((3, 2)),
        state[s + 6 : s + 12],
    )
    return float(state[s + 3 + n])
