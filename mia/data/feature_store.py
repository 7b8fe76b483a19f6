"""Feature partitions: ``<root>/symbol=ES/date=YYYY-MM-DD.parquet`` plus ``spec.json``.

A symbol's features are rebuilt from its whole history, so a write replaces the symbol's folder
as a unit: the new partitions and spec go to a temporary folder that is swapped into place
(:func:`mia.data.files.replace_folder`). A reader never sees partitions of one build with the spec
of another, nor a moment without a build; rerunning a build overwrites, never appends, and
removes what a killed build left.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from mia.data.calendar import trade_dates
from mia.data.files import replace_folder, sweep_stale, temp_path, write_text_atomic
from mia.data.store import atomic_write_parquet, read_parquet
from mia.errors import StoreError
from mia.features.batch import FeatureFrame
from mia.features.spec import FeatureSpec


class FeatureStore:
    """Features of every symbol under one root (normally ``$MIA_HOME/data/features``).

    :param root: the store's root folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, symbol: str) -> Path:
        """:return: the folder of one symbol's features."""
        return self.root / f"symbol={symbol}"

    def write(self, ff: FeatureFrame) -> int:
        """Replace a symbol's features with a new build.

        :param ff: the build.
        :return: number of partitions written.
        """
        final = self.folder(ff.symbol)
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(final, ("tmp", "old"))  # what killed builds left
        tmp = temp_path(final)
        shutil.rmtree(tmp, ignore_errors=True)
        frame = ff.to_frame()
        days = trade_dates(frame["ts"])
        count = 0
        for day, part in frame.groupby(days, sort=True):
            atomic_write_parquet(tmp / f"date={day.isoformat()}.parquet", part)
            count += 1
        write_text_atomic(tmp / "spec.json", ff.spec.to_json())
        replace_folder(tmp, final)
        return count

    def spec(self, symbol: str) -> FeatureSpec:
        """:return: the spec the stored features were built with."""
        path = self.folder(symbol) / "spec.json"
        if not path.is_file():
            raise StoreError(
                f"no features stored for {symbol} under {self.root}; "
                "build them with 'mia features build'"
            )
        return FeatureSpec.from_json(path.read_text())

    def read(self, symbol: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Stored features of ``symbol`` over trade dates ``start..end`` (inclusive).

        :return: ``ts``, ``symbol`` and float32 feature columns in spec order.
        """
        self.spec(symbol)  # clear message when nothing is stored
        parts = []
        for path in sorted(self.folder(symbol).glob("date=*.parquet")):
            day = date.fromisoformat(path.stem[len("date=") :])
            if (start is None or day >= start) and (end is None or day <= end):
                parts.append(read_parquet(path))
        if not parts:
            raise StoreError(f"no {symbol} features for {start or '…'}..{end or '…'}")
        frame = pd.concat(parts, ignore_index=True)
        names = [c for c in frame.columns if c not in ("ts", "symbol")]
        frame[names] = frame[names].astype(np.float32)
        return frame
