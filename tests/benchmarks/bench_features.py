"""Feature benchmarks (issue 3): batch 350 features over 1M bars, per-indicator vs TA-Lib,
online update latency for 150 features. Results: tests/benchmarks/results/features.json.

Targets: batch <= 10 s and <= 4 GB peak RSS on 2 cores; online p50 <= 10 us, p99 <= 30 us;
per indicator within 3x of TA-Lib (best of 5 runs each; the machine runs a generic op program,
op by op over blocks of bars, TA-Lib one hand-written C loop per indicator).
"""

from __future__ import annotations

from tests.benchmarks.common import measure, record

MARKET = """
from datetime import date
from mia.data.synthetic import generate_market
m = generate_market(["ES", "MNQ"], date(2021, 1, 4), date(2023, 11, 24), seed=7)
es, mnq = m.bars["ES"].iloc[:1_000_000], m.bars["MNQ"].iloc[:1_000_000]
"""

BATCH = MARKET + """
import time
from mia.features.batch import build_features
build_features(es.iloc[:5000], cross=mnq.iloc[:5000])  # compile / load the numba cache
t0 = time.perf_counter()
ff = build_features(es, cross=mnq)
RESULT = {"bars": len(es), "features": len(ff.spec.names),
          "seconds": round(time.perf_counter() - t0, 3),
          "kernel_seconds": round(ff.report.seconds, 3)}
"""

PER_INDICATOR = MARKET + """
import time
import talib
from mia.features.batch import run_program
from mia.features.inputs import build_inputs
from mia.features.spec import make_spec
inp = build_inputs(es).matrix
h, l, c = es["high"].to_numpy(), es["low"].to_numpy(), es["close"].to_numpy()
cases = {
    "rsi_14": lambda: talib.RSI(c, 14), "atr_14": lambda: talib.ATR(h, l, c, 14),
    "adx_14": lambda: talib.ADX(h, l, c, 14), "ema_dist_20": lambda: talib.EMA(c, 20),
    "macd_12_26": lambda: talib.MACD(c, 12, 26, 9), "bb_pctb_20": lambda: talib.BBANDS(c, 20),
    "stoch_k_14_3": lambda: talib.STOCHF(h, l, c, 14, 3), "cci_20": lambda: talib.CCI(h, l, c, 20),
}
def best(fn, repeats=5):
    # best of several runs, both sides alike: one run measures the machine's noise as much
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); seconds.append(time.perf_counter() - t0)
    return min(seconds)
RESULT = {}
for name, ref in cases.items():
    spec = make_spec([name]); run_program(spec, inp[:1000]); ref()
    ours, theirs = best(lambda: run_program(spec, inp)), best(ref)
    RESULT[name] = {"mia_ms": round(ours * 1e3, 2), "talib_ms": round(theirs * 1e3, 2),
                    "ratio": round(ours / theirs, 2)}
"""

ONLINE = """
import time
from datetime import date
import numpy as np
from mia.data.synthetic import generate_market
from mia.features.inputs import build_inputs
from mia.features.online import OnlineFeatures
from mia.features.registry import registry
from mia.features.spec import make_spec
m = generate_market(["ES", "MNQ"], date(2024, 1, 2), date(2024, 6, 28), seed=7)
inp = build_inputs(m.bars["ES"], m.bars["MNQ"]).matrix
names = [n for n, d in registry().items() if "regime" not in d.groups][::2][:150]
online = OnlineFeatures(make_spec(names))
for row in inp[:10_000]:
    online.update(row)  # warm up state and the JIT
lat = np.empty(len(inp) - 10_000)
clock = time.perf_counter_ns
for i, row in enumerate(inp[10_000:]):
    t0 = clock(); online.update(row); lat[i] = clock() - t0
q = np.percentile(lat, [50, 99, 99.9]) / 1e3
RESULT = {"features": len(names), "bars": len(lat), "p50_us": round(q[0], 2),
          "p99_us": round(q[1], 2), "p999_us": round(q[2], 2)}
"""


def main() -> None:
    record("features", {
        "batch_350_features_1m_bars": {**measure(BATCH), "target_seconds": 10,
                                       "target_peak_rss_mb": 4096},
        "online_150_features_per_bar": {**measure(ONLINE), "target_p50_us": 10,
                                        "target_p99_us": 30},
        "per_indicator_vs_talib_1m_bars": {**measure(PER_INDICATOR), "target_ratio": 3},
    })


if __name__ == "__main__":
    main()
