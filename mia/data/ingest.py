"""Read a vendor's CSV or Parquet file into canonical bars (docs/data.md, "Ingest format").

Timestamps must carry a UTC offset (``2024-01-02T14:31:00Z`` or ``…-05:00``) unless the caller
names the zone of naive ones with ``tz``; nothing is guessed. Column names are mapped with
``column_map`` (source -> bar column); columns that are neither bar columns nor mapped must be
dropped explicitly so a misspelt column never vanishes silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from mia.data.schema import validate_bars
from mia.data.store import BarStore, WriteReport, read_parquet
from mia.errors import DataValidationError
from mia.types import OPTIONAL_GROUPS, REQUIRED_COLUMNS

_OFFSET: Final[str] = r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_KNOWN: Final[frozenset[str]] = frozenset(REQUIRED_COLUMNS).union(*OPTIONAL_GROUPS.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestReport:
    """What an ingest did: the store write plus what was read."""

    source: Path
    rows_read: int
    dropped: tuple[str, ...]
    write: WriteReport


def read_bars_file(
    path: Path,
    *,
    symbol: str | None = None,
    column_map: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    tz: str | None = None,
) -> pd.DataFrame:
    """Read and validate a bar file without writing anything.

    :param path: a ``.csv`` (optionally ``.gz``) or ``.parquet`` file.
    :param symbol: the symbol of every row when the file has no ``symbol`` column; when it has
        one, every row must carry this symbol.
    :param column_map: source column -> bar column renames.
    :param drop: source columns to ignore.
    :param tz: IANA zone of naive timestamps (e.g. ``America/Chicago``); None refuses them.
    :return: canonical bars (see :func:`mia.data.schema.validate_bars`).
    :raises DataValidationError: naming the column and the first offending lines.
    """
    where = str(path)
    frame, first_line = _read(path)
    frame = _rename(frame, dict(column_map or {}), list(drop), where)
    frame = _attach_symbol(frame, symbol, where)
    frame["ts"] = _parse_ts(frame["ts"], tz, where, first_line)
    return validate_bars(frame, where=where, first_line=first_line)


def ingest_file(
    store: BarStore,
    path: Path,
    *,
    symbol: str | None = None,
    column_map: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    tz: str | None = None,
    progress: bool = False,
) -> IngestReport:
    """Read, validate and write a bar file into the store; on any error nothing is written.

    :param store: the destination store.
    :param path: the source file (see :func:`read_bars_file` for the other parameters).
    :param progress: show a progress bar while writing partitions.
    """
    bars = read_bars_file(path, symbol=symbol, column_map=column_map, drop=drop, tz=tz)
    report = store.write(bars, where=str(path), progress=progress)
    return IngestReport(source=path, rows_read=len(bars), dropped=tuple(drop), write=report)


def _read(path: Path) -> tuple[pd.DataFrame, int | None]:
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return read_parquet(path), None
        if name.endswith((".csv", ".csv.gz", ".txt")):
            # pyarrow parses uniform ISO timestamps itself; mixed or bad ones stay text and are
            # checked row by row in _parse_ts.
            return pd.read_csv(path, engine="pyarrow"), 2
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"{path}: cannot be read as a bar file ({exc})") from exc
    raise DataValidationError(f"{path}: unknown file type; give a .csv, .csv.gz or .parquet file")


def _rename(
    frame: pd.DataFrame, column_map: dict[str, str], drop: list[str], where: str
) -> pd.DataFrame:
    absent = [c for c in [*column_map, *drop] if c not in frame.columns]
    if absent:
        raise DataValidationError(
            f"{where}: --map/--drop name column(s) {', '.join(absent)} that the file does not "
            f"have; its columns are {', '.join(map(str, frame.columns))}"
        )
    bad_targets = sorted(set(column_map.values()) - _KNOWN)
    if bad_targets:
        raise DataValidationError(
            f"{where}: --map targets {', '.join(bad_targets)} are not bar columns "
            "(docs/data.md lists them)"
        )
    frame = frame.drop(columns=drop).rename(columns=column_map)
    unknown = [c for c in frame.columns if c not in _KNOWN]
    if unknown:
        raise DataValidationError(
            f"{where}: unknown column(s) {', '.join(map(str, unknown))}; rename them with "
            f"--map SOURCE=NAME or ignore them with --drop {','.join(map(str, unknown))}"
        )
    return frame


def _attach_symbol(frame: pd.DataFrame, symbol: str | None, where: str) -> pd.DataFrame:
    if "symbol" not in frame.columns:
        if symbol is None:
            raise DataValidationError(
                f"{where}: the file has no symbol column; say which contract it holds with --symbol"
            )
        return frame.assign(symbol=symbol)
    if symbol is not None:
        other = np.flatnonzero(frame["symbol"].astype(str).to_numpy() != symbol)
        if len(other):
            raise DataValidationError(
                f"{where}: --symbol {symbol} given but the file's symbol column says "
                f"{frame['symbol'].iat[other[0]]!r} at row {other[0]}; drop --symbol or the rows"
            )
    return frame


def _parse_ts(raw: pd.Series, tz: str | None, where: str, first_line: int | None) -> pd.Series:
    def lines(positions: np.ndarray) -> str:
        base = first_line if first_line is not None else 0
        label = "line" if first_line is not None else "row"
        shown = ", ".join(f"{label} {p + base} ({raw.iat[p]!r})" for p in positions[:5])
        more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
        return shown + more

    if pd.api.types.is_datetime64_any_dtype(raw):
        if getattr(raw.dt, "tz", None) is not None:
            return raw
        if tz is None:
            raise DataValidationError(
                f"{where}: column ts holds timezone-naive timestamps; store them with a zone or "
                "name it with --tz (e.g. --tz America/Chicago); nothing was written"
            )
        return _localize(raw, tz, where)
    if pd.api.types.is_numeric_dtype(raw):
        raise DataValidationError(
            f"{where}: column ts holds numbers ({raw.dtype}); give ISO 8601 timestamps with a "
            "UTC offset, e.g. 2024-01-02T14:31:00Z; nothing was written"
        )
    text = raw.astype("string").str.strip()
    has_offset = text.str.contains(_OFFSET, regex=True).fillna(False).to_numpy(dtype=bool)
    missing = np.flatnonzero(text.isna().to_numpy())
    if len(missing):
        raise DataValidationError(
            f"{where}: column ts is empty at {lines(missing)}; nothing was written"
        )
    # Unparseable text first (naive text parses here as UTC), then the offset rule.
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataValidationError(
            f"{where}: column ts cannot be parsed at {lines(bad)}; use ISO 8601 such as "
            "2024-01-02T14:31:00Z; nothing was written"
        )
    if tz is None:
        naive = np.flatnonzero(~has_offset)
        if len(naive):
            raise DataValidationError(
                f"{where}: column ts has timestamps without a UTC offset at {lines(naive)}; add "
                "the offset (…Z or …-05:00) or name their zone with --tz; nothing was written"
            )
    else:
        if has_offset.any():
            raise DataValidationError(
                f"{where}: --tz {tz} given but column ts already carries offsets at "
                f"{lines(np.flatnonzero(has_offset))}; drop --tz; nothing was written"
            )
        parsed = _localize(pd.to_datetime(text, format="ISO8601"), tz, where)
    return parsed


def _localize(naive: pd.Series, tz: str, where: str) -> pd.Series:
    try:
        return naive.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    except Exception as exc:  # noqa: BLE001 - pytz/zoneinfo raise several types
        raise DataValidationError(
            f"{where}: cannot place naive timestamps in zone {tz!r} ({exc}); give UTC offsets "
            "instead; nothing was written"
        ) from exc
