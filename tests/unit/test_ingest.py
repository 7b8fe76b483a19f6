from pathlib import Path

import pandas as pd
import pytest

from mia.data.ingest import ingest_file, read_bars_file
from mia.data.store import BarStore
from mia.errors import DataValidationError

SAMPLE = Path(__file__).parents[1] / "data" / "es_sample.csv"


def _csv(tmp_path, text: str) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text(text)
    return path


HEAD = "ts,open,high,low,close,volume\n"
ROW = "2024-01-02T14:31:00Z,4800,4801,4799.5,4800.5,10\n"


def test_the_documented_sample_ingests(tmp_path):
    store = BarStore(tmp_path / "raw")
    report = ingest_file(store, SAMPLE, symbol="ES")
    assert report.rows_read == 60
    assert report.write.groups == ("orderflow",)
    assert len(store.read("ES")) == 60


def test_parquet_with_mapped_columns_ingests(tmp_path):
    frame = pd.read_csv(SAMPLE).rename(columns={"close": "Last", "ts": "time"})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    path = tmp_path / "vendor.parquet"
    frame.to_parquet(path)
    bars = read_bars_file(path, symbol="ES", column_map={"Last": "close", "time": "ts"})
    assert len(bars) == 60


def test_naive_timestamps_are_placed_in_the_named_zone(tmp_path):
    path = _csv(tmp_path, HEAD + "2024-01-02 08:31:00,4800,4801,4799.5,4800.5,10\n")
    bars = read_bars_file(path, symbol="ES", tz="America/Chicago")
    assert bars["ts"].iat[0] == pd.Timestamp("2024-01-02T14:31:00Z")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            HEAD.replace(",close", "") + "2024-01-02T14:31:00Z,1,2,0.5,10\n",
            r"missing required column\(s\) close",
        ),
        (HEAD + ROW.replace("4800.5", "abc"), r"column close has non-numeric values at line 2"),
        (HEAD + "2024-01-02 14:31:00,4800,4801,4799.5,4800.5,10\n", "timezone-naive"),
        (
            HEAD + ROW + "2024-01-02T14:32:00,4800,4801,4799.5,4800.5,10\n",
            r"without a UTC offset at line 3",
        ),
        (HEAD + ROW + "yesterday,4800,4801,4799.5,4800.5,10\n", r"cannot be parsed at line 3"),
        (HEAD + ROW + ROW, r"duplicate timestamps for ES at line 3"),
        (HEAD + ROW.replace("14:31", "14:35") + ROW, r"goes backwards for ES at line 3"),
        (
            HEAD + ROW.replace("4800,", "-4800,", 1),
            r"column open has zero or negative prices at line 2",
        ),
        (HEAD + ROW.replace("4801,4799.5", "4799,4799.5"), r"column high is below low at line 2"),
        (HEAD + ROW.replace(",10\n", ",-10\n"), r"column volume has negative values at line 2"),
    ],
)
def test_malformed_file_is_refused_and_nothing_is_written(tmp_path, body, message):
    store = BarStore(tmp_path / "raw")
    with pytest.raises(DataValidationError, match=message):
        ingest_file(store, _csv(tmp_path, body), symbol="ES")
    assert not (tmp_path / "raw").exists()


def test_unknown_column_suggests_map_or_drop(tmp_path):
    path = _csv(tmp_path, "ts,open,high,low,close,volume,oi\n" + ROW.rstrip() + ",5\n")
    with pytest.raises(DataValidationError, match="--drop oi"):
        read_bars_file(path, symbol="ES")
    assert len(read_bars_file(path, symbol="ES", drop=["oi"])) == 1


def test_file_without_symbol_needs_one(tmp_path):
    with pytest.raises(DataValidationError, match="--symbol"):
        read_bars_file(_csv(tmp_path, HEAD + ROW))


def test_symbol_flag_must_agree_with_the_file(tmp_path):
    path = _csv(
        tmp_path,
        "ts,symbol,open,high,low,close,volume\n"
        "2024-01-02T14:31:00Z,MNQ,4800,4801,4799.5,4800.5,10\n",
    )
    with pytest.raises(DataValidationError, match="--symbol ES given"):
        read_bars_file(path, symbol="ES")


def test_map_naming_an_absent_column_is_refused(tmp_path):
    with pytest.raises(DataValidationError, match="does not have"):
        read_bars_file(_csv(tmp_path, HEAD + ROW), symbol="ES", column_map={"Last": "close"})


def test_reingesting_the_same_file_is_idempotent(tmp_path):
    store = BarStore(tmp_path / "raw")
    ingest_file(store, SAMPLE, symbol="ES")
    digest = store.content_hash("ES")
    second = ingest_file(store, SAMPLE, symbol="ES")
    assert second.write.partitions == 0
    assert store.content_hash("ES") == digest
