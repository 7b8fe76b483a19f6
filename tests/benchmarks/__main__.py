"""`make bench`: run every benchmark module, each writing JSON under tests/benchmarks/results/."""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "tests.benchmarks.bench_data",
    "tests.benchmarks.bench_features",
    "tests.benchmarks.bench_selection",
    "tests.benchmarks.bench_envs",
    "tests.benchmarks.bench_agents",
    "tests.benchmarks.bench_walk_forward",
    "tests.benchmarks.bench_bundle",
    "tests.benchmarks.bench_risk",
    "tests.benchmarks.bench_dags",
    "tests.benchmarks.bench_executor",
)


def main() -> int:
    for name in MODULES:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
