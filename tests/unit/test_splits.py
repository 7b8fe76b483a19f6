from __future__ import annotations

import numpy as np
import pytest

from mia.errors import ConfigError, OperationalError
from mia.training.splits import Fold, walk_forward_splits


def _splits(n: int = 10_000, **kw: object) -> list[Fold]:
    args: dict[str, object] = dict(folds=4, scheme="expanding", train_rows=None,
                                   validation_rows=None, purge=15, embargo=60)
    args.update(kw)
    return walk_forward_splits(n, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["rolling", "expanding"])
def test_validation_windows_tile_the_end_in_order_without_overlap(scheme):
    folds = _splits(10_000, scheme=scheme, validation_rows=1_000)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    assert folds[-1].validation.stop == 10_000
    for a, b in zip(folds, folds[1:], strict=False):
        assert a.validation.stop == b.validation.start
    assert all(f.n_validation == 1_000 for f in folds)


@pytest.mark.parametrize("scheme", ["rolling", "expanding"])
@pytest.mark.parametrize("purge", [0, 1, 15, 240])
def test_every_train_row_ends_at_least_purge_rows_before_its_validation(scheme, purge):
    for fold in _splits(10_000, scheme=scheme, purge=purge):
        idx = fold.train_indices()
        assert idx.max() == fold.validation.start - purge - 1
        # a label looking `horizon <= purge` rows ahead never reads a validation row
        assert idx.max() + purge < fold.validation.start
        assert not np.isin(idx, np.arange(fold.validation.start, fold.validation.stop)).any()


def test_embargo_removes_rows_after_each_earlier_validation_window_from_later_trains():
    folds = _splits(10_000, scheme="expanding", validation_rows=1_000, purge=10, embargo=50)
    for k, fold in enumerate(folds):
        train = set(fold.train_indices().tolist())
        for earlier in folds[:k]:
            after = range(earlier.validation.stop, earlier.validation.stop + 50)
            assert train.isdisjoint(after), (k, earlier.index)
            if earlier.index <= k - 2:
                # the earlier validation rows themselves are past data: they stay in the train set
                assert earlier.validation.stop - 1 in train
    assert folds[0].embargoed == ()
    assert folds[3].embargoed == (slice(7_000, 7_050), slice(8_000, 8_050))
    assert folds[3].n_train == 8_990 - 100


def test_train_segments_and_indices_agree_and_cover_the_envelope_minus_holes():
    fold = _splits(10_000, validation_rows=1_000, purge=10, embargo=50)[3]
    segs = fold.train_segments()
    assert segs == (slice(0, 7_000), slice(7_050, 8_000), slice(8_050, 8_990))
    idx = fold.train_indices()
    assert len(idx) == fold.n_train == sum(s.stop - s.start for s in segs)
    assert np.all(np.diff(idx) > 0)


def test_rolling_keeps_the_train_length_and_expanding_keeps_the_start():
    rolling = _splits(10_000, scheme="rolling", train_rows=3_000, validation_rows=1_000,
                      embargo=0)
    expanding = _splits(10_000, scheme="expanding", train_rows=3_000, validation_rows=1_000,
                        embargo=0)
    assert {f.train.stop - f.train.start for f in rolling} == {3_000}
    assert [f.train.start for f in rolling] == [2_985, 3_985, 4_985, 5_985]
    assert {f.train.start for f in expanding} == {2_985}
    assert [f.n_train for f in expanding] == [3_000, 4_000, 5_000, 6_000]
    # fold 0 is the same under both schemes
    assert rolling[0] == expanding[0]


def test_rolling_window_shorter_than_a_validation_window_needs_no_embargo_holes():
    folds = _splits(10_000, scheme="rolling", train_rows=500, validation_rows=1_000, embargo=60)
    assert all(f.embargoed == () for f in folds)


def test_default_sizes_cut_the_data_into_folds_plus_one_blocks():
    folds = _splits(10_000, folds=4, purge=0, embargo=0)
    assert [f.validation for f in folds] == [slice(2_000 * (k + 1), 2_000 * (k + 2))
                                            for k in range(4)]
    assert folds[0].train == slice(0, 2_000)


def test_too_few_rows_names_the_sizes_and_the_fix():
    with pytest.raises(OperationalError, match="too few.*need >= 4115"):
        _splits(4_000, validation_rows=1_000, train_rows=100, purge=15)
    with pytest.raises(OperationalError, match="too few"):
        _splits(3, folds=4)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"folds": 0}, "folds=0 must be a positive"),
        ({"train_rows": 0}, "train_rows=0 must be a positive"),
        ({"validation_rows": -5}, "validation_rows=-5 must be a positive"),
        ({"purge": -1}, "purge=-1 must be an integer >= 0"),
        ({"embargo": -1}, "embargo=-1 must be an integer >= 0"),
        ({"scheme": "anchored"}, "scheme='anchored' is unknown"),
    ],
)
def test_bad_parameters_raise_config_errors_naming_the_parameter(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _splits(10_000, **kw)


def test_an_embargo_that_swallows_a_whole_train_window_is_refused():
    with pytest.raises(OperationalError, match="embargo 5000 removes every train row of fold 2"):
        _splits(10_000, scheme="rolling", train_rows=900, validation_rows=1_000, purge=0,
                embargo=5_000)
