"""Selection and drift benchmarks: SHAP selection, Evidently report, PSI monitor per bar.

Targets: SHAP selection of 150 of 350 features on 20k rows, one fold, <= 15 s on 2 cores.
The Evidently report (150 features x 10k rows each side) and the PSI update (150 features) are
reported, with no target. Each step runs in a fresh process; the 1-minute load average at its
start is recorded because other work on the machine slows OpenMP code (see shap_rank.py).
Results: tests/benchmarks/results/selection_drift.json.
"""

from __future__ import annotations

import tempfile

from tests.benchmarks.common import measure, record

SELECTION = """
import os, time
import numpy as np, pandas as pd
load = os.getloadavg()[0]
rng = np.random.default_rng(0)
rows, features = 20_000, 350
X = rng.normal(size=(rows, features)).astype(np.float32)
X[:300] = np.nan  # warm-up rows
y = 0.5 * X[:, 3] - 0.4 * X[:, 120] + 0.3 * np.tanh(X[:, 301]) + rng.normal(size=rows)
y[-15:] = np.nan
frame = pd.DataFrame(X, columns=[f"f{i:03d}" for i in range(features)])
t0 = time.perf_counter()
from mia.selection import select_features
t1 = time.perf_counter()
r = select_features(frame, y, n_select=150, folds=FOLDS, purge=15, embargo=60, seed=7)
t2 = time.perf_counter()
RESULT = {"rows": rows, "features": features, "folds": FOLDS, "rows_used": r.rows_used,
          "import_seconds": round(t1 - t0, 3), "seconds": round(t2 - t1, 3),
          "planted_in_top_3": sorted(r.selected[:3]) == ["f003", "f120", "f301"],
          "stability": round(r.stability, 3), "load_avg_1m": load}
"""

EVIDENTLY = """
import os, time
from pathlib import Path
import numpy as np, pandas as pd
load = os.getloadavg()[0]
rng = np.random.default_rng(1)
cols = [f"f{i:03d}" for i in range(150)]
ref = pd.DataFrame(rng.normal(size=(10_000, 150)).astype(np.float32), columns=cols)
cur = pd.DataFrame(rng.normal(size=(10_000, 150)).astype(np.float32), columns=cols)
cur.iloc[:, :15] += 0.5
t0 = time.perf_counter()
from mia.drift import drift_report
import evidently  # noqa: F401  (import time reported separately)
t1 = time.perf_counter()
s = drift_report(ref, cur, Path(OUT), drift_share=0.3)
t2 = time.perf_counter()
RESULT = {"rows_each_side": 10_000, "features": 150, "import_seconds": round(t1 - t0, 3),
          "seconds": round(t2 - t1, 3), "n_drifted": s.n_drifted,
          "html_mb": round(s.html_path.stat().st_size / 2**20, 2), "load_avg_1m": load}
"""

PSI = """
import os, time
import numpy as np
load = os.getloadavg()[0]
from mia.drift.psi import PSIMonitor, bin_proportions, reference_quantiles
rng = np.random.default_rng(2)
F, window, n = 150, 20_000, 200_000
ref = rng.normal(size=(window, F))
edges = reference_quantiles(ref, 10)
m = PSIMonitor(edges, window=window, expected=bin_proportions(ref, edges))
live = rng.normal(size=(n, F))
t0 = time.perf_counter()
m.update(live[0])  # first call loads or compiles the numba kernel
t1 = time.perf_counter()
for i in range(1, n):
    m.update(live[i])
t2 = time.perf_counter()
for _ in range(100):
    p = m.psi()
t3 = time.perf_counter()
RESULT = {"features": F, "window": window, "updates": n,
          "first_update_seconds": round(t1 - t0, 3),
          "update_us_per_bar": round((t2 - t1) / (n - 1) * 1e6, 3),
          "psi_us_per_call": round((t3 - t2) / 100 * 1e6, 1),
          "monitor_mb": round(m.nbytes / 2**20, 2), "max_psi": round(float(p.max()), 4),
          "load_avg_1m": load}
"""


def main() -> None:
    one_fold = measure("FOLDS = 1\n" + SELECTION)
    four_folds = measure("FOLDS = 4\n" + SELECTION)
    with tempfile.TemporaryDirectory() as tmp:
        evidently = measure(f"OUT = {tmp!r}\n" + EVIDENTLY)
    psi = measure(PSI)
    record("selection_drift", {
        "shap_selection_20k_x_350_one_fold": {**one_fold, "target_seconds": 15},
        "shap_selection_20k_x_350_four_folds": four_folds,
        "evidently_report_150_features_10k_rows": evidently,
        "psi_monitor_update_150_features": psi,
    })


if __name__ == "__main__":
    main()
