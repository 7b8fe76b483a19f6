"""The live feature log: where the executor writes feature rows, and how the drift DAG reads them.

Layout (written by ``executor.feature_log.FeatureLog``, one file per flush, never rewritten)::

    <MIA_HOME>/live/features/symbol=<SYM>/date=<YYYY-MM-DD>/part-<first ts_ns>-<pid>-<seq>.parquet

``date`` is the UTC date of the rows' ``ts`` (a flush spanning midnight writes two files). Each
file is written to a hidden ``.part-….tmp`` name, fsynced and renamed, so a reader sees whole
files only; the reader ignores anything else in the folders. Columns: ``ts`` (timestamp[ns,
UTC], the bar close), ``symbol``, ``model_version`` (the bundle that computed the row), then the
bundle's raw feature values (float64) in its spec order. A bundle swap can change the feature
set between files; reading concatenates them (a feature absent from a file is NaN there).

The layout helpers import nothing heavy (the executor uses them); pandas is loaded by the reader.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mia.errors import OperationalError, StoreError

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS: Final[tuple[str, ...]] = ("ts", "symbol", "model_version")
PART_PREFIX: Final[str] = "part-"
PART_SUFFIX: Final[str] = ".parquet"


def symbol_dir(home: Path, symbol: str) -> Path:
    """:return: ``<home>/live/features/symbol=<symbol>``."""
    return Path(home) / "live" / "features" / f"symbol={symbol}"


def day_dir(home: Path, symbol: str, day: date) -> Path:
    """:return: the folder of one UTC date's part files."""
    return symbol_dir(home, symbol) / f"date={day.isoformat()}"


def read_live_features(
    home: Path,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """The feature rows the executor logged for ``symbol`` with ``start <= ts <= end``.

    :param home: ``MIA_HOME``.
    :param symbol: the symbol.
    :param start: first bar close to include (tz-aware), or ``None`` for the first logged.
    :param end: last bar close to include (tz-aware), or ``None`` for the last logged.
    :return: a frame in ts order, columns :data:`BASE_COLUMNS` then the features; a row logged
        twice (a bar re-processed after a crash) appears once. No logged rows in
        the range gives an empty frame with the base columns (a new deployment has none yet).
    :raises OperationalError: a naive or inverted time range.
    :raises StoreError: a part file is unreadable (the message names it).
    """
    import pandas as pd

    from mia.data.store import read_parquet

    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise OperationalError(f"live features: {name}={value.isoformat()} is naive; pass "
                                   "a tz-aware UTC time")
    if start is not None and end is not None and start > end:
        raise OperationalError(f"live features: start {start.isoformat()} is after end "
                               f"{end.isoformat()}")
    frames = []
    for path in _parts(home, symbol, start, end):
        try:
            frames.append(read_parquet(path))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise StoreError(f"{path}: unreadable live feature file ({exc}); delete it, the "
                             "other files are unaffected") from exc
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in BASE_COLUMNS})
        empty["ts"] = pd.to_datetime(empty["ts"], utc=True)
        return empty
    out = pd.concat(frames, ignore_index=True, sort=False)
    if start is not None:
        out = out[out["ts"] >= pd.Timestamp(start)]
    if end is not None:
        out = out[out["ts"] <= pd.Timestamp(end)]
    out = out.drop_duplicates(subset=["ts", "model_version"], keep="last")
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def _parts(home: Path, symbol: str, start: datetime | None, end: datetime | None) -> list[Path]:
    root = symbol_dir(home, symbol)
    if not root.is_dir():
        return []
    # UTC dates bound the folders; the rows are filtered by ts afterwards
    first = start.astimezone(UTC).date() if start is not None else None
    last = end.astimezone(UTC).date() if end is not None else None
    out: list[Path] = []
    for folder in sorted(root.glob("date=*")):
        try:
            day = date.fromisoformat(folder.name[len("date="):])
        except ValueError:
            continue  # not a date folder: never read
        if (first is None or day >= first) and (last is None or day <= last):
            out.extend(sorted(p for p in folder.glob(f"{PART_PREFIX}*{PART_SUFFIX}")
                              if p.is_file()))
    return out

