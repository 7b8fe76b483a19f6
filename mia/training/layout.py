"""Which rows each step of a retrain may read: selection, walk-forward folds, the holdout.

One function decides it for every stage, so no stage can see rows it must not::

    0 .. start              warm-up: some feature is not ready yet (never used)
    start .. sel_stop       selection: SHAP ranks features here only (before any validation row)
    [walk-forward folds]    train / purge / validation / embargo (mia.training.splits), rows
                            start .. wf_stop
    wf_stop .. hold_start   embargo: serial correlation with the last validation window
    hold_start .. n_rows    holdout: only the bundle evaluation (the gate's number) reads it

- **Selection** ends ``purge`` rows before the first validation window, like every train window:
  the feature set is chosen without looking at any row that later scores an agent (López de Prado,
  2018, §7: selection on the full sample is a leak as real as training on it).
- **Holdout**: the ensemble's weights are fitted on the walk-forward validation windows, so those
  windows no longer measure the ensemble; the holdout does, untouched by training, normalisation,
  selection and weight fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

from mia.config.sections import WalkForwardConfig
from mia.errors import OperationalError
from mia.training.splits import Fold, walk_forward_splits


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Row ranges of one symbol's table (module docstring), absolute row numbers.

    :param n_rows: rows in the table.
    :param start: first row where every feature is past its warm-up.
    :param selection: rows the feature selection may read.
    :param folds: walk-forward folds, oldest first.
    :param holdout: rows only the bundle evaluation reads.
    """

    n_rows: int
    start: int
    selection: slice
    folds: tuple[Fold, ...]
    holdout: slice

    def fold(self, index: int) -> Fold:
        """:param index: fold number. :return: that fold.
        :raises OperationalError: no such fold."""
        if not 0 <= index < len(self.folds):
            raise OperationalError(f"walk-forward: fold {index} does not exist; this layout has "
                                   f"folds 0..{len(self.folds) - 1}")
        return self.folds[index]


def _shift(fold: Fold, by: int) -> Fold:
    def move(s: slice) -> slice:
        return slice(int(s.start) + by, int(s.stop) + by)

    return Fold(index=fold.index, train=move(fold.train), validation=move(fold.validation),
                embargoed=tuple(move(h) for h in fold.embargoed))


def plan(cfg: WalkForwardConfig, n_rows: int, warmup: int, *, folds: int | None = None) -> Layout:
    """Lay out a table of ``n_rows`` bars whose features are ready from row ``warmup``.

    :param cfg: ``params.yaml: walk_forward`` (scheme, sizes, purge, embargo, holdout).
    :param n_rows: bars in the table.
    :param warmup: the feature set's warm-up (``FeatureSpec.warmup``): rows before it are unused.
    :param folds: override of ``cfg.folds`` (e.g. ``mia train --folds 3``).
    :return: the layout.
    :raises OperationalError: too few rows, with the number needed and what to change.
    """
    k = cfg.folds if folds is None else folds
    hold = cfg.holdout_bars
    wf_rows = n_rows - warmup - cfg.embargo_bars - hold
    need = warmup + cfg.train_bars + cfg.purge_bars + k * cfg.validation_bars + cfg.embargo_bars \
        + hold
    if wf_rows < cfg.train_bars + cfg.purge_bars + k * cfg.validation_bars or k < 1:
        raise OperationalError(
            f"walk-forward: {n_rows} bars are too few for warm-up {warmup} + train "
            f"{cfg.train_bars} + purge {cfg.purge_bars} + {k} x {cfg.validation_bars} validation "
            f"+ embargo {cfg.embargo_bars} + holdout {hold} = {need}; widen data.start..data.end "
            "or lower walk_forward.train_bars / validation_bars / folds / holdout_bars"
        )
    rel = walk_forward_splits(wf_rows, folds=k, scheme=cfg.scheme, train_rows=cfg.train_bars,
                              validation_rows=cfg.validation_bars, purge=cfg.purge_bars,
                              embargo=cfg.embargo_bars)
    shifted = tuple(_shift(f, warmup) for f in rel)
    first_val = int(shifted[0].validation.start)
    hold_start = n_rows - hold
    return Layout(n_rows=n_rows, start=warmup,
                  selection=slice(warmup, first_val - cfg.purge_bars), folds=shifted,
                  holdout=slice(hold_start, n_rows))
