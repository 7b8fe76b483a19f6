"""Shared helpers: run a measured step in a fresh process, record results as JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(code: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it must print one JSON object (its own figures).

    :return: those figures plus ``wall_seconds`` and ``peak_rss_mb`` of the child process.
    """
    start = time.perf_counter()
    # /usr/bin/time is not everywhere; the child reports its own peak RSS via resource.
    wrapped = (
        "import json, resource\n" + code +
        "\n_r = dict(RESULT); _r['peak_rss_mb'] = "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\nprint(json.dumps(_r))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True,
                         check=False, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["wall_seconds"] = round(time.perf_counter() - start, 3)
    return figures


def record(name: str, results: dict[str, object]) -> Path:
    """Write one benchmark's results with the machine and commit they were measured on."""
    RESULTS.mkdir(exist_ok=True)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip()
    payload = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": sha,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "results": results,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return path
