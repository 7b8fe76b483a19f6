"""Offline drift report with Evidently 0.7 (``DataDriftPreset``): HTML for people, JSON for code.

Evidently picks a test per column from the sample size (Evidently docs, "data drift
algorithm"): for numeric columns with <= 1000 rows the two-sample Kolmogorov-Smirnov p-value
(drift when p < 0.05), above that the normed Wasserstein distance (drift when >= 0.1). The
``score`` of each :class:`ColumnDrift` is therefore a p-value or a distance according to its
``method``; ``drifted`` is Evidently's own verdict, read from the per-column test results rather
than re-derived, so the JSON and the HTML always agree.

Evidently is imported inside :func:`drift_report`, so ``import mia.drift`` stays light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mia.errors import DataValidationError, OperationalError

MIN_ROWS = 50  # below this a distribution test says little; Evidently itself accepts fewer


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's verdict on one column.

    :param column: column name.
    :param method: Evidently's test, e.g. ``K-S p_value`` or ``Wasserstein distance (normed)``.
    :param threshold: the test's threshold.
    :param score: p-value or distance, per ``method``.
    :param drifted: Evidently's verdict.
    """

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """Outcome of :func:`drift_report`.

    :param drifted_share: share of columns that drifted, 0..1.
    :param n_drifted: number of drifted columns.
    :param n_columns: number of columns compared.
    :param dataset_drifted: ``drifted_share >= drift_share``.
    :param columns: per-column verdicts, in column order.
    :param html_path: Evidently's HTML report.
    :param json_path: this summary plus Evidently's raw metrics and tests.
    """

    drifted_share: float
    n_drifted: int
    n_columns: int
    dataset_drifted: bool
    columns: tuple[ColumnDrift, ...]
    html_path: Path
    json_path: Path

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        """Names of the drifted columns."""
        return tuple(c.column for c in self.columns if c.drifted)


def _check_frames(reference: pd.DataFrame, current: pd.DataFrame,
                  columns: Sequence[str] | None) -> list[str]:
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise DataValidationError(f"drift: {name} must be a pandas DataFrame, got "
                                      f"{type(frame).__name__}")
    if columns is None:
        if set(reference.columns) != set(current.columns):
            only_ref = sorted(map(str, set(reference.columns) - set(current.columns)))[:5]
            only_cur = sorted(map(str, set(current.columns) - set(reference.columns)))[:5]
            raise DataValidationError(
                f"drift: reference and current have different columns (only in reference: "
                f"{only_ref}, only in current: {only_cur}); build both with the same "
                "FeatureSpec or pass columns=")
        cols = [str(c) for c in reference.columns]
    else:
        cols = [str(c) for c in columns]
        for name, frame in (("reference", reference), ("current", current)):
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise DataValidationError(f"drift: {name} lacks columns {missing[:5]}")
    if not cols:
        raise DataValidationError("drift: no columns to compare")
    if len(set(cols)) != len(cols):
        raise DataValidationError("drift: duplicate column names; names must be unique")
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) < MIN_ROWS:
            raise DataValidationError(f"drift: {name} has {len(frame)} rows, need >= {MIN_ROWS}; "
                                      "widen the window (drift.reference_bars)")
        bad = [c for c in cols if not pd.api.types.is_numeric_dtype(frame[c])
               or pd.api.types.is_bool_dtype(frame[c])]
        if bad:
            raise DataValidationError(f"drift: {name} has non-numeric columns {bad[:5]}; pass "
                                      "feature columns only")
        empty = [c for c in cols if not frame[c].notna().any()]
        if empty:
            raise DataValidationError(f"drift: {name} columns {empty[:5]} are all NaN; drop them "
                                      "or take the window after warm-up")
    return cols


def _parse(snapshot: dict[str, Any], cols: list[str]) -> list[ColumnDrift]:
    verdicts: dict[str, bool] = {}
    for test in snapshot.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id is not None and test.get("status") in ("SUCCESS", "FAIL"):
            verdicts.setdefault(metric_id, test["status"] == "FAIL")
    by_column: dict[str, ColumnDrift] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = str(config["column"])
        if metric["id"] not in verdicts:
            raise OperationalError(f"drift: Evidently gave no verdict for column {column!r}; "
                                   "check the installed evidently version (0.7 expected)")
        by_column[column] = ColumnDrift(column=column, method=str(config["method"]),
                                        threshold=float(config["threshold"]),
                                        score=float(metric["value"]),
                                        drifted=verdicts[metric["id"]])
    absent = [c for c in cols if c not in by_column]
    if absent:
        raise OperationalError(f"drift: Evidently returned no drift result for {absent[:5]}; "
                               "check the installed evidently version (0.7 expected)")
    return [by_column[c] for c in cols]


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    *,
    columns: Sequence[str] | None = None,
    drift_share: float = 0.5,
) -> DriftSummary:
    """Compare ``current`` with ``reference`` column by column; write ``drift.html`` and
    ``drift.json`` into ``out_dir`` (overwriting earlier ones).

    All compared columns are declared numerical to Evidently, so a low-cardinality feature is
    not silently tested as categorical. NaN values are left to Evidently, which drops them.

    :param reference: reference window (e.g. the training period), numeric columns.
    :param current: window to check, same columns.
    :param out_dir: created if missing.
    :param columns: columns to compare; ``None``: all, and both frames must have the same set.
    :param drift_share: share of drifted columns at which the dataset counts as drifted
        (``drift.drift_share``).
    :raises DataValidationError: different columns, fewer than :data:`MIN_ROWS` rows, a
        non-numeric or all-NaN column.
    :raises OperationalError: Evidently's output lacks a verdict (unexpected version).
    """
    cols = _check_frames(reference, current, columns)
    if not 0 < drift_share <= 1:
        raise OperationalError(f"drift: drift_share={drift_share!r} must be in (0, 1]; fix "
                               "drift.drift_share in params.yaml")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=cols)
    ref_ds = Dataset.from_pandas(reference[cols], data_definition=definition)
    cur_ds = Dataset.from_pandas(current[cols], data_definition=definition)
    report = Report([DataDriftPreset(columns=cols, drift_share=drift_share)], include_tests=True)
    snapshot = report.run(cur_ds, ref_ds)
    raw = json.loads(snapshot.json())  # Evidently's encoder turns numpy scalars into JSON
    per_column = _parse(raw, cols)
    n_drifted = sum(c.drifted for c in per_column)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = DriftSummary(
        drifted_share=n_drifted / len(cols), n_drifted=n_drifted, n_columns=len(cols),
        dataset_drifted=n_drifted / len(cols) >= drift_share, columns=tuple(per_column),
        html_path=out_dir / "drift.html", json_path=out_dir / "drift.json")
    # Snapshot.save_html silently ignores anything but a str path (evidently 0.7.x)
    tmp_html = summary.html_path.with_suffix(".html.tmp")
    snapshot.save_html(str(tmp_html))
    os.replace(tmp_html, summary.html_path)
    payload = {
        "drifted_share": summary.drifted_share,
        "n_drifted": n_drifted,
        "n_columns": len(cols),
        "drift_share_threshold": drift_share,
        "dataset_drifted": summary.dataset_drifted,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "columns": [asdict(c) for c in per_column],
        "evidently": raw,
    }
    tmp_json = summary.json_path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp_json, summary.json_path)
    return summary
