"""The two drivers of the feature machine agree on every op code, at every block boundary.

The registry-wide parity tests (test_parity.py) run one block size; here each op code runs with
windows on both sides of the block size, through several block sizes and split calls, and the
column driver must leave the *state* exactly as bar-by-bar stepping does: the executor warms its
features with the batch driver and then steps online from that state.
"""

from __future__ import annotations

import numpy as np
import pytest

from mia.features import ops as op
from mia.features.machine import run_columns, step
from mia.features.program import Program, ProgramBuilder

WINDOWS = (1, 3, 7, 8, 9, 64)
STATEFUL_N = (op.LAG, op.MEAN, op.MSTD, op.SKEW, op.KURT, op.MAX, op.MIN, op.MAD, op.SINCE)
STATELESS = (
    op.ADD, op.SUB, op.MUL, op.DIV, op.RATIO_M1, op.SUBDIV, op.LOG, op.LOG1P, op.ABS, op.MAX2,
    op.MIN2, op.TRUE_RANGE, op.DM_SELECT, op.SQRT, op.ARGMAX3,
)


def _program() -> Program:
    b = ProgramBuilder()
    c, h, lo, v = b.input("close"), b.input("high"), b.input("low"), b.input("volume")
    ts = b.input("ts_minutes")
    ret = b.op(op.RATIO_M1, c, b.op(op.LAG, c, n=1))
    outs = [b.op(code, ret, h, lo) for code in STATELESS]
    outs += [b.op(op.SCALE, ret, p0=3.0, p1=-1.0), b.op(op.CLIP, ret, p0=-1e-4, p1=1e-4)]
    outs += [b.op(op.SIN, ts, p0=1440.0), b.op(op.COS, ts, p0=1440.0)]
    outs += [b.op(op.SIGN_POS, ret, p0=0.0), b.op(op.EMA, ret, p0=0.3), b.op(op.EMA, c, p0=0.01)]
    for code in STATEFUL_N:
        for n in WINDOWS:
            src = b.op(op.SIGN_POS, ret, p0=5e-4) if code == op.SINCE else (c if n > 7 else ret)
            outs.append(b.op(code, src, n=n))
    for n in WINDOWS[1:]:
        outs += [b.op(op.CORR, ret, b.op(op.LAG, v, n=2), n=n), b.op(op.BETA, c, h, n=n)]
    outs += [b.op(op.SESSION_MINUTE, ts), b.op(op.WEEKDAY, ts), b.op(op.GAP, ts)]
    return b.compile(outs)


def _inputs(n_bars: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = np.full((op.N_INPUTS, n_bars), np.nan)
    close = 4800.0 + np.cumsum(rng.normal(0.0, 0.5, n_bars))
    x[op.INPUTS.index("close")] = close
    x[op.INPUTS.index("open")] = close - rng.normal(0.0, 0.2, n_bars)
    x[op.INPUTS.index("high")] = close + rng.uniform(0.0, 1.0, n_bars)
    x[op.INPUTS.index("low")] = close - rng.uniform(0.0, 1.0, n_bars)
    x[op.INPUTS.index("volume")] = rng.integers(0, 300, n_bars).astype(float)
    gaps = rng.random(n_bars) < 0.01  # a few missing minutes, as across a session break
    x[op.INPUTS.index("ts_minutes")] = 28_400_000.0 + np.cumsum(1.0 + 60.0 * gaps)
    return x.T  # (T, N_INPUTS), column-major as build_inputs makes it


@pytest.fixture(scope="module")
def stepped() -> tuple[Program, np.ndarray, np.ndarray, np.ndarray]:
    prog, inputs = _program(), _inputs(700)
    state, regs = prog.new_state(), prog.new_regs()
    rows = np.empty((len(inputs), len(prog.out_regs)))
    for t, row in enumerate(inputs):
        step(prog.ops, prog.fp, state, regs, np.ascontiguousarray(row))
        rows[t] = regs[prog.out_regs]
    return prog, inputs, rows, state


def _columns(prog: Program, inputs: np.ndarray, block: int, cuts: list[int]) -> tuple:
    state = prog.new_state()
    col = np.empty((prog.n_regs - op.N_INPUTS, block + 3))
    out = np.empty((len(inputs), len(prog.out_regs)))
    cols = np.arange(len(prog.out_regs))
    edges = [0, *cuts, len(inputs)]
    for begin, end in zip(edges[:-1], edges[1:], strict=True):
        run_columns(prog.ops, prog.fp, state, col, inputs.T, begin, end, prog.out_regs, out,
                    cols, block)
    return out, state


def test_every_op_code_is_covered_by_the_machine_test(stepped):
    prog, *_ = stepped
    assert set(prog.ops[:, 0]) == set(range(op.N_CODES)) - {op.HMM}  # HMM: test_parity.py


@pytest.mark.parametrize(("block", "cuts"), [
    (1, []), (5, []), (8, []), (64, []), (256, []), (256, [1, 9, 300]), (7, [64, 65, 699]),
])
def test_column_driver_equals_bar_by_bar_values_and_state(stepped, block, cuts):
    prog, inputs, rows, state = stepped
    out, col_state = _columns(prog, inputs, block, cuts)
    np.testing.assert_array_equal(out, rows)
    np.testing.assert_array_equal(col_state, state)


def test_lag_reads_values_pushed_before_the_block():
    b = ProgramBuilder()
    c = b.input("close")
    prog = b.compile([b.op(op.LAG, c, n=n) for n in (1, 4, 5, 9)])
    inputs = _inputs(23)
    out, _ = _columns(prog, inputs, 5, [3])
    close = inputs[:, op.INPUTS.index("close")]
    for j, n in enumerate((1, 4, 5, 9)):
        want = np.r_[np.full(n, close[0]), close[:-n]]  # before n bars: the first value
        np.testing.assert_array_equal(out[:, j], want)
