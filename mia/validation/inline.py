"""Per-bar validation for the live executor: a few microseconds, pure Python.

Runs first in every tick (design.md section 5), before a bar reaches the feature state. It
imports neither pandas nor GX nor numpy: the executor's import budget and its tick latency are
both measured. A rejected bar leaves the last accepted timestamp and close what they were, so one
bad tick cannot move the reference the next bar is judged against. The one thing a rejection
remembers is a ``jump``'s close: when the next bar's close agrees with it (within the same
``max_jump_atr x atr``), two bars in a row have confirmed a new level — a real gap at the open, a
crash, a release — and that next bar is accepted as a real move (then judged by the risk
engine's volatility breaker). Without it every later bar would be a jump from a close the market
has left, and a Sunday open beyond the limit would halt trading until a person re-anchored.

Fault codes, in the order they are checked (the first broken rule is reported):

=================  =============================================================================
``non_finite``     an OHLCV value is NaN or infinite
``bad_price``      a price (open, high, low, close) is zero or negative
``bad_ohlc``       high < low, or high < max(open, close), or low > min(open, close)
``negative_volume``  volume < 0
``non_monotonic``  ts <= the last accepted bar's ts (duplicate or out of order)
``future``         ts is later than now + max_clock_skew_s (a bad clock would block every later
                   bar as non_monotonic)
``stale``          now - ts > max_staleness_s
``jump``           |close - last accepted close| > max_jump_atr x atr (only when atr > 0),
                   unless the previous bar was a jump whose close is within that of this one
=================  =============================================================================
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final, NamedTuple

FAULT_CODES: Final[tuple[str, ...]] = (
    "non_finite", "bad_price", "bad_ohlc", "negative_volume", "non_monotonic", "future", "stale",
    "jump",
)
_NS: Final[float] = 1e9


class Fault(NamedTuple):
    """Why a bar was rejected.

    :param code: one of :data:`FAULT_CODES`.
    :param message: the value, the rule it broke, and that the bar was dropped.
    """

    code: str
    message: str


def _iso(ts_ns: int) -> str:
    # Only on the fault path: formatting costs more than the whole check.
    return datetime.fromtimestamp(ts_ns / _NS, tz=UTC).isoformat().replace("+00:00", "Z")


class InlineValidator:
    """Checks one bar at a time against the rules above and remembers the last accepted bar.

    :param max_staleness_s: oldest acceptable bar, in seconds between its ``ts`` (bar close) and
        ``now``.
    :param max_jump_atr: largest acceptable close-to-close move, in ATRs.
    :param max_clock_skew_s: how far in the future a bar's ``ts`` may be (exchange vs local
        clock).
    """

    __slots__ = ("_max_jump_atr", "_max_skew_ns", "_max_stale_ns", "jump_close", "last_close",
                 "last_ts_ns")

    def __init__(
        self, max_staleness_s: float, max_jump_atr: float, *, max_clock_skew_s: float = 2.0
    ) -> None:
        for name, value in (("max_staleness_s", max_staleness_s),
                            ("max_jump_atr", max_jump_atr),
                            ("max_clock_skew_s", max_clock_skew_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self._max_stale_ns = max_staleness_s * _NS
        self._max_jump_atr = max_jump_atr
        self._max_skew_ns = max_clock_skew_s * _NS
        self.last_ts_ns: int | None = None
        self.last_close: float | None = None
        self.jump_close: float | None = None  # the close of a jump rejected by the last check

    def reset(self, last_ts_ns: int | None = None, last_close: float | None = None) -> None:
        """Forget (or set) the last accepted bar: after warming from history, or when an operator
        confirms that a real move or a feed gap made every new bar a ``jump``.

        :param last_ts_ns: ts of the bar to anchor on (ns since the epoch, UTC), or ``None``.
        :param last_close: its close, or ``None``.
        """
        self.last_ts_ns = last_ts_ns
        self.last_close = last_close
        self.jump_close = None

    def check(
        self,
        ts_ns: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        now_ns: int,
        atr: float,
    ) -> Fault | None:
        """Validate one bar; accept it (and remember it) when every rule holds.

        :param ts_ns: bar close time, ns since the epoch (UTC).
        :param open: open price.
        :param high: high price.
        :param low: low price.
        :param close: close price.
        :param volume: contracts traded.
        :param now_ns: current time from the injected clock, ns since the epoch.
        :param atr: current ATR in price points; ``<= 0`` or NaN (not warmed) skips the jump
            rule.
        :return: ``None`` if accepted, else the first broken rule; a rejected bar leaves the
            state unchanged.
        """
        # One sum is finite iff every term is (NaN and inf propagate), so the common case costs
        # one call; the slow path then names the culprit. Finite prices never overflow a double.
        if not math.isfinite(open + high + low + close + volume):
            return self._non_finite(ts_ns, open, high, low, close, volume)
        if open <= 0.0 or high <= 0.0 or low <= 0.0 or close <= 0.0:
            name, value = min(("open", open), ("high", high), ("low", low), ("close", close),
                              key=lambda kv: kv[1])
            return Fault("bad_price", f"{name}={value!r} at {_iso(ts_ns)} is not a positive "
                         "price; bar rejected, state unchanged")
        if high < low or high < open or high < close or low > open or low > close:
            return Fault("bad_ohlc", f"open={open!r} high={high!r} low={low!r} close={close!r} "
                         f"at {_iso(ts_ns)} breaks low <= open, close <= high; bar rejected, "
                         "state unchanged")
        if volume < 0.0:
            return Fault("negative_volume", f"volume={volume!r} at {_iso(ts_ns)} is negative; "
                         "bar rejected, state unchanged")
        last_ts = self.last_ts_ns
        if last_ts is not None and ts_ns <= last_ts:
            return Fault("non_monotonic", f"ts={_iso(ts_ns)} is not after the last accepted bar "
                         f"ts={_iso(last_ts)}; bar rejected, state unchanged")
        age = now_ns - ts_ns
        if age < -self._max_skew_ns:
            return Fault("future", f"ts={_iso(ts_ns)} is {-age / _NS:.3f} s ahead of now="
                         f"{_iso(now_ns)} (max skew {self._max_skew_ns / _NS:g} s); check the "
                         "feed's and the host's clocks; bar rejected, state unchanged")
        if age > self._max_stale_ns:
            return Fault("stale", f"ts={_iso(ts_ns)} is {age / _NS:.3f} s old at now="
                         f"{_iso(now_ns)} (max {self._max_stale_ns / _NS:g} s); bar rejected, "
                         "state unchanged")
        last_close, jumped = self.last_close, self.jump_close
        self.jump_close = None
        if last_close is not None and atr > 0.0:
            move, limit = abs(close - last_close), self._max_jump_atr * atr
            if move > limit and (jumped is None or abs(close - jumped) > limit):
                self.jump_close = close
                return Fault("jump", f"close={close!r} at {_iso(ts_ns)} moved {move!r} from the "
                             f"last accepted close={last_close!r}, more than "
                             f"{self._max_jump_atr:g} x atr={atr!r} (a next bar at this level "
                             "confirms a real move); bar rejected, state unchanged")
        self.last_ts_ns = ts_ns
        self.last_close = close
        return None

    @staticmethod
    def _non_finite(ts_ns: int, open: float, high: float, low: float,
                    close: float, volume: float) -> Fault:
        named = (("open", open), ("high", high), ("low", low), ("close", close),
                 ("volume", volume))
        # Every value finite but their sum overflowed (absurd magnitudes): name the sum.
        name, value = next(((n, v) for n, v in named if not math.isfinite(v)),
                           ("open+high+low+close+volume", open + high + low + close + volume))
        return Fault("non_finite", f"{name}={value!r} at {_iso(ts_ns)} is not a finite number; "
                     "bar rejected, state unchanged")
