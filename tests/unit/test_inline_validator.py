"""The executor's per-bar validator: every fault code, no state change on rejection, and a clean
synthetic stream passing untouched."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date

import pytest

from mia.data.synthetic import generate_market
from mia.validation.inline import FAULT_CODES, Fault, InlineValidator

MIN = 60_000_000_000  # one minute in ns
T0 = 1_704_207_660_000_000_000  # 2024-01-02T15:01:00Z
ATR = 2.0


def fresh() -> InlineValidator:
    """A validator that has accepted one bar at T0 closing at 4800."""
    v = InlineValidator(max_staleness_s=5.0, max_jump_atr=4.0)
    assert v.check(T0, 4799.0, 4801.0, 4798.0, 4800.0, 100.0, T0 + 10**8, ATR) is None
    return v


def bar(**changes: float) -> dict[str, float]:
    """The next bar (T0 + 1 min, a small up move), checked 0.1 s after its close."""
    values: dict[str, float] = dict(ts_ns=T0 + MIN, open=4800.0, high=4802.0, low=4799.5,
                                    close=4801.0, volume=120.0, now_ns=T0 + MIN + 10**8,
                                    atr=ATR)
    values.update(changes)
    return values


def check(v: InlineValidator, values: dict[str, float]) -> Fault | None:
    return v.check(
        int(values["ts_ns"]), values["open"], values["high"], values["low"], values["close"],
        values["volume"], int(values["now_ns"]), values["atr"],
    )


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({"close": math.nan}, "non_finite", "close=nan"),
        ({"volume": math.inf}, "non_finite", "volume=inf"),
        ({"high": -math.inf}, "non_finite", "high=-inf"),
        ({"low": 0.0}, "bad_price", "low=0.0 at 2024-01-02T15:02:00Z is not a positive price"),
        ({"open": -1.0, "low": -2.0}, "bad_price", "low=-2.0"),
        ({"high": 4800.5}, "bad_ohlc", "high=4800.5 low=4799.5 close=4801.0"),
        ({"low": 4802.5, "high": 4803.0}, "bad_ohlc", "breaks low <= open, close <= high"),
        ({"volume": -1.0}, "negative_volume", "volume=-1.0"),
        ({"ts_ns": T0}, "non_monotonic", "is not after the last accepted bar"),
        ({"ts_ns": T0 - MIN}, "non_monotonic", "ts=2024-01-02T15:00:00Z"),
        ({"now_ns": T0 + MIN - 3 * 10**9}, "future", "3.000 s ahead of now"),
        ({"now_ns": T0 + MIN + 6 * 10**9}, "stale", "6.000 s old"),
        ({"close": 4809.0, "high": 4809.0}, "jump", "moved 9.0 from the last accepted "
         "close=4800.0, more than 4 x atr=2.0"),
        ({"close": 4791.5, "low": 4791.5}, "jump", "moved 8.5"),
    ],
)
def test_each_broken_rule_gives_its_fault_code_and_names_the_value(
    changes: dict[str, float], code: str, says: str
) -> None:
    v = fresh()
    fault = check(v, bar(**changes))
    assert fault is not None
    assert fault.code == code
    assert code in FAULT_CODES
    assert says in fault.message
    assert fault.message.endswith("bar rejected, state unchanged")


@pytest.mark.parametrize("changes", [
    {"close": math.nan}, {"high": 4800.5}, {"volume": -1.0}, {"now_ns": T0 + MIN + 6 * 10**9},
    {"close": 4809.0, "high": 4809.0}, {"ts_ns": T0 + 5 * MIN, "now_ns": T0 + 5 * MIN - 10**10},
])
def test_a_rejected_bar_leaves_the_state_where_it_was(changes: dict[str, float]) -> None:
    v = fresh()
    assert check(v, bar(**changes)) is not None
    assert (v.last_ts_ns, v.last_close) == (T0, 4800.0)
    # the next good bar is judged against the last *accepted* one, not the rejected one
    assert check(v, bar()) is None
    assert (v.last_ts_ns, v.last_close) == (T0 + MIN, 4801.0)


def test_jump_is_measured_from_the_last_accepted_close_after_a_rejection() -> None:
    v = fresh()
    assert check(v, bar(close=4809.0, high=4809.0)) is not None
    # 4807 is 7 from 4800 (the accepted close): within 4 x ATR = 8 even though it is 2 away
    # from the rejected 4809
    assert check(v, bar(close=4807.0, high=4807.0)) is None


def test_a_jump_the_next_bar_confirms_is_a_real_move_and_a_lone_spike_is_not() -> None:
    v = fresh()  # last accepted close 4800, 4 x ATR = 8
    assert check(v, bar(close=4820.0, high=4820.0)).code == "jump"
    assert check(v, bar(close=4822.0, high=4822.0)) is None  # within 8 of 4820: confirmed
    assert (v.last_close, v.jump_close) == (4822.0, None)
    w = fresh()
    assert check(w, bar(close=4820.0, high=4820.0)).code == "jump"
    assert check(w, bar(close=4760.0, low=4760.0)).code == "jump"  # agrees with neither
    assert check(w, bar(close=4801.0, high=4801.0)) is None  # back at the accepted level
    assert w.jump_close is None
    w.reset(T0, 4800.0)
    assert w.jump_close is None


def test_jump_rule_is_skipped_without_a_positive_atr() -> None:
    for atr in (0.0, -1.0, math.nan):
        v = fresh()
        assert check(v, bar(close=4900.0, high=4900.0, atr=atr)) is None


def test_first_bar_has_no_reference_for_order_or_jump() -> None:
    v = InlineValidator(max_staleness_s=5.0, max_jump_atr=4.0)
    assert check(v, bar(close=9000.0, high=9000.0)) is None
    assert v.last_close == 9000.0


def test_reset_re_anchors_after_a_real_move() -> None:
    v = fresh()
    assert check(v, bar(close=4900.0, high=4900.0)) is not None
    v.reset(T0, 4899.0)
    assert check(v, bar(close=4900.0, high=4900.0)) is None
    v.reset()
    assert (v.last_ts_ns, v.last_close) == (None, None)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_limits_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="max_staleness_s must be a positive finite number"):
        InlineValidator(max_staleness_s=bad, max_jump_atr=4.0)
    with pytest.raises(ValueError, match="max_jump_atr"):
        InlineValidator(max_staleness_s=5.0, max_jump_atr=bad)


def test_a_clean_synthetic_stream_passes_untouched() -> None:
    bars = generate_market(["ES"], date(2024, 1, 2), date(2024, 1, 5), seed=7).bars["ES"]
    v = InlineValidator(max_staleness_s=2.0, max_jump_atr=25.0)
    ts = bars["ts"].astype("int64").tolist()
    o, h, lo, c, vol = (bars[k].tolist() for k in ("open", "high", "low", "close", "volume"))
    atr = 0.0
    for i in range(len(ts)):
        fault = v.check(ts[i], o[i], h[i], lo[i], c[i], vol[i], ts[i] + 10**8, atr)
        assert fault is None, (i, fault)
        true_range = max(h[i], c[i - 1] if i else c[i]) - min(lo[i], c[i - 1] if i else c[i])
        atr = true_range if i == 0 else atr + (true_range - atr) / 14  # Wilder's ATR(14)
    assert v.last_ts_ns == ts[-1]


def test_importing_the_inline_validator_pulls_in_no_heavy_module() -> None:
    code = (
        "import sys, mia.validation.inline\n"
        "heavy = {'pandas', 'numpy', 'great_expectations'} & set(sys.modules)\n"
        "print(','.join(sorted(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""
