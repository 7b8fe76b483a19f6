"""The bar contract (design.md section 4), checked on every write to the store.

:func:`validate_bars` either returns a canonical frame (columns in contract order, float64
numbers, UTC ``ts``, sorted by symbol then ts) or raises :class:`DataValidationError` naming the
column, the rule and the first offending rows. It never repairs data silently: corrupt data is
worse than no data (design.md section 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from mia.errors import DataValidationError
from mia.types import OPTIONAL_GROUPS, PRICE_COLUMNS, REQUIRED_COLUMNS, SYMBOLS, VOLUME_COLUMNS

_SHOW: Final[int] = 5  # offending rows quoted in a message
_NON_NEGATIVE: Final[tuple[str, ...]] = (
    "bid_ask_spread",
    "iv_call",
    "iv_put",
    "iv_1m",
    "iv_3m",
    "vix",
)


def present_groups(columns: Sequence[str]) -> tuple[str, ...]:
    """:param columns: column names of a frame.
    :return: the optional groups whose columns are all present, in contract order.
    """
    cols = set(columns)
    return tuple(g for g, members in OPTIONAL_GROUPS.items() if set(members) <= cols)


def contract_columns(groups: Sequence[str]) -> list[str]:
    """:param groups: optional groups present.
    :return: the columns of a canonical frame with those groups, in contract order.
    """
    out = list(REQUIRED_COLUMNS)
    for g in OPTIONAL_GROUPS:
        if g in groups:
            out.extend(OPTIONAL_GROUPS[g])
    return out


class _Rows:
    """Formats row positions the way the reader of the source knows them."""

    def __init__(self, where: str, first_line: int | None) -> None:
        self.where = where
        self.first_line = first_line

    def quote(self, positions: np.ndarray, frame: pd.DataFrame, column: str | None) -> str:
        total = len(positions)
        shown = positions[:_SHOW]
        parts = []
        for p in shown:
            label = f"line {p + self.first_line}" if self.first_line is not None else f"row {p}"
            if column is not None:
                parts.append(f"{label} ({column}={_show(frame[column].iat[p])})")
            else:
                parts.append(label)
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        return ", ".join(parts) + more


def _show(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return str(value.isoformat())
    if isinstance(value, np.floating | np.integer):
        return repr(value.item())
    return repr(value)


def validate_bars(
    frame: pd.DataFrame,
    *,
    where: str = "bars",
    first_line: int | None = None,
) -> pd.DataFrame:
    """Check a frame against the bar contract and return its canonical form.

    :param frame: bars of one or more symbols, in any row order of the source.
    :param where: what to call the source in messages (a file name, a partition).
    :param first_line: the source line number of the frame's first row (2 for a CSV with a
        header); when given, messages quote lines instead of 0-based rows.
    :return: a new frame with the contract's columns in order, sorted by (symbol, ts).
    :raises DataValidationError: on the first broken rule, naming column, rule and rows.
    """
    rows = _Rows(where, first_line)
    _check_columns(frame, where)
    groups = present_groups(list(frame.columns))
    columns = contract_columns(groups)
    out = frame.loc[:, columns].reset_index(drop=True)
    out["ts"] = _check_ts(out, rows)
    out["symbol"] = _check_symbol(out, rows)
    for col in columns[2:]:
        out[col] = _check_numeric(out, col, rows)
    _check_values(out, rows)
    _check_order(out, rows)
    return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _fail(where: str, message: str) -> DataValidationError:
    return DataValidationError(f"{where}: {message}; nothing was written")


def _check_columns(frame: pd.DataFrame, where: str) -> None:
    cols = set(map(str, frame.columns))
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise _fail(
            where,
            f"missing required column(s) {', '.join(missing)}; a bar needs "
            f"{', '.join(REQUIRED_COLUMNS)} (rename source columns with --map SOURCE=NAME)",
        )
    for group, members in OPTIONAL_GROUPS.items():
        have = [c for c in members if c in cols]
        if have and len(have) < len(members):
            lacking = [c for c in members if c not in cols]
            raise _fail(
                where,
                f"optional group '{group}' is partial: has {', '.join(have)} but not "
                f"{', '.join(lacking)}; provide all of {', '.join(members)} or none",
            )
    known = set(REQUIRED_COLUMNS).union(*OPTIONAL_GROUPS.values())
    unknown = sorted(cols - known)
    if unknown:
        raise _fail(
            where,
            f"unknown column(s) {', '.join(unknown)}; map them to bar columns with --map "
            "SOURCE=NAME or drop them (docs/data.md lists the columns)",
        )


def _check_ts(frame: pd.DataFrame, rows: _Rows) -> pd.Series:
    ts = frame["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise _fail(rows.where, f"column ts has dtype {ts.dtype}, expected tz-aware timestamps")
    if getattr(ts.dt, "tz", None) is None:
        raise _fail(
            rows.where,
            "column ts is timezone-naive; give timestamps with a UTC offset "
            "(e.g. 2024-01-02T14:31:00Z) or state the zone with --tz",
        )
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        raise _fail(
            rows.where, f"column ts has missing timestamps at {rows.quote(bad, frame, None)}"
        )
    return ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _check_symbol(frame: pd.DataFrame, rows: _Rows) -> pd.Series:
    sym = frame["symbol"].astype("string")
    bad = np.flatnonzero(~sym.isin(SYMBOLS).to_numpy(dtype=bool, na_value=False))
    if len(bad):
        raise _fail(
            rows.where,
            f"column symbol has unknown symbols at {rows.quote(bad, frame, 'symbol')}; "
            f"known: {', '.join(SYMBOLS)} (set one with --symbol)",
        )
    return sym.astype(object)


def _check_numeric(frame: pd.DataFrame, col: str, rows: _Rows) -> pd.Series:
    raw = frame[col]
    if pd.api.types.is_bool_dtype(raw) or not (
        pd.api.types.is_numeric_dtype(raw)
        or raw.dtype == object
        or pd.api.types.is_string_dtype(raw)
    ):
        raise _fail(rows.where, f"column {col} has dtype {raw.dtype}, expected numbers")
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy())
    if len(bad):
        raise _fail(
            rows.where, f"column {col} has non-numeric values at {rows.quote(bad, frame, col)}"
        )
    arr = values.to_numpy()
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise _fail(
            rows.where,
            f"column {col} has missing or infinite values at {rows.quote(bad, frame, col)}",
        )
    return values


def _check_values(frame: pd.DataFrame, rows: _Rows) -> None:
    def reject(mask: np.ndarray, col: str, rule: str) -> None:
        bad = np.flatnonzero(mask)
        if len(bad):
            raise _fail(rows.where, f"column {col} {rule} at {rows.quote(bad, frame, col)}")

    for col in PRICE_COLUMNS:
        if col in frame:
            reject(frame[col].to_numpy() <= 0, col, "has zero or negative prices")
    for col in VOLUME_COLUMNS + _NON_NEGATIVE:
        if col in frame:
            reject(frame[col].to_numpy() < 0, col, "has negative values")
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    reject(h < lo, "high", "is below low")
    reject(lo > np.minimum(o, c), "low", "is above min(open, close)")
    reject(h < np.maximum(o, c), "high", "is below max(open, close)")
    if "news_impact" in frame:
        reject(np.abs(frame["news_impact"].to_numpy()) > 1, "news_impact", "is outside [-1, 1]")


def _check_order(frame: pd.DataFrame, rows: _Rows) -> None:
    ns = frame["ts"].astype("int64").to_numpy()
    for sym, idx in frame.groupby("symbol", sort=True).indices.items():
        step = np.diff(ns[idx])
        dup = np.flatnonzero(step == 0) + 1
        if len(dup):
            raise _fail(
                rows.where,
                f"column ts has duplicate timestamps for {sym} at "
                f"{rows.quote(idx[dup], frame, 'ts')}; each (symbol, ts) must be unique",
            )
        back = np.flatnonzero(step < 0) + 1
        if len(back):
            raise _fail(
                rows.where,
                f"column ts goes backwards for {sym} at {rows.quote(idx[back], frame, 'ts')}; "
                "timestamps must increase within a symbol",
            )
