"""Standard indicators against independent pandas implementations (issue 3, item 3).

Definitions: Wilder smoothing = EMA with alpha 1/n; EMA(span) alpha = 2/(span+1); population
std for Bollinger; CCI constant 0.015 with the mean absolute deviation. Compared after the
declared warm-up, within 1e-9 relative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def es(market):
    return market["ES"].iloc[:8000].reset_index(drop=True)


def _check(bars, name, want: pd.Series, rtol=1e-9):
    # float32 storage limits agreement to ~1e-7; compare the float64 kernel output instead
    from mia.features.batch import run_program
    from mia.features.inputs import build_inputs
    from mia.features.spec import make_spec

    spec = make_spec([name])
    got = run_program(spec, build_inputs(bars).matrix)[:, 0]
    w = spec.warmups[0]
    want = want.to_numpy()[w:]
    # relative to the indicator's scale: MACD and %B cross zero, where rtol alone means nothing
    scale = np.nanmax(np.abs(want))
    # a reference may start a few bars later than our warm-up (TA-Lib's lookbacks)
    defined = np.isfinite(want)
    assert defined[50:].all(), "reference undefined well after the warm-up"
    np.testing.assert_allclose(got[w:][defined], want[defined], rtol=rtol, atol=rtol * scale)


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False).mean()


def _tr(b: pd.DataFrame) -> pd.Series:
    pc = b["close"].shift(1)
    return pd.concat(
        [b["high"] - b["low"], (b["high"] - pc).abs(), (b["low"] - pc).abs()], axis=1
    ).max(axis=1)


def test_ema_matches_pandas_ewm(es):
    ema = es["close"].ewm(span=50, adjust=False).mean()
    _check(es, "ema_dist_50", es["close"] / ema - 1.0)


def test_rsi_14_is_wilder_rsi(es):
    delta = es["close"].diff().fillna(0.0)
    gain, loss = _wilder(delta.clip(lower=0), 14), _wilder((-delta).clip(lower=0), 14)
    _check(es, "rsi_14", 100.0 - 100.0 / (1.0 + gain / loss))


def test_atr_14_is_wilder_true_range(es):
    _check(es, "atr_14", _wilder(_tr(es), 14))


def test_adx_14_and_directional_indices(es):
    up, down = es["high"].diff().fillna(0.0), (-es["low"].diff()).fillna(0.0)
    plus_dm = up.where((up > down) & (up > 0), 0.0)
    minus_dm = down.where((down > up) & (down > 0), 0.0)
    atr = _wilder(_tr(es), 14)
    plus = 100 * _wilder(plus_dm, 14) / atr
    minus = 100 * _wilder(minus_dm, 14) / atr
    adx = _wilder(100 * (plus - minus).abs() / (plus + minus), 14)
    _check(es, "plus_di_14", plus)
    _check(es, "minus_di_14", minus)
    _check(es, "adx_14", adx)


def test_macd_12_26_9(es):
    close = es["close"]
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    _check(es, "macd_12_26", macd)
    _check(es, "macd_signal_12_26_9", signal)
    _check(es, "macd_hist_12_26_9", macd - signal)


def test_bollinger_percent_b_and_width(es):
    # exact two-pass window statistics: pandas' rolling std updates sums incrementally and
    # carries its own rounding error, too large a reference at 1e-9
    win = np.lib.stride_tricks.sliding_window_view(es["close"].to_numpy(), 20)
    pad = np.full(19, np.nan)
    mid = pd.Series(np.r_[pad, win.mean(axis=1)])
    sd = pd.Series(np.r_[pad, win.std(axis=1)])
    upper, lower = mid + 2 * sd, mid - 2 * sd
    _check(es, "bb_pctb_20", (es["close"] - lower) / (upper - lower))
    _check(es, "bb_width_20", (upper - lower) / mid)


def test_stochastic_14_3(es):
    ll, hh = es["low"].rolling(14).min(), es["high"].rolling(14).max()
    k = 100 * (es["close"] - ll) / (hh - ll)
    _check(es, "stoch_k_14_3", k)
    _check(es, "stoch_d_14_3", k.rolling(3).mean())


def test_cci_20(es):
    tp = (es["high"] + es["low"] + es["close"]) / 3
    sma = tp.rolling(20).mean()
    mad = tp.rolling(20).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)
    _check(es, "cci_20", (tp - sma) / (0.015 * mad))


def test_momentum_10_is_in_atr_units(es):
    atr = _wilder(_tr(es), 14)
    _check(es, "momentum_10", (es["close"] - es["close"].shift(10)) / atr)


def test_orderflow_formulas_follow_the_reference(es):
    bid, ask = es["bid_volume"], es["ask_volume"]
    _check(es, "bid_ask_imbalance", (bid - ask) / (bid + ask))
    _check(es, "trade_aggressiveness", es["taker_volume"] / es["volume"])
    _check(es, "slippage_estimate", es["bid_ask_spread"] * es["order_volume"])
    _check(es, "iv_skew", (es["iv_call"] - es["iv_put"]) / es["strike"])
    _check(es, "iv_term_structure", es["iv_3m"] - es["iv_1m"])


def test_rsi_on_a_hand_checked_series():
    # closes up 1 for 14 bars then down 1: Wilder RSI seeded at 0 gain... after a long rise
    # the loss average is 0, so RSI = 100; one down bar of equal size gives 100*g/(g+l)
    from tests.unit.conftest import make_bars

    bars = make_bars()
    bars = bars.iloc[:400].copy()
    close = 4800.0 + np.arange(400, dtype=float)
    close[-1] = close[-2] - 1.0
    bars["close"] = close
    bars["open"] = close
    bars["high"] = close + 0.25
    bars["low"] = close - 0.25
    from mia.features.batch import run_program
    from mia.features.inputs import build_inputs
    from mia.features.spec import make_spec

    got = run_program(make_spec(["rsi_14"]), build_inputs(bars).matrix)[:, 0]
    assert got[-2] == pytest.approx(100.0, abs=1e-9)
    g = 13.0 / 14.0  # gain average decays once; loss average becomes 1/14 of the drop
    assert got[-1] == pytest.approx(100.0 * g / (g + 1.0 / 14.0), rel=1e-9)


def _talib_cases():
    import talib

    def hlc(b):
        return (b["high"].to_numpy(), b["low"].to_numpy(), b["close"].to_numpy())

    def stochf(b, i):
        return talib.STOCHF(*hlc(b), fastk_period=14, fastd_period=3, fastd_matype=0)[i]

    def bands(b):
        return talib.BBANDS(b["close"].to_numpy(), 20, 2.0, 2.0, 0)

    def macd(b, i):
        return talib.MACD(b["close"].to_numpy(), 12, 26, 9)[i]

    return {
        "rsi_14": lambda b: talib.RSI(b["close"].to_numpy(), 14),
        "atr_14": lambda b: talib.ATR(*hlc(b), 14),
        "adx_14": lambda b: talib.ADX(*hlc(b), 14),
        "plus_di_14": lambda b: talib.PLUS_DI(*hlc(b), 14),
        "minus_di_14": lambda b: talib.MINUS_DI(*hlc(b), 14),
        "ema_dist_20": lambda b: b["close"].to_numpy() / talib.EMA(b["close"].to_numpy(), 20) - 1,
        "macd_12_26": lambda b: macd(b, 0),
        "macd_signal_12_26_9": lambda b: macd(b, 1),
        "macd_hist_12_26_9": lambda b: macd(b, 2),
        "bb_pctb_20": lambda b: (b["close"].to_numpy() - bands(b)[2]) / (bands(b)[0] - bands(b)[2]),
        "stoch_k_14_3": lambda b: stochf(b, 0),
        "stoch_d_14_3": lambda b: stochf(b, 1),
        "cci_20": lambda b: talib.CCI(*hlc(b), 20),
        "williams_r_14": lambda b: talib.WILLR(*hlc(b), 14),
        "mfi_14": lambda b: talib.MFI(*hlc(b), b["volume"].to_numpy(), 14),
    }


@pytest.mark.parametrize("name", sorted(_talib_cases()))
def test_indicator_matches_talib_after_warmup(es, name):
    # TA-Lib seeds Wilder/EMA averages with an SMA; the seed's influence decays below 1e-12
    # within our declared warm-up, so the two agree from there on.
    want = pd.Series(_talib_cases()[name](es))
    _check(es, name, want)
