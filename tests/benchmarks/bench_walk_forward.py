"""Wall time of a quick-profile walk-forward (issue 4): five agents x two folds on three weeks
of synthetic ES (the proof-of-learning setup of tests/integration/walk_forward_data.py: six
features, (64, 64) networks, 6,000 steps per fold), one process, one torch thread, then the
evaluation with the four baselines. Results: tests/benchmarks/results/walk_forward.json.
"""

from __future__ import annotations

from tests.benchmarks.common import measure, record

QUICK = """
import tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from mia.agents import AGENTS
from mia.training.walk_forward import evaluate, train_fold
from tests.integration.walk_forward_data import small_params, synthetic_table

p = small_params()
t0 = time.perf_counter()
data = synthetic_table(p, planted_alpha=0.5)
prepared = time.perf_counter() - t0
per_agent, results = {}, []
with tempfile.TemporaryDirectory() as tmp:
    for a in AGENTS:
        t1 = time.perf_counter()
        for f in data.layout.folds:
            results.append(train_fold(p, data, a, f, folder=Path(tmp) / a / str(f.index),
                                      timesteps=6000))
        per_agent[a] = round(time.perf_counter() - t1, 2)
    t2 = time.perf_counter()
    ev = evaluate(p, data, results)
    evaluation = time.perf_counter() - t2
RESULT = {"agents": len(AGENTS), "folds": len(data.layout.folds), "steps_per_fold": 6000,
          "bars": len(data.close), "data_and_features_seconds": round(prepared, 2),
          "train_and_score_seconds_per_agent": per_agent,
          "evaluation_seconds": round(evaluation, 2),
          "total_seconds": round(time.perf_counter() - t0, 2),
          "oos_sharpe": {a: round(ev.metrics[a]["wf/sharpe"], 2) for a in ev.agents},
          "buy_and_hold_sharpe": round(ev.metrics["buy_and_hold"]["wf/sharpe"], 2)}
"""


def main() -> None:
    record("walk_forward", {"quick_profile": measure(QUICK)})


if __name__ == "__main__":
    main()
