"""The feature machine's contract: bar inputs, op codes and each stateful op's state layout.

A *program* (built by :mod:`mia.features.program`) is a table of ops over three arrays:

- registers: the first ``N_INPUTS`` hold the current bar's inputs (:data:`INPUTS`); each op
  writes one register, reading registers written before it.
- ``state``: each stateful op owns a slice (EMA value, ring buffers, running sums).
- ``ops`` (int64, one row per op: code, out, a, b, c, state offset, n) and ``fp`` (float64
  parameters such as an EMA's alpha).

:mod:`mia.features.kernels` holds each op's arithmetic, :mod:`mia.features.machine` the two
drivers (bar by bar online, op by op over blocks in batch). This module is plain Python.
"""

from __future__ import annotations

from typing import Final

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
    if code == LAG or code == MAD:
        return 2 + n  # count, write position, ring of n
    if code == EMA:
        return 2  # seeded flag, value
    if code in (MEAN, MSTD, SKEW, KURT):
        return 7 + n  # count, pos, s1, s2, s3, s4, shift, ring
    if code in (MAX, MIN):
        return 4 + n  # count, pos, extreme, bar of the extreme, ring
    if code in (CORR, BETA):
        return 7 + 2 * n
    if code == HMM:
        return HMM_STATE
    if code in (SINCE, GAP):
        return 2
    return 0
