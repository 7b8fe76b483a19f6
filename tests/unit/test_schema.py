import numpy as np
import pandas as pd
import pytest

from mia.data.schema import validate_bars
from mia.errors import DataValidationError
from mia.types import REQUIRED_COLUMNS


def test_valid_bars_come_back_canonical(bars):
    shuffled = bars[list(reversed(bars.columns))]
    out = validate_bars(shuffled)
    assert list(out.columns) == list(REQUIRED_COLUMNS)
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]"
    assert all(out[c].dtype == np.float64 for c in REQUIRED_COLUMNS[2:])


def test_missing_column_is_named(bars):
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) close"):
        validate_bars(bars.drop(columns="close"))


def test_non_numeric_value_names_column_and_first_rows(bars):
    bad = bars.astype({"close": object})
    bad.loc[3, "close"] = "abc"
    bad.loc[7, "close"] = "n/a"
    with pytest.raises(
        DataValidationError,
        match=r"column close has non-numeric values at row 3 "
        r"\(close='abc'\), row 7",
    ):
        validate_bars(bad)


def test_naive_timestamps_are_refused(bars):
    with pytest.raises(DataValidationError, match="timezone-naive"):
        validate_bars(bars.assign(ts=bars["ts"].dt.tz_localize(None)))


def test_other_timezones_are_converted_to_utc(bars):
    out = validate_bars(bars.assign(ts=bars["ts"].dt.tz_convert("America/Chicago")))
    pd.testing.assert_series_equal(out["ts"], bars["ts"])


def test_duplicate_timestamp_is_refused_with_its_row(bars):
    bad = bars.copy()
    bad.loc[5, "ts"] = bad.loc[4, "ts"]
    with pytest.raises(DataValidationError, match=r"duplicate timestamps for ES at row 5"):
        validate_bars(bad)


def test_out_of_order_timestamp_is_refused(bars):
    bad = bars.copy()
    bad.loc[[10, 11], "ts"] = bad.loc[[11, 10], "ts"].to_numpy()
    with pytest.raises(DataValidationError, match=r"goes backwards for ES at row 11"):
        validate_bars(bad)


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("open", -1.0, "zero or negative prices"),
        ("low", 0.0, "zero or negative prices"),
        ("volume", -5.0, "negative values"),
        ("close", np.inf, "missing or infinite values"),
        ("close", np.nan, "missing or infinite values"),
    ],
)
def test_bad_values_name_column_and_rule(bars, column, value, rule):
    bad = bars.copy()
    bad.loc[2, column] = value
    with pytest.raises(DataValidationError, match=rf"column {column} has {rule}.*row 2"):
        validate_bars(bad)


def test_high_below_low_is_refused(bars):
    bad = bars.copy()
    bad.loc[4, "high"] = bad.loc[4, "low"] - 1
    with pytest.raises(DataValidationError, match=r"column high is below low at row 4"):
        validate_bars(bad)


def test_close_outside_the_bar_range_is_refused(bars):
    bad = bars.copy()
    bad.loc[6, "close"] = bad.loc[6, "high"] + 0.25
    with pytest.raises(
        DataValidationError, match=r"column high is below max\(open, close\) at row 6"
    ):
        validate_bars(bad)


def test_partial_optional_group_is_refused(bars):
    with pytest.raises(DataValidationError, match="optional group 'orderflow' is partial"):
        validate_bars(bars.assign(bid_volume=1.0, ask_volume=1.0))


def test_complete_optional_group_is_kept_in_contract_order():
    from tests.unit.conftest import make_bars

    out = validate_bars(make_bars(groups=True))
    assert list(out.columns)[7:] == [
        "bid_volume",
        "ask_volume",
        "taker_volume",
        "bid_ask_spread",
        "order_volume",
    ]


def test_unknown_column_is_refused(bars):
    with pytest.raises(DataValidationError, match="unknown column"):
        validate_bars(bars.assign(open_interest=1.0))


def test_unknown_symbol_is_refused(bars):
    with pytest.raises(DataValidationError, match="unknown symbols at row 0"):
        validate_bars(bars.assign(symbol="XYZ"))


def test_many_offenders_are_counted_not_all_listed(bars):
    bad = bars.copy()
    bad.loc[:99, "volume"] = -1.0
    with pytest.raises(DataValidationError, match=r"and 95 more"):
        validate_bars(bad)
