"""Online path: advance the same compiled program one bar at a time (the executor's view)."""

from __future__ import annotations

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path
from mia.features.machine import step
from mia.features.ops import INPUTS, N_INPUTS
from mia.features.spec import FeatureSpec


@njit(cache=JIT_CACHE)
def _step_out(
    ops: np.ndarray,
    fp: np.ndarray,
    state: np.ndarray,
    reg: np.ndarray,
    row: np.ndarray,
    out_regs: np.ndarray,
    out: np.ndarray,
) -> None:
    step(ops, fp, state, reg, row)
    for j in range(out_regs.shape[0]):
        out[j] = reg[out_regs[j]]


class OnlineFeatures:
    """Incremental features for one symbol and one spec.

    :param spec: the features to compute, in order.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._prog = spec.program()
        self._state = self._prog.new_state()
        self._regs = self._prog.new_regs()
        self._out = np.zeros(len(spec.names), dtype=np.float64)
        self._warmups = np.asarray(spec.warmups, dtype=np.int64)
        self._warmup = spec.warmup  # read every bar (ready): not recomputed
        self.bars_seen = 0

    @staticmethod
    def new_row() -> np.ndarray:
        """:return: an input row of NaN to fill by :data:`mia.features.ops.INPUTS` name."""
        return np.full(N_INPUTS, np.nan, dtype=np.float64)

    @staticmethod
    def column(name: str) -> int:
        """:return: the index of an input in a row."""
        return INPUTS.index(name)

    def update(self, row: np.ndarray) -> np.ndarray:
        """Advance by one bar.

        :param row: the bar's inputs (see :meth:`new_row`).
        :return: the features after this bar (a view, overwritten by the next update).
        """
        p = self._prog
        if not row.flags.c_contiguous:  # a row of the column-major batch input matrix
            row = np.ascontiguousarray(row)
        _step_out(p.ops, p.fp, self._state, self._regs, row, p.out_regs, self._out)
        self.bars_seen += 1
        return self._out

    @property
    def ready(self) -> bool:
        """True once every feature has passed its declared warm-up."""
        return self.bars_seen > self._warmup

    def ready_mask(self) -> np.ndarray:
        """:return: per-feature readiness after the bars seen so far."""
        return self.bars_seen > self._warmups
