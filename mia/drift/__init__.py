"""Drift: Evidently reports offline, PSI monitors online.

- :func:`drift_report` -> :class:`DriftSummary` — Evidently ``DataDriftPreset``, writes
  ``drift.html`` + ``drift.json`` (Evidently is imported inside the function).
- :func:`reference_quantiles`, :func:`bin_proportions`, :class:`PSIMonitor` — the live executor's
  cheap per-bar PSI (numpy + numba, no I/O).
"""

from mia.drift.psi import PSIMonitor, bin_proportions, psi_value, reference_quantiles
from mia.drift.report import ColumnDrift, DriftSummary, drift_report

__all__ = ["ColumnDrift", "DriftSummary", "PSIMonitor", "bin_proportions", "drift_report",
           "psi_value", "reference_quantiles"]
