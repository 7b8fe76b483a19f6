"""Which rows each stage may read (mia.training.layout)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mia.config import load_config
from mia.errors import OperationalError
from mia.training.layout import plan


@pytest.fixture
def wf():
    return load_config(None).params.walk_forward  # rolling, 4 x 5000, purge 15, embargo 60


def test_selection_ends_a_purge_before_the_first_validation_row(wf):
    lay = plan(wf, 60_000, 5000)
    assert lay.selection.start == 5000
    assert lay.selection.stop == lay.folds[0].validation.start - wf.purge_bars


def test_holdout_follows_the_last_validation_window_after_an_embargo(wf):
    lay = plan(wf, 60_000, 5000)
    assert lay.holdout == slice(60_000 - wf.holdout_bars, 60_000)
    assert lay.holdout.start - lay.folds[-1].validation.stop == wf.embargo_bars


def test_no_fold_reads_warmup_or_holdout_rows(wf):
    lay = plan(wf, 60_000, 5000)
    for f in lay.folds:
        rows = np.r_[f.train_indices(), np.arange(f.validation.start, f.validation.stop)]
        assert rows.min() >= lay.start
        assert rows.max() < lay.holdout.start - wf.embargo_bars
        assert f.train.stop + wf.purge_bars == f.validation.start


def test_validation_windows_tile_in_time_order(wf):
    lay = plan(wf, 60_000, 5000)
    stops = [f.validation.stop for f in lay.folds]
    starts = [f.validation.start for f in lay.folds]
    assert starts[1:] == stops[:-1]


def test_folds_override_changes_the_count(wf):
    assert len(plan(wf, 60_000, 5000, folds=3).folds) == 3


def test_too_few_rows_names_what_is_needed_and_what_to_change(wf):
    with pytest.raises(OperationalError, match=r"too few.*= 50075; widen data.start"):
        plan(wf, 40_000, 5000)


def test_expanding_scheme_keeps_the_first_train_row(wf):
    lay = plan(dataclasses.replace(wf, scheme="expanding"), 70_000, 5000)
    assert {f.train.start for f in lay.folds} == {lay.folds[0].train.start}


def test_unknown_fold_is_a_clear_error(wf):
    with pytest.raises(OperationalError, match="fold 7 does not exist"):
        plan(wf, 60_000, 5000).fold(7)
