"""Indicator building blocks over a :class:`~mia.features.program.ProgramBuilder`.

Definitions (the docs and the reference tests hold them):
- EMA(span): alpha = 2 / (span + 1), seeded with the first value.
- Wilder smoothing(n): an EMA with alpha = 1 / n (RSI, ATR, ADX), seeded with the first value;
  TA-Lib seeds with an n-bar SMA instead, a difference that decays below 1e-12 within the
  declared warm-up.
- Standard deviations are population (ddof = 0), as TA-Lib's BBANDS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mia.features import ops as op
from mia.features.program import ProgramBuilder


class DSL:
    """Named helpers that emit ops; every method returns a register.

    :param b: the builder to emit into.
    :param regime: fitted HMM parameters for regime features (``HMMParams.to_dict()``).
    """

    def __init__(self, b: ProgramBuilder, regime: Mapping[str, Any] | None = None) -> None:
        self.b = b
        self.regime = regime
        self.open, self.high, self.low, self.close = (
            b.input(c) for c in ("open", "high", "low", "close")
        )
        self.volume = b.input("volume")

    def x(self, name: str) -> int:
        """:return: the register of a bar input."""
        return self.b.input(name)

    # arithmetic
    def const(self, v: float) -> int:
        return self.b.op(op.SCALE, self.close, p0=0.0, p1=v)

    def add(self, a: int, c: int) -> int:
        return self.b.op(op.ADD, a, c)

    def sub(self, a: int, c: int) -> int:
        return self.b.op(op.SUB, a, c)

    def mul(self, a: int, c: int) -> int:
        return self.b.op(op.MUL, a, c)

    def div(self, a: int, c: int) -> int:
        return self.b.op(op.DIV, a, c)

    def ratio_m1(self, a: int, c: int) -> int:
        return self.b.op(op.RATIO_M1, a, c)

    def subdiv(self, a: int, c: int, d: int) -> int:
        return self.b.op(op.SUBDIV, a, c, d)

    def scale(self, a: int, k: float, plus: float = 0.0) -> int:
        return self.b.op(op.SCALE, a, p0=k, p1=plus)

    def log(self, a: int) -> int:
        return self.b.op(op.LOG, a)

    def log1p(self, a: int) -> int:
        return self.b.op(op.LOG1P, a)

    def abs(self, a: int) -> int:
        return self.b.op(op.ABS, a)

    def sqrt(self, a: int) -> int:
        return self.b.op(op.SQRT, a)

    def max2(self, a: int, c: int) -> int:
        return self.b.op(op.MAX2, a, c)

    def min2(self, a: int, c: int) -> int:
        return self.b.op(op.MIN2, a, c)

    def above(self, a: int, level: float = 0.0) -> int:
        return self.b.op(op.SIGN_POS, a, p0=level)

    def sign(self, a: int) -> int:
        return self.div(a, self.abs(a))

    # stateful
    def lag(self, a: int, n: int) -> int:
        return self.b.op(op.LAG, a, n=n)

    def ema(self, a: int, span: float) -> int:
        return self.b.op(op.EMA, a, p0=2.0 / (span + 1.0))

    def wilder(self, a: int, n: int) -> int:
        return self.b.op(op.EMA, a, p0=1.0 / n)

    def mean(self, a: int, n: int) -> int:
        return self.b.op(op.MEAN, a, n=n)

    def std(self, a: int, n: int) -> int:
        """Population std from centred running moments (exact recompute every n bars)."""
        return self.b.op(op.MSTD, a, n=n)

    def wmax(self, a: int, n: int) -> int:
        return self.b.op(op.MAX, a, n=n)

    def wmin(self, a: int, n: int) -> int:
        return self.b.op(op.MIN, a, n=n)

    def mad(self, a: int, n: int) -> int:
        return self.b.op(op.MAD, a, n=n)

    def corr(self, a: int, c: int, n: int) -> int:
        return self.b.op(op.CORR, a, c, n=n)

    def beta(self, a: int, c: int, n: int) -> int:
        return self.b.op(op.BETA, a, c, n=n)

    def zscore(self, a: int, n: int) -> int:
        return self.subdiv(a, self.mean(a, n), self.std(a, n))

    # market primitives
    def prev_close(self) -> int:
        return self.lag(self.close, 1)

    def logret(self, n: int = 1, price: int | None = None) -> int:
        lp = self.log(self.close if price is None else price)
        return self.sub(lp, self.lag(lp, n))

    def true_range(self) -> int:
        return self.b.op(op.TRUE_RANGE, self.high, self.low, self.prev_close())

    def atr(self, n: int) -> int:
        return self.wilder(self.true_range(), n)

    def rsi(self, a: int, n: int) -> int:
        delta = self.sub(a, self.lag(a, 1))
        zero = self.const(0.0)
        gain = self.wilder(self.max2(delta, zero), n)
        loss = self.wilder(self.max2(self.scale(delta, -1.0), zero), n)
        # 100 - 100 / (1 + RS) written as 100 g / (g + l): no division by a zero loss
        return self.scale(self.div(gain, self.add(gain, loss)), 100.0)

    def di(self, n: int) -> tuple[int, int]:
        up = self.sub(self.high, self.lag(self.high, 1))
        down = self.sub(self.lag(self.low, 1), self.low)
        plus = self.b.op(op.DM_SELECT, up, down)
        minus = self.b.op(op.DM_SELECT, down, up)
        atr = self.atr(n)
        return (
            self.scale(self.div(self.wilder(plus, n), atr), 100.0),
            self.scale(self.div(self.wilder(minus, n), atr), 100.0),
        )

    def adx(self, n: int) -> int:
        plus, minus = self.di(n)
        dx = self.scale(self.div(self.abs(self.sub(plus, minus)), self.add(plus, minus)), 100.0)
        return self.wilder(dx, n)

    def typical_price(self) -> int:
        return self.scale(self.add(self.add(self.high, self.low), self.close), 1.0 / 3.0)

    def session_minute(self) -> int:
        return self.b.op(op.SESSION_MINUTE, self.x("ts_minutes"))

    def weekday(self) -> int:
        return self.b.op(op.WEEKDAY, self.x("ts_minutes"))

    def cyc(self, a: int, period: float, cos: bool) -> int:
        return self.b.op(op.COS if cos else op.SIN, a, p0=period)

    def gap(self) -> int:
        return self.b.op(op.GAP, self.x("ts_minutes"))

    def since(self, a: int, cap: int) -> int:
        return self.b.op(op.SINCE, a, n=cap)
