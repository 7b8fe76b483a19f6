from datetime import date

import pandas as pd
import pytest

from mia.data.schema import validate_bars
from mia.data.store import BarStore
from mia.errors import DataValidationError, StoreError
from tests.unit.conftest import make_bars


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_write_partitions_by_symbol_and_trade_date(tmp_path, bars):
    store = BarStore(tmp_path)
    report = store.write(bars)
    assert _files(tmp_path) == [
        "symbol=ES/date=2024-01-02.parquet",
        "symbol=ES/date=2024-01-03.parquet",
    ]
    assert (report.rows, report.partitions, report.unchanged) == (len(bars), 2, 0)
    pd.testing.assert_frame_equal(store.read("ES"), validate_bars(bars))


def test_rewriting_the_same_bars_changes_nothing(tmp_path, bars):
    store = BarStore(tmp_path)
    store.write(bars)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    digest = store.content_hash("ES").sha256
    report = store.write(bars)
    assert (report.partitions, report.unchanged) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")} == before
    assert store.content_hash("ES").sha256 == digest


def test_invalid_write_leaves_the_store_untouched(tmp_path, bars):
    store = BarStore(tmp_path)
    store.write(bars)
    digest = store.content_hash("ES").sha256
    later = make_bars(date(2024, 1, 4), date(2024, 1, 5), seed=1)
    later.loc[len(later) - 1, "high"] = 1.0  # the last row of the batch is corrupt
    with pytest.raises(DataValidationError):
        store.write(pd.concat([bars.assign(close=bars["close"]), later], ignore_index=True))
    assert _files(tmp_path) == [
        "symbol=ES/date=2024-01-02.parquet",
        "symbol=ES/date=2024-01-03.parquet",
    ]
    assert store.content_hash("ES").sha256 == digest


def test_new_rows_merge_into_a_stored_partition_and_win_on_equal_ts(tmp_path, bars):
    store = BarStore(tmp_path)
    store.write(bars.iloc[:100])
    patch = bars.iloc[50:200].copy()
    patch["volume"] += 1
    store.write(patch)
    got = store.read("ES", date(2024, 1, 2), date(2024, 1, 2))
    assert len(got) == 200
    assert (got["volume"].iloc[50:200].to_numpy() == patch["volume"].to_numpy()).all()
    assert got["ts"].is_monotonic_increasing


def test_a_partition_keeps_one_column_set(tmp_path):
    store = BarStore(tmp_path)
    store.write(make_bars())
    with pytest.raises(DataValidationError, match="stored with groups"):
        store.write(make_bars(groups=True))


def test_content_hash_depends_on_content_and_range(tmp_path, bars):
    a, b = BarStore(tmp_path / "a"), BarStore(tmp_path / "b")
    a.write(bars)
    b.write(bars.assign(volume=bars["volume"] + 1))
    assert a.content_hash("ES") != b.content_hash("ES")
    assert a.content_hash("ES").rows == len(bars)
    one_day = a.content_hash("ES", date(2024, 1, 2), date(2024, 1, 2))
    assert one_day.rows == 1380
    assert one_day != a.content_hash("ES")


def test_reading_an_empty_range_says_how_to_fill_it(tmp_path):
    with pytest.raises(StoreError, match="mia data generate"):
        BarStore(tmp_path).read("ES")


def test_corrupt_partition_is_reported_with_its_path(tmp_path, bars):
    store = BarStore(tmp_path)
    store.write(bars)
    store.path("ES", date(2024, 1, 2)).write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=r"date=2024-01-02.parquet: unreadable partition"):
        store.read("ES")


def test_summary_lists_symbols_rows_and_groups(tmp_path):
    store = BarStore(tmp_path)
    store.write(pd.concat([make_bars(groups=True), make_bars(symbol="MNQ", groups=True)]))
    summary = {s.symbol: s for s in store.summary()}
    assert set(summary) == {"ES", "MNQ"}
    assert summary["ES"].rows == 2 * 1380
    assert summary["ES"].groups == ("orderflow",)
