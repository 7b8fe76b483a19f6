"""The Airflow side lives in the repo's dags/ and plugins/ folders, which Airflow puts on
sys.path; the tests do the same so they import `cme_timetable` and `_partition` as Airflow does."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for folder in (REPO / "plugins", REPO / "dags"):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
