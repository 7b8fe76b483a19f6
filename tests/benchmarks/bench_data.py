"""Data-layer benchmarks (issue 2): synthetic year of ES, 1M-row CSV ingest.

Targets: one year of 1-minute ES bars with all groups in <= 10 s and <= 1.5 GB peak RSS;
ingest of a 1M-row CSV in <= 15 s. Results: tests/benchmarks/results/data.json.
"""

from __future__ import annotations

import tempfile

from tests.benchmarks.common import measure, record

GENERATE = """
import time
from datetime import date
t0 = time.perf_counter()
from mia.data.synthetic import generate_market
m = generate_market(["ES"], date(2024, 1, 2), date(2024, 12, 31), seed=7)
t1 = time.perf_counter()
m2 = generate_market(["ES"], date(2024, 1, 2), date(2024, 12, 31), seed=8)
t2 = time.perf_counter()
RESULT = {"bars": len(m.bars["ES"]), "columns": m.bars["ES"].shape[1],
          "seconds_first_call": round(t1 - t0, 3), "seconds_warm": round(t2 - t1, 3)}
"""

MAKE_CSV = """
from datetime import date
import numpy as np, pandas as pd
from mia.data.calendar import session_index
ts = session_index(date(2021, 1, 4), date(2023, 12, 29))[:1_000_000]
rng = np.random.default_rng(0)
close = 4000 + np.cumsum(rng.normal(0, 0.5, len(ts))).round(2)
open_ = np.r_[close[0], close[:-1]]
v = rng.integers(1, 500, len(ts)).astype(float)
pd.DataFrame({"ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": open_,
              "high": np.maximum(open_, close) + 0.25, "low": np.minimum(open_, close) - 0.25,
              "close": close, "volume": v, "bid_volume": v / 2, "ask_volume": v / 2,
              "taker_volume": v / 3, "bid_ask_spread": 0.25, "order_volume": 10.0,
              }).to_csv(PATH, index=False)
RESULT = {"rows": len(ts)}
"""

INGEST = """
import time
from pathlib import Path
t0 = time.perf_counter()
from mia.data.ingest import ingest_file
from mia.data.store import BarStore
rep = ingest_file(BarStore(Path(ROOT)), Path(PATH), symbol="ES")
RESULT = {"rows": rep.rows_read, "partitions": rep.write.partitions,
          "seconds": round(time.perf_counter() - t0, 3)}
"""


def main() -> None:
    gen = measure(GENERATE)
    with tempfile.TemporaryDirectory() as tmp:
        csv = f"{tmp}/bars.csv"
        measure(f"PATH = {csv!r}\n" + MAKE_CSV)
        ingest = measure(f"PATH = {csv!r}\nROOT = {tmp + '/raw'!r}\n" + INGEST)
    record("data", {
        "generate_one_year_es": {**gen, "target_seconds": 10, "target_peak_rss_mb": 1536},
        "ingest_1m_row_csv": {**ingest, "target_seconds": 15},
    })


if __name__ == "__main__":
    main()
