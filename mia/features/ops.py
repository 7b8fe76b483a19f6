"""The compiled feature machine: one ``step`` per bar runs every op of a program in order.

A *program* (built by :mod:`mia.features.program`) is a table of ops over three arrays:

- ``reg``: registers. The first ``N_INPUTS`` hold the current bar's inputs (:data:`INPUTS`);
  each op writes one register, reading registers written before it.
- ``state``: each stateful op owns a slice (EMA value, ring buffers, running sums).
- ``ops`` (int64, one row per op: code, out, a, b, c, state offset, n) and ``fp`` (float64
  parameters such as an EMA's alpha).

Batch and online are the same function: :func:`run_batch` is :func:`step` looped over history
and :class:`mia.features.online.OnlineFeatures` calls :func:`step` once per bar, so the two agree
by construction (design.md section 2). Kernels never fabricate bars: the machine sees the bar
sequence, not a clock, so a missing minute is neither filled nor forward-filled; returns across
a gap span the gap and the ``gap_minutes`` feature exposes it. Divisions by zero (e.g. a
zero-volume bar) give 0, never NaN, so one bad bar cannot poison an EMA forever.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numba import njit

import mia._jit  # noqa: F401 - sets numba's cache directory before any @njit(cache=True)
from mia.regime.filter import filter_step, observation_step

INPUTS: Final[tuple[str, ...]] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "bid_volume",
    "ask_volume",
    "taker_volume",
    "bid_ask_spread",
    "order_volume",
    "iv_call",
    "iv_put",
    "strike",
    "iv_1m",
    "iv_3m",
    "max_pain",
    "zero_gamma",
    "call_wall",
    "net_gamma",
    "vix",
    "news_impact",
    "ts_minutes",
    "xclose",
)
N_INPUTS: Final[int] = len(INPUTS)
OP_COLUMNS: Final[int] = 7  # code, out, a, b, c, state offset, n
_TINY: Final[float] = 1e-300
# A window variance below this share of the raw second moment is rounding noise from the running
# sums, not variation (e.g. a spread stuck at one tick): treat it as exactly zero, or z-scores
# would divide by ~1e-9 and explode differently depending on where the stream started.
_REL_VAR: Final[float] = 1e-12

# Op codes. Stateless arithmetic first, then stateful ops; the table is the contract with
# program.py (STATE_SIZE gives each stateful op's state length as a function of n).
ADD, SUB, MUL, DIV, RATIO_M1, SUBDIV, LOG, LOG1P, ABS, SCALE = range(10)
MAX2, MIN2, TRUE_RANGE, DM_SELECT, CLIP, SIN, COS, SQRT, SIGN_POS, ARGMAX3 = range(10, 20)
LAG, EMA, MEAN, MSTD, MAX, MIN, MAD, CORR, BETA, SKEW, KURT = range(20, 31)
SINCE, SESSION_MINUTE, WEEKDAY, GAP, HMM = range(31, 36)
N_CODES: Final[int] = 36

# HMM op state: observation state (3), filtered probabilities (3), scratch (6), observation (2),
# then the fitted parameters, constant: transmat (9), means (6), variances (6), startprob (3).
HMM_K: Final[int] = 3
HMM_PARAMS_AT: Final[int] = 14
HMM_STATE: Final[int] = 38


def state_size(code: int, n: int) -> int:
    """:return: the state length an op needs (0 for stateless ops)."""
    if code == LAG:
        return 2 + n
    if code == EMA:
        return 2
    if code in (MEAN, MSTD, SKEW, KURT):
        return 7 + n  # count, pos, s1, s2, s3, s4, spare, ring
    if code in (MAX, MIN, MAD):
        return 2 + n
    if code in (CORR, BETA):
        return 7 + 2 * n
    if code == HMM:
        return HMM_STATE
    if code in (SINCE, GAP):
        return 2
    return 0


@njit(cache=True, inline="always")
def _div(a: float, b: float) -> float:
    return a / b if abs(b) > _TINY else 0.0


@njit(cache=True, inline="always")
def _ring_push(state: np.ndarray, s: int, head: int, n: int, x: float) -> float:
    # ring of length n at state[s+head : s+head+n]; state[s] = count, state[s+1] = write pos.
    # Before the ring is full it is filled with the first value, so lags are defined at once.
    pos = int(state[s + 1])
    if state[s] == 0.0:
        for k in range(n):
            state[s + head + k] = x
    old = float(state[s + head + pos])
    state[s + head + pos] = x
    pos += 1
    state[s + 1] = 0.0 if pos == n else float(pos)  # no integer modulo on the hot path
    state[s] += 1.0
    return old


@njit(cache=True, inline="always")
def _moments(state: np.ndarray, s: int, n: int, x: float, order: int) -> None:
    # Running sums of (x - shift)^1..4 over the last n values (ring at s+7), state[s+6] = shift.
    # Each time the ring wraps, the shift moves to the window mean and the sums are recomputed
    # exactly from the ring: rounding never accumulates beyond n steps, and because the values
    # are centred, E[d^2] - E[d]^2 does not cancel even for price levels (Welford's concern).
    first = state[s] == 0.0
    old = _ring_push(state, s, 7, n, x)
    if first:
        state[s + 6] = x
        state[s + 2] = state[s + 3] = state[s + 4] = state[s + 5] = 0.0
    elif state[s + 1] == 0.0:
        shift = 0.0
        for k in range(n):
            shift += state[s + 7 + k]
        shift /= n
        s1 = s2 = s3 = s4 = 0.0
        for k in range(n):
            v = state[s + 7 + k] - shift
            v2 = v * v
            s1 += v
            s2 += v2
            if order > 2:
                s3 += v2 * v
                s4 += v2 * v2
        state[s + 2], state[s + 3], state[s + 4], state[s + 5] = s1, s2, s3, s4
        state[s + 6] = shift
    else:
        u, w = x - state[s + 6], old - state[s + 6]
        u2, w2 = u * u, w * w
        state[s + 2] += u - w
        state[s + 3] += u2 - w2
        if order > 2:
            state[s + 4] += u2 * u - w2 * w
            state[s + 5] += u2 * u2 - w2 * w2


@njit(cache=True, inline="always")
def _pair_sums(state: np.ndarray, s: int, n: int, x: float, y: float) -> None:
    # Running sums of x, y, x^2, y^2, xy over the last n pairs (rings at s+7 and s+7+n).
    pos = int(state[s + 1])
    if state[s] == 0.0:
        for k in range(n):
            state[s + 7 + k] = x
            state[s + 7 + n + k] = y
        state[s + 2], state[s + 3] = n * x, n * y
        state[s + 4], state[s + 5], state[s + 6] = n * x * x, n * y * y, n * x * y
    ox, oy = state[s + 7 + pos], state[s + 7 + n + pos]
    state[s + 7 + pos], state[s + 7 + n + pos] = x, y
    pos += 1
    state[s + 1] = 0.0 if pos == n else float(pos)
    state[s] += 1.0
    if state[s + 1] == 0.0:
        a = b = aa = bb = ab = 0.0
        for k in range(n):
            u, v = state[s + 7 + k], state[s + 7 + n + k]
            a += u
            b += v
            aa += u * u
            bb += v * v
            ab += u * v
        state[s + 2], state[s + 3], state[s + 4], state[s + 5], state[s + 6] = a, b, aa, bb, ab
    elif state[s] > 1.0:
        state[s + 2] += x - ox
        state[s + 3] += y - oy
        state[s + 4] += x * x - ox * ox
        state[s + 5] += y * y - oy * oy
        state[s + 6] += x * y - ox * oy


@njit(cache=True)
def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _exchange_minutes(ts_minutes: float) -> float:
    # UTC minutes -> America/New_York minutes with the US DST rule in force since 2007
    # (second Sunday of March 02:00 EST to first Sunday of November 02:00 EDT). Compiled code
    # has no zoneinfo; tests hold this equal to pandas' tz conversion.
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


@njit(cache=True)
def _hmm(state: np.ndarray, s: int, n: int, x: float) -> float:
    # Kept out of the inlined op dispatch: its array views carry reference counting that would
    # otherwise slow every other stateful op.
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


@njit(cache=True, inline="always")
def _stateful(code: int, x: float, y: float, s: int, n: int, p0: float, state: np.ndarray) -> float:
    # The stateful ops (codes >= LAG), split from step() so arithmetic ops skip these tests.
    if code == LAG:
        r = _ring_push(state, s, 2, n, x)
    elif code == EMA:
        if state[s] == 0.0:
            state[s] = 1.0
            state[s + 1] = x
        else:
            state[s + 1] += p0 * (x - state[s + 1])
        r = state[s + 1]
    elif code == MEAN or code == MSTD or code == SKEW or code == KURT:
        _moments(state, s, n, x, 4 if code >= SKEW else 2)
        m1 = state[s + 2] / n  # mean of the shifted values
        mean = m1 + state[s + 6]
        var = state[s + 3] / n - m1 * m1
        if var <= _REL_VAR * (abs(var) + mean * mean):
            var = 0.0
        if code == MEAN:
            r = mean
        elif code == MSTD:
            r = math.sqrt(var)
        elif var <= _TINY:
            r = 0.0
        elif code == SKEW:
            m3 = state[s + 4] / n - 3.0 * m1 * state[s + 3] / n + 2.0 * m1**3
            r = m3 / var**1.5
        else:
            m4 = (
                state[s + 5] / n
                - 4.0 * m1 * state[s + 4] / n
                + 6.0 * m1 * m1 * state[s + 3] / n
                - 3.0 * m1**4
            )
            r = m4 / (var * var) - 3.0
    elif code == MAX or code == MIN or code == MAD:
        _ring_push(state, s, 2, n, x)
        # O(n) pass over the window: max/min and the mean absolute deviation need it
        if code == MAX:
            r = state[s + 2]
            for k in range(1, n):
                r = max(r, state[s + 2 + k])
        elif code == MIN:
            r = state[s + 2]
            for k in range(1, n):
                r = min(r, state[s + 2 + k])
        else:
            mean = 0.0
            for k in range(n):
                mean += state[s + 2 + k]
            mean /= n
            acc = 0.0
            for k in range(n):
                acc += abs(state[s + 2 + k] - mean)
            r = acc / n
    elif code == CORR or code == BETA:
        _pair_sums(state, s, n, x, y)
        mx, my = state[s + 2] / n, state[s + 3] / n
        vx = state[s + 4] / n - mx * mx
        vy = state[s + 5] / n - my * my
        cov = state[s + 6] / n - mx * my
        vx = 0.0 if vx <= _REL_VAR * state[s + 4] / n else vx
        vy = 0.0 if vy <= _REL_VAR * state[s + 5] / n else vy
        if code == CORR:
            r = _div(cov, math.sqrt(vx * vy)) if vx > 0.0 and vy > 0.0 else 0.0
            r = min(max(r, -1.0), 1.0)
        else:
            r = _div(cov, vy) if vy > 0.0 else 0.0
    elif code == SINCE:  # bars since reg[a] was non-zero, capped at n
        if state[s] == 0.0:
            state[s] = 1.0
            state[s + 1] = 0.0 if x != 0.0 else float(n)
        else:
            state[s + 1] = 0.0 if x != 0.0 else min(state[s + 1] + 1.0, float(n))
        r = state[s + 1]
    elif code == SESSION_MINUTE:  # 1 for the bar closing 18:01 ET ... 1380 at 17:00 ET
        et = _exchange_minutes(x)
        r = (et - 18.0 * 60.0) % 1440.0
        r = 1440.0 if r == 0.0 else r
    elif code == WEEKDAY:  # weekday of the trade date, Monday = 0
        et = _exchange_minutes(x)
        r = float((int(math.floor((et + 360.0) / 1440.0)) + 3) % 7)
    elif code == GAP:  # minutes missing since the previous bar (0 inside a session)
        r = 0.0 if state[s] == 0.0 else max(x - state[s + 1] - 1.0, 0.0)
        state[s] = 1.0
        state[s + 1] = x
    elif code == HMM:  # p(regime n | bars <= t): mia.regime's forward filter, never smoothing
        r = _hmm(state, s, n, x)
    else:
        r = math.nan  # unknown code: program.py never emits one; NaN makes it visible
    return r


@njit(cache=True)
def step(
    ops: np.ndarray, fp: np.ndarray, state: np.ndarray, reg: np.ndarray, row: np.ndarray
) -> None:
    """Advance every op of a program by one bar.

    :param ops: int64 op table (rows: code, out, a, b, c, state offset, n).
    :param fp: float64 op parameters (rows: p0, p1).
    :param state: the program's state, updated in place.
    :param reg: registers; inputs are copied in, op results written out.
    :param row: this bar's inputs in :data:`INPUTS` order.
    """
    for i in range(row.shape[0]):
        reg[i] = row[i]
    for i in range(ops.shape[0]):
        code, o, a, b, c = ops[i, 0], ops[i, 1], ops[i, 2], ops[i, 3], ops[i, 4]
        x = reg[a]
        if code >= LAG:
            reg[o] = _stateful(code, x, reg[b], ops[i, 5], ops[i, 6], fp[i, 0], state)
            continue
        if code == ADD:
            r = x + reg[b]
        elif code == SUB:
            r = x - reg[b]
        elif code == MUL:
            r = x * reg[b]
        elif code == DIV:
            r = _div(x, reg[b])
        elif code == RATIO_M1:
            r = _div(x, reg[b]) - 1.0 if abs(reg[b]) > _TINY else 0.0
        elif code == SUBDIV:
            r = _div(x - reg[b], reg[c])
        elif code == LOG:
            r = math.log(x) if x > _TINY else math.log(_TINY)
        elif code == LOG1P:
            r = math.log1p(x) if x > -1.0 else 0.0
        elif code == ABS:
            r = abs(x)
        elif code == SCALE:
            r = x * fp[i, 0] + fp[i, 1]
        elif code == MAX2:
            r = max(x, reg[b])
        elif code == MIN2:
            r = min(x, reg[b])
        elif code == TRUE_RANGE:  # a=high, b=low, c=previous close
            pc = reg[c]
            r = max(x - reg[b], max(abs(x - pc), abs(reg[b] - pc)))
        elif code == DM_SELECT:  # Wilder's directional movement: a=this move, b=opposite move
            r = x if (x > reg[b] and x > 0.0) else 0.0
        elif code == CLIP:
            r = min(max(x, fp[i, 0]), fp[i, 1])
        elif code == SIN:
            r = math.sin(2.0 * math.pi * x / fp[i, 0])
        elif code == COS:
            r = math.cos(2.0 * math.pi * x / fp[i, 0])
        elif code == SQRT:
            r = math.sqrt(x) if x > 0.0 else 0.0
        elif code == SIGN_POS:
            r = 1.0 if x > fp[i, 0] else 0.0
        elif code == ARGMAX3:  # index of the largest of three (first wins ties)
            r = 0.0
            if reg[b] > x:
                r, x = 1.0, reg[b]
            if reg[c] > x:
                r = 2.0
        else:
            r = math.nan  # unknown code: program.py never emits one; NaN makes it visible
        reg[o] = r


@njit(cache=True, nogil=True)
def run_batch(
    ops: np.ndarray,
    fp: np.ndarray,
    state: np.ndarray,
    reg: np.ndarray,
    inputs: np.ndarray,
    out_regs: np.ndarray,
    out: np.ndarray,
) -> None:
    """The same :func:`step`, looped over history.

    :param inputs: (T, N_INPUTS) bar inputs.
    :param out_regs: registers to copy out, in feature order.
    :param out: (T, F) float64 output, filled in place.
    """
    for t in range(inputs.shape[0]):
        step(ops, fp, state, reg, inputs[t])
        for j in range(out_regs.shape[0]):
            out[t, j] = reg[out_regs[j]]
