"""Walk-forward splits with a purge and an embargo (López de Prado, 2018, *Advances in
Financial Machine Learning*, ch. 7).

Layout, in rows of a time-ordered table (row ``i`` is older than row ``i + 1``)::

    anchor                      v0          v1          v2 = n_rows - V
      |<-- train fold 0 -->|purge|<-- val 0 -->|<-- val 1 -->|<-- val 2 -->|
      |<-- train fold 1 (expanding) ------>|purge|  ...

- **Validation windows** have ``V`` rows each and tile the *end* of the data in time order:
  fold ``k`` validates on ``[n_rows - (folds - k) * V, n_rows - (folds - k - 1) * V)``, so the
  last fold ends at the last row and no two validation windows overlap.
- **Purge.** Every train window stops ``purge`` rows before its validation window starts. A label
  at row ``t`` that looks ``horizon <= purge`` rows ahead reads rows ``t + 1 .. t + horizon``;
  the last train row is ``start - purge - 1``, so its label ends at row ``start - 1`` at the
  latest and never reads a validation row.
- **Train windows.** Fold 0's train window is ``[anchor, v0 - purge)``, ``train_rows`` long
  (``None``: everything before, ``anchor = 0``). *rolling* keeps that length and slides it with
  the validation window; *expanding* keeps the anchor and grows.
- **Embargo.** A later train window can contain earlier validation windows (that is past data for
  it). The ``embargo`` rows right *after* each validation window ``j`` (rows
  ``[end_j, end_j + embargo)``) are removed from the train window of every fold ``k > j`` that
  contains them, because their features are serially correlated with the end of validation
  window ``j`` (López de Prado, 2018, §7.4.2). This applies to both schemes; in practice only
  expanding windows (or rolling windows longer than one validation window) reach back that far.
  Because the removed rows sit inside the train window, :attr:`Fold.train` is the *envelope* and
  :attr:`Fold.embargoed` lists the holes: train on :meth:`Fold.train_indices` (tabular models) or
  :meth:`Fold.train_segments` (contiguous episodes), never on ``train`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mia.errors import ConfigError, OperationalError

Scheme = Literal["rolling", "expanding"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold, as row slices of a time-ordered table.

    :param index: fold number, 0 = oldest validation window.
    :param train: envelope of the train rows ``[start, stop)``; rows in ``embargoed`` are not
        part of the train set.
    :param validation: validation rows ``[start, stop)``.
    :param embargoed: sorted, disjoint slices inside ``train`` removed by the embargo.
    """

    index: int
    train: slice
    validation: slice
    embargoed: tuple[slice, ...] = ()

    def train_segments(self) -> tuple[slice, ...]:
        """:return: the contiguous train pieces left once the embargoed rows are cut out."""
        out: list[slice] = []
        cursor = int(self.train.start)
        for hole in self.embargoed:
            if hole.start > cursor:
                out.append(slice(cursor, int(hole.start)))
            cursor = max(cursor, int(hole.stop))
        if self.train.stop > cursor:
            out.append(slice(cursor, int(self.train.stop)))
        return tuple(out)

    def train_indices(self) -> np.ndarray:
        """:return: the train row numbers (int64, increasing), embargoed rows excluded."""
        parts = [np.arange(s.start, s.stop, dtype=np.int64) for s in self.train_segments()]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    @property
    def n_train(self) -> int:
        """Number of train rows, embargoed rows excluded."""
        return sum(int(s.stop - s.start) for s in self.train_segments())

    @property
    def n_validation(self) -> int:
        """Number of validation rows."""
        return int(self.validation.stop - self.validation.start)


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int | np.integer) or value < 1):
        raise ConfigError(f"walk-forward: {name}={value!r} must be a positive integer; fix it "
                          "in params.yaml (walk_forward section) or in the caller")


def _non_negative(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or value < 0:
        raise ConfigError(f"walk-forward: {name}={value!r} must be an integer >= 0; a purge must "
                          "be at least the label horizon and an embargo cannot be negative")


def walk_forward_splits(
    n_rows: int,
    *,
    folds: int,
    scheme: Scheme,
    train_rows: int | None,
    validation_rows: int | None,
    purge: int,
    embargo: int,
) -> list[Fold]:
    """Walk-forward folds over ``n_rows`` time-ordered rows (layout in the module docstring).

    :param n_rows: rows in the table.
    :param folds: number of validation windows.
    :param scheme: ``rolling`` (fixed-length train window) or ``expanding`` (fixed start).
    :param train_rows: rows of fold 0's train window; ``None`` uses all rows before it.
    :param validation_rows: rows per validation window; ``None`` uses ``n_rows // (folds + 1)``,
        i.e. the data cut into ``folds + 1`` blocks, the first one for training.
    :param purge: rows dropped between each train window and its validation window; must be at
        least the label horizon.
    :param embargo: rows after each validation window removed from every later train window.
    :return: ``folds`` folds, oldest first.
    :raises ConfigError: a size is not positive, ``purge``/``embargo`` is negative, or the
        scheme is unknown.
    :raises OperationalError: ``n_rows`` is too small for the requested layout, or the embargo
        removes a whole train window.
    """
    _positive("folds", folds)
    _positive("train_rows", train_rows)
    _positive("validation_rows", validation_rows)
    _non_negative("purge", purge)
    _non_negative("embargo", embargo)
    if scheme not in ("rolling", "expanding"):
        raise ConfigError(f"walk-forward: scheme={scheme!r} is unknown; use 'rolling' or "
                          "'expanding'")
    if not isinstance(n_rows, int | np.integer) or n_rows < 0:
        raise OperationalError(f"walk-forward: n_rows={n_rows!r} must be an integer >= 0")

    val = validation_rows if validation_rows is not None else n_rows // (folds + 1)
    first_val = n_rows - folds * val
    first_train_stop = first_val - purge
    train_len = train_rows if train_rows is not None else first_train_stop
    needed = folds * max(val, 1) + purge + (train_rows or 1)
    if val < 1 or first_train_stop - train_len < 0 or train_len < 1:
        raise OperationalError(
            f"walk-forward: {n_rows} rows are too few for {folds} folds x "
            f"{validation_rows or 'auto'} validation rows + purge {purge} + "
            f"{train_rows or 'at least 1'} train rows (need >= {needed}); supply more history "
            "or lower folds / validation_rows / train_rows"
        )
    anchor = first_train_stop - train_len

    out: list[Fold] = []
    for k in range(folds):
        v_start = first_val + k * val
        stop = v_start - purge
        start = anchor if scheme == "expanding" else stop - train_len
        holes: list[slice] = []
        for j in range(k):
            v_end_j = first_val + (j + 1) * val
            lo, hi = max(v_end_j, start), min(v_end_j + embargo, stop)
            if hi <= lo:
                continue
            if holes and lo <= holes[-1].stop:  # embargo > V: neighbouring holes touch
                holes[-1] = slice(holes[-1].start, max(hi, holes[-1].stop))
            else:
                holes.append(slice(lo, hi))
        fold = Fold(index=k, train=slice(start, stop), validation=slice(v_start, v_start + val),
                    embargoed=tuple(holes))
        if fold.n_train < 1:
            raise OperationalError(
                f"walk-forward: embargo {embargo} removes every train row of fold {k} "
                f"(train window {start}..{stop}); lower the embargo or raise train_rows"
            )
        out.append(fold)
    return out
