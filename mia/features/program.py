"""Build programs for the feature machine: shared sub-expressions, warm-up, compiled arrays.

Feature families describe themselves as expressions over a :class:`ProgramBuilder`; identical
ops are built once (ATR(14) feeds a dozen features but is computed once). Each register carries
its *warm-up*: the number of bars after which its value no longer depends on where the stream
started (within 1e-12 relative for EMAs), so a stream started ``warmup`` bars ago equals one that
started long before. That is the contract the parity tests check and the executor relies on when
it warms features from recent history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from mia.features import ops as op

# An EMA forgets its seed geometrically: after W bars the seed's weight is (1 - alpha)^W.
EMA_FORGET: Final[float] = 1e-12


def ema_warmup(alpha: float) -> int:
    """:return: bars until an EMA's seed weighs less than :data:`EMA_FORGET`."""
    if alpha >= 1.0:
        return 0
    return math.ceil(math.log(EMA_FORGET) / math.log1p(-alpha))


def _own_warmup(code: int, n: int, p0: float) -> int:
    if code == op.LAG or code == op.SINCE:
        return n
    if code == op.EMA:
        return ema_warmup(p0)
    if code in (op.MEAN, op.MSTD, op.SKEW, op.KURT, op.MAX, op.MIN, op.MAD, op.CORR, op.BETA):
        return n - 1
    if code == op.GAP:
        return 1
    if code == op.HMM:
        from mia.regime.filter import FILTER_WARMUP, OBS_WARMUP

        return OBS_WARMUP + FILTER_WARMUP
    return 0


@dataclass(frozen=True, eq=False)
class Program:
    """Compiled arrays of a program (see :mod:`mia.features.ops`).

    :param ops: int64 op table.
    :param fp: float64 op parameters.
    :param state_size: length of the state vector.
    :param n_regs: number of registers.
    :param out_regs: register of each output, in output order.
    :param warmups: warm-up bars of each output.
    :param state_init: the state before the first bar (zeros, plus constants such as fitted
        HMM parameters).
    """

    ops: np.ndarray
    fp: np.ndarray
    state_size: int
    n_regs: int
    out_regs: np.ndarray
    warmups: np.ndarray
    state_init: np.ndarray

    def new_state(self) -> np.ndarray:
        """:return: a fresh state: the program has seen no bar."""
        return self.state_init.copy()

    def new_regs(self) -> np.ndarray:
        """:return: scratch registers."""
        return np.zeros(self.n_regs, dtype=np.float64)


class ProgramBuilder:
    """Collects ops with common-subexpression elimination; registers are plain ints."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, int, int, int, int, float, float]] = []
        self._index: dict[tuple[object, ...], int] = {}
        self._init: dict[int, tuple[float, ...]] = {}  # row -> constants at op.HMM_PARAMS_AT
        self._warm: list[int] = [0] * op.N_INPUTS

    def input(self, name: str) -> int:
        """:return: the register of one bar input (see :data:`mia.features.ops.INPUTS`)."""
        return op.INPUTS.index(name)

    def warmup(self, reg: int) -> int:
        """:return: the warm-up of a register."""
        return self._warm[reg]

    def op(
        self,
        code: int,
        a: int,
        b: int = -1,
        c: int = -1,
        *,
        n: int = 0,
        p0: float = 0.0,
        p1: float = 0.0,
        init: tuple[float, ...] = (),
    ) -> int:
        """Add (or reuse) an op and return its output register.

        :param code: an op code of :mod:`mia.features.ops`.
        :param a: first input register; ``b``, ``c`` optional further inputs.
        :param n: window or lag length for stateful ops.
        :param p0: first float parameter (e.g. an EMA's alpha); ``p1`` the second.
        :param init: constants placed in the op's state (the HMM's fitted parameters).
        """
        if (
            code
            in (
                op.LAG,
                op.MEAN,
                op.MSTD,
                op.SKEW,
                op.KURT,
                op.MAX,
                op.MIN,
                op.MAD,
                op.CORR,
                op.BETA,
                op.SINCE,
            )
            and n < 1
        ):
            raise ValueError(f"op {code} needs a window n >= 1, got {n}")
        if code == op.EMA:
            p1 = 1.0 - p0  # the kernel's decay (1 - alpha), computed once per op
        row = (code, a, b, c, n, float(p0), float(p1))
        key = (*row, init)
        found = self._index.get(key)
        if found is not None:
            return found
        reg = op.N_INPUTS + len(self._rows)
        if init:
            self._init[len(self._rows)] = init
        self._rows.append(row)
        self._index[key] = reg
        deps = [self._warm[r] for r in (a, b, c) if r >= 0]
        self._warm.append(max(deps, default=0) + _own_warmup(code, n, p0))
        return reg

    def compile(self, outputs: list[int]) -> Program:
        """Freeze the ops needed by ``outputs`` into arrays (unused ops are dropped).

        :param outputs: output registers, in feature order.
        """
        needed = set(outputs)
        for i in range(len(self._rows) - 1, -1, -1):
            reg = op.N_INPUTS + i
            if reg in needed:
                needed.update(r for r in self._rows[i][1:4] if r >= op.N_INPUTS)
        keep = [i for i in range(len(self._rows)) if op.N_INPUTS + i in needed]
        remap = {op.N_INPUTS + old: op.N_INPUTS + new for new, old in enumerate(keep)}

        def reg_of(r: int) -> int:
            return 0 if r < 0 else (r if r < op.N_INPUTS else remap[r])

        table = np.zeros((len(keep), op.OP_COLUMNS), dtype=np.int64)
        fp = np.zeros((len(keep), 2), dtype=np.float64)
        offset = 0
        inits: list[tuple[int, tuple[float, ...]]] = []
        for new, old in enumerate(keep):
            code, a, b, c, n, p0, p1 = self._rows[old]
            table[new] = (code, op.N_INPUTS + new, reg_of(a), reg_of(b), reg_of(c), offset, n)
            fp[new] = (p0, p1)
            if old in self._init:
                inits.append((offset + op.HMM_PARAMS_AT, self._init[old]))
            offset += op.state_size(code, n)
        state_init = np.zeros(max(offset, 1), dtype=np.float64)
        for at, values in inits:
            state_init[at : at + len(values)] = values
        return Program(
            ops=table,
            fp=fp,
            state_size=max(offset, 1),
            n_regs=op.N_INPUTS + len(keep),
            out_regs=np.array([reg_of(r) for r in outputs], dtype=np.int64),
            warmups=np.array([self._warm[r] for r in outputs], dtype=np.int64),
            state_init=state_init,
        )
