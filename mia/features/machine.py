"""The two drivers of the feature machine: bar by bar (online) and op by op (batch).

:func:`step` advances every op of a program by one bar; the executor calls it once per bar
(:class:`mia.features.online.OnlineFeatures`). :func:`run_columns` computes the same program over
history a block of bars at a time: each op runs over the whole block before the next op starts
(registers are columns), so the op's code is dispatched once per block instead of once per bar
and its loop compiles to a tight scalar loop. Both drivers call the same scalar kernels of
:mod:`mia.features.kernels` with the same arguments in the same order for each (op, bar), since
op i at bar t reads only registers of ops before it at bar t and its own state from bar t - 1.
Batch and online are therefore bit-identical (tests/unit/features/test_parity.py) by
construction (design.md section 2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path
from mia.features import kernels as k
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
    EMA,
    GAP,
    HMM,
    KURT,
    LAG,
    LOG,
    LOG1P,
    MAD,
    MAX,
    MAX2,
    MEAN,
    MIN,
    MIN2,
    MSTD,
    MUL,
    N_INPUTS,
    RATIO_M1,
    SCALE,
    SESSION_MINUTE,
    SIGN_POS,
    SIN,
    SINCE,
    SKEW,
    SQRT,
    SUB,
    SUBDIV,
    TRUE_RANGE,
    WEEKDAY,
)

# count, position and five running sums of a moments or pairs op (state[s : s+7])
_Sums7 = tuple[float, int, float, float, float, float, float]


@njit(cache=JIT_CACHE, inline="always")
def _load7(state: np.ndarray, s: int) -> _Sums7:
    return (state[s], int(state[s + 1]), state[s + 2], state[s + 3], state[s + 4],
            state[s + 5], state[s + 6])


@njit(cache=JIT_CACHE, inline="always")
def _store7(state: np.ndarray, s: int, v: _Sums7) -> None:
    state[s], state[s + 1], state[s + 2], state[s + 3] = v[0], float(v[1]), v[2], v[3]
    state[s + 4], state[s + 5], state[s + 6] = v[4], v[5], v[6]


@njit(cache=JIT_CACHE, inline="always")
def _order(code: int) -> int:
    # highest power the running sums of a moments op need
    return 1 if code == MEAN else (2 if code == MSTD else 4)


@njit(cache=JIT_CACHE, inline="always")
def _stateful(
    code: int, x: float, y: float, s: int, n: int, p0: float, p1: float, state: np.ndarray
) -> float:
    # one stateful op for one bar (the online driver)
    if code == LAG:
        return k.ring_push(state, s, 2, n, x)
    if code == EMA:
        r = k.ema_next(state[s + 1], x, p0, p1, state[s] == 0.0)
        state[s] = 1.0
        state[s + 1] = r
        return r
    if code == MEAN or code == MSTD or code == SKEW or code == KURT:
        c, p, s1, s2, s3, s4, sh = _load7(state, s)
        m = k.moments_next(state, s + 7, n, x, _order(code), c, p, s1, s2, s3, s4, sh)
        _store7(state, s, m)
        return k.moment_value(code, n, m[2], m[3], m[4], m[5], m[6])
    if code == MAX or code == MIN:
        r, state[s], pos, state[s + 3] = k.extreme_next(
            state, s + 4, n, x, code == MAX, state[s], int(state[s + 1]), state[s + 2], state[s + 3]
        )
        state[s + 1], state[s + 2] = float(pos), r
        return r
    if code == MAD:
        return k.mad(state, s, n, x)
    if code == CORR or code == BETA:
        c, p, sa, sb, saa, sbb, sab = _load7(state, s)
        m = k.pair_next(state, s + 7, n, x, y, c, p, sa, sb, saa, sbb, sab)
        _store7(state, s, m)
        return k.pair_value(code, n, m[2], m[3], m[4], m[5], m[6])
    if code == SINCE:
        return k.since(state, s, n, x)
    if code == SESSION_MINUTE:
        return k.session_minute(x)
    if code == WEEKDAY:
        return k.weekday(x)
    if code == GAP:
        return k.gap(state, s, x)
    if code == HMM:
        return k.hmm(state, s, n, x)
    return math.nan  # unknown code: program.py never emits one; NaN makes it visible


@njit(cache=JIT_CACHE)
def step(
    ops: np.ndarray, fp: np.ndarray, state: np.ndarray, reg: np.ndarray, row: np.ndarray
) -> None:
    """Advance every op of a program by one bar.

    :param ops: int64 op table (rows: code, out, a, b, c, state offset, n).
    :param fp: float64 op parameters (rows: p0, p1).
    :param state: the program's state, updated in place.
    :param reg: registers; inputs are copied in, op results written out.
    :param row: this bar's inputs in :data:`mia.features.ops.INPUTS` order.
    """
    for i in range(row.shape[0]):
        reg[i] = row[i]
    for i in range(ops.shape[0]):
        code, o = ops[i, 0], ops[i, 1]
        x, y = reg[ops[i, 2]], reg[ops[i, 3]]
        if code >= LAG:
            reg[o] = _stateful(code, x, y, ops[i, 5], ops[i, 6], fp[i, 0], fp[i, 1], state)
        else:
            reg[o] = k.arith(code, x, y, reg[ops[i, 4]], fp[i, 0], fp[i, 1])


# Column loops: one op over the m bars of a block. Each operand is a 2-D array, a row and a bar
# offset: an input row read in place (inputs_t, offset = the block's first bar) or an earlier
# op's row of the block (col, offset 0); no copies and no array views per op. Each loop is called
# with a literal op code, so after inlining the kernel's dispatch folds away.


@njit(cache=JIT_CACHE, inline="always")
def _at(x: np.ndarray, r: int, i: int) -> float:
    # An unsigned column index: numba then skips its negative-index wraparound, which would make
    # the address non-affine and keep LLVM from vectorising the column loops (3x on ADD).
    return float(x[r, np.uint64(i)])


@njit(cache=JIT_CACHE, inline="always")
def _src(col: np.ndarray, inputs_t: np.ndarray, r: int) -> np.ndarray:
    return inputs_t if r < N_INPUTS else col


@njit(cache=JIT_CACHE, inline="always")
def _off(r: int, start: int) -> int:
    return start if r < N_INPUTS else 0


@njit(cache=JIT_CACHE, inline="always")
def _row(r: int) -> int:
    return r if r < N_INPUTS else r - N_INPUTS


@njit(cache=JIT_CACHE, inline="always")
def _arith_col(
    code: int, xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, xb: np.ndarray, b: int,
    bo: int, xc: np.ndarray, c: int, co: int, p0: float, p1: float, m: int,
) -> None:
    for t in range(m):
        xo[o, t] = k.arith(code, _at(xa, a, ao + t), _at(xb, b, bo + t), _at(xc, c, co + t), p0, p1)


@njit(cache=JIT_CACHE, inline="always")
def _ema_col(
    xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, alpha: float, decay: float,
    state: np.ndarray, s: int, m: int,
) -> None:
    v = state[s + 1]
    t0 = 0
    if state[s] == 0.0 and m > 0:  # the seed bar, out of the loop: no select on the chain
        v = k.ema_next(v, _at(xa, a, ao), alpha, decay, True)
        xo[o, 0] = v
        t0 = 1
    for t in range(t0, m):
        v = k.ema_next(v, _at(xa, a, ao + t), alpha, decay, False)
        xo[o, t] = v
    state[s] = 1.0
    state[s + 1] = v


@njit(cache=JIT_CACHE, inline="always")
def _lag_col(
    xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, state: np.ndarray, s: int, n: int,
    m: int,
) -> None:
    # A ring of n is a delay line: the value it drops at bar t is the one pushed at t - n. The
    # first n bars of a block drop values pushed before the block (or the first-value fill), so
    # they go through the ring; later bars read x[t - n] from the block itself. The ring is then
    # left exactly as m pushes would leave it: the block's last n values at their positions.
    c, p = state[s], int(state[s + 1])
    lead = min(n, m)
    for t in range(lead):
        xo[o, t], c, p = k.ring_next(state, s + 2, n, c, p, _at(xa, a, ao + t))
    for t in range(lead, m):
        xo[o, t] = _at(xa, a, ao + t - n)
    rest = max(lead, m - n)  # pushes before this one are overwritten within the block
    p = (p + rest - lead) % n
    for t in range(rest, m):
        state[s + 2 + p] = _at(xa, a, ao + t)
        p = 0 if p + 1 == n else p + 1
    state[s], state[s + 1] = c + (m - lead), float(p)


@njit(cache=JIT_CACHE, inline="always")
def _moment_col(
    code: int, xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, state: np.ndarray,
    s: int, n: int, m: int,
) -> None:
    order = _order(code)
    c, p, s1, s2, s3, s4, sh = _load7(state, s)
    for t in range(m):
        c, p, s1, s2, s3, s4, sh = k.moments_next(
            state, s + 7, n, _at(xa, a, ao + t), order, c, p, s1, s2, s3, s4, sh
        )
        xo[o, t] = k.moment_value(code, n, s1, s2, s3, s4, sh)
    _store7(state, s, (c, p, s1, s2, s3, s4, sh))


@njit(cache=JIT_CACHE, inline="always")
def _extreme_col(
    is_max: bool, xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, state: np.ndarray,
    s: int, n: int, m: int,
) -> None:
    c, p, ext, bar = state[s], int(state[s + 1]), state[s + 2], state[s + 3]
    for t in range(m):
        ext, c, p, bar = k.extreme_next(state, s + 4, n, _at(xa, a, ao + t), is_max, c, p, ext, bar)
        xo[o, t] = ext
    state[s], state[s + 1], state[s + 2], state[s + 3] = c, float(p), ext, bar


@njit(cache=JIT_CACHE, inline="always")
def _pair_col(
    code: int, xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, xb: np.ndarray, b: int,
    bo: int, state: np.ndarray, s: int, n: int, m: int,
) -> None:
    c, p, sa, sb, saa, sbb, sab = _load7(state, s)
    for t in range(m):
        c, p, sa, sb, saa, sbb, sab = k.pair_next(
            state, s + 7, n, _at(xa, a, ao + t), _at(xb, b, bo + t), c, p, sa, sb, saa, sbb, sab
        )
        xo[o, t] = k.pair_value(code, n, sa, sb, saa, sbb, sab)
    _store7(state, s, (c, p, sa, sb, saa, sbb, sab))


@njit(cache=JIT_CACHE, inline="always")
def _scalar_col(
    code: int, xo: np.ndarray, o: int, xa: np.ndarray, a: int, ao: int, state: np.ndarray,
    s: int, n: int, m: int,
) -> None:
    for t in range(m):
        x = _at(xa, a, ao + t)
        if code == MAD:
            r = k.mad(state, s, n, x)
        elif code == SINCE:
            r = k.since(state, s, n, x)
        elif code == SESSION_MINUTE:
            r = k.session_minute(x)
        elif code == WEEKDAY:
            r = k.weekday(x)
        elif code == GAP:
            r = k.gap(state, s, x)
        else:
            r = k.hmm(state, s, n, x)
        xo[o, t] = r


@njit(cache=JIT_CACHE, nogil=True)
def _run_op(
    ops: np.ndarray, fp: np.ndarray, i: int, state: np.ndarray, col: np.ndarray,
    inputs_t: np.ndarray, start: int, m: int,
) -> None:
    # op i over the m bars of the block starting at bar `start`
    code, s, n = ops[i, 0], ops[i, 5], ops[i, 6]
    p0, p1 = fp[i, 0], fp[i, 1]
    o = ops[i, 1] - N_INPUTS
    a, b, c = ops[i, 2], ops[i, 3], ops[i, 4]
    xa, xb, xc = _src(col, inputs_t, a), _src(col, inputs_t, b), _src(col, inputs_t, c)
    ao, bo, co = _off(a, start), _off(b, start), _off(c, start)
    a, b, c = _row(a), _row(b), _row(c)
    if code == ADD:
        _arith_col(ADD, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SUB:
        _arith_col(SUB, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == MUL:
        _arith_col(MUL, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == DIV:
        _arith_col(DIV, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == RATIO_M1:
        _arith_col(RATIO_M1, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SUBDIV:
        _arith_col(SUBDIV, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == LOG:
        _arith_col(LOG, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == LOG1P:
        _arith_col(LOG1P, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == ABS:
        _arith_col(ABS, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SCALE:
        _arith_col(SCALE, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == MAX2:
        _arith_col(MAX2, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == MIN2:
        _arith_col(MIN2, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == TRUE_RANGE:
        _arith_col(TRUE_RANGE, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == DM_SELECT:
        _arith_col(DM_SELECT, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == CLIP:
        _arith_col(CLIP, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SIN:
        _arith_col(SIN, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == COS:
        _arith_col(COS, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SQRT:
        _arith_col(SQRT, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == SIGN_POS:
        _arith_col(SIGN_POS, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == ARGMAX3:
        _arith_col(ARGMAX3, col, o, xa, a, ao, xb, b, bo, xc, c, co, p0, p1, m)
    elif code == EMA:
        _ema_col(col, o, xa, a, ao, p0, p1, state, s, m)
    elif code == LAG:
        _lag_col(col, o, xa, a, ao, state, s, n, m)
    elif code == MEAN:
        _moment_col(MEAN, col, o, xa, a, ao, state, s, n, m)
    elif code == MSTD:
        _moment_col(MSTD, col, o, xa, a, ao, state, s, n, m)
    elif code == SKEW:
        _moment_col(SKEW, col, o, xa, a, ao, state, s, n, m)
    elif code == KURT:
        _moment_col(KURT, col, o, xa, a, ao, state, s, n, m)
    elif code == MAX:
        _extreme_col(True, col, o, xa, a, ao, state, s, n, m)
    elif code == MIN:
        _extreme_col(False, col, o, xa, a, ao, state, s, n, m)
    elif code == CORR:
        _pair_col(CORR, col, o, xa, a, ao, xb, b, bo, state, s, n, m)
    elif code == BETA:
        _pair_col(BETA, col, o, xa, a, ao, xb, b, bo, state, s, n, m)
    elif code == MAD:
        _scalar_col(MAD, col, o, xa, a, ao, state, s, n, m)
    elif code == SINCE:
        _scalar_col(SINCE, col, o, xa, a, ao, state, s, n, m)
    elif code == SESSION_MINUTE:
        _scalar_col(SESSION_MINUTE, col, o, xa, a, ao, state, s, n, m)
    elif code == WEEKDAY:
        _scalar_col(WEEKDAY, col, o, xa, a, ao, state, s, n, m)
    elif code == GAP:
        _scalar_col(GAP, col, o, xa, a, ao, state, s, n, m)
    elif code == HMM:
        _scalar_col(HMM, col, o, xa, a, ao, state, s, n, m)
    else:
        for t in range(m):
            col[o, t] = math.nan  # unknown code: program.py never emits one




@njit(cache=JIT_CACHE, nogil=True)
def run_columns(
    ops: np.ndarray,
    fp: np.ndarray,
    state: np.ndarray,
    col: np.ndarray,
    inputs_t: np.ndarray,
    begin: int,
    end: int,
    out_regs: np.ndarray,
    out: np.ndarray,
    out_cols: np.ndarray,
    block: int,
) -> None:
    """The program over bars ``begin .. end - 1``, op by op within blocks of ``block`` bars.

    :param col: (n_ops, >= block) float64 scratch: a row per op register, a column per bar.
    :param inputs_t: (N_INPUTS, T) bar inputs, one contiguous row per input (the transpose of
        the column-major matrix of :mod:`mia.features.inputs`); ops read it in place.
    :param begin: first bar; ``end``: one past the last (the state carries over between calls).
    :param out_regs: registers to copy out, in feature order.
    :param out: (T, >= F) output (float32 or float64), filled in place; values are float64
        until this copy.
    :param out_cols: column of ``out`` receiving each output register.
    :param block: bars per block.
    """
    for start in range(begin, end, block):
        m = min(block, end - start)
        for i in range(ops.shape[0]):
            _run_op(ops, fp, i, state, col, inputs_t, start, m)
        for j in range(out_regs.shape[0]):
            r = out_regs[j]
            src, row, off = _src(col, inputs_t, r), _row(r), _off(r, start)
            oc = out_cols[j]
            for t in range(m):
                out[np.uint64(start + t), oc] = _at(src, row, off + t)
