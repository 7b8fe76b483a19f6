"""The Great Expectations suites and checkpoints, run for real on a tmp copy of the repo's
``great_expectations/`` folder (one copy and one warm GX import per module: GX is slow)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mia.data.synthetic import generate_market
from mia.errors import DataValidationError
from mia.validation import gx_context
from mia.validation.run import build_data_docs, validate_features, validate_raw

pytestmark = pytest.mark.integration

REPO_GX = Path(__file__).resolve().parents[2] / "great_expectations"
WARMUP = 60  # rows of NaN at the start of each symbol in the feature frames
COMMITTED = ("great_expectations.yml", "expectations", "validation_definitions", "checkpoints")


def _committed_bytes(root: Path) -> dict[str, bytes]:
    files = [p for name in COMMITTED for p in [root / name, *(root / name).rglob("*")]]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.is_file()}


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gx") / "great_expectations"
    shutil.copytree(REPO_GX, root, ignore=shutil.ignore_patterns("uncommitted"))
    return root


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    market = generate_market(["ES", "MNQ"], date(2024, 1, 2), date(2024, 1, 5), seed=7)
    return pd.concat([market.bars["ES"], market.bars["MNQ"]], ignore_index=True)


def test_committed_context_sits_at_the_top_level_folder() -> None:
    assert (REPO_GX / "great_expectations.yml").is_file()
    assert not (REPO_GX / "great_expectations").exists()
    assert (REPO_GX / ".gitignore").read_text().splitlines()[-1] == "uncommitted/"
    for suite in gx_context.SUITES:
        for kind in ("expectations", "validation_definitions", "checkpoints"):
            assert (REPO_GX / kind / f"{suite}.json").is_file()


def test_committed_suites_match_the_code_so_ensure_writes_nothing(gx_root: Path) -> None:
    before = _committed_bytes(gx_root)
    context = gx_context.open_context(gx_root)
    assert gx_context.ensure_suites(context) == ()
    assert gx_context.ensure_suites(context) == ()
    assert _committed_bytes(gx_root) == before


def test_ensure_suites_on_an_empty_folder_creates_once_and_never_duplicates(
    tmp_path: Path,
) -> None:
    context = gx_context.open_context(tmp_path / "fresh")
    first = gx_context.ensure_suites(context)
    assert {f"suite:{s}" for s in gx_context.SUITES} <= set(first)
    again = gx_context.open_context(tmp_path / "fresh")
    assert gx_context.ensure_suites(again) == ()
    assert sorted(s.name for s in again.suites.all()) == sorted(gx_context.SUITES)
    assert sorted(c.name for c in again.checkpoints.all()) == sorted(gx_context.SUITES)
    assert len(list(again.validation_definitions.all())) == len(gx_context.SUITES)


def test_good_synthetic_bars_pass_and_write_data_docs(
    gx_root: Path, bars: pd.DataFrame
) -> None:
    before = _committed_bytes(gx_root)
    summary = validate_raw(bars, context_root=gx_root)
    assert summary.success
    assert summary.failed == ()
    assert summary.suite == "raw_bars"
    assert summary.evaluated > 40
    assert summary.data_docs is not None
    assert summary.data_docs.is_file()
    assert gx_root / "uncommitted" in summary.data_docs.parents
    assert _committed_bytes(gx_root) == before  # a run writes only under uncommitted/


def _nan_close(f: pd.DataFrame) -> None:
    f.loc[100, "close"] = np.nan


def _high_below_low(f: pd.DataFrame) -> None:
    f.loc[200, "high"] = f.loc[200, "low"] - 1.0


def _negative_volume(f: pd.DataFrame) -> None:
    f.loc[300, "volume"] = -3.0


def _duplicate_ts(f: pd.DataFrame) -> None:
    f.loc[400, "ts"] = f.loc[399, "ts"]


def _jump_20pct(f: pd.DataFrame) -> None:
    # one bar 20 % up: the move into it and the move back out both break the bound
    f.loc[500, ["open", "high", "low", "close"]] *= 1.2


BROKEN = [  # each rule broken once, on distinct bars: (how, expectation, column, count)
    (_nan_close, "expect_column_values_to_not_be_null", "close", 1),
    (_high_below_low, "expect_column_pair_values_a_to_be_greater_than_b", "high/low", 1),
    # a high below the low is also below the open and the close
    (_high_below_low, "expect_column_pair_values_a_to_be_greater_than_b", "high/open", 1),
    (_high_below_low, "expect_column_pair_values_a_to_be_greater_than_b", "high/close", 1),
    (_negative_volume, "expect_column_values_to_be_between", "volume", 1),
    (_duplicate_ts, "expect_compound_columns_to_be_unique", "symbol,ts", 2),
    (_duplicate_ts, "expect_column_values_to_be_between", "ts_step_s", 1),  # steps by 0 s
    (_jump_20pct, "expect_column_values_to_be_between", "abs_log_return", 2),
]


def test_each_broken_rule_is_listed_with_expectation_column_and_count(
    gx_root: Path, bars: pd.DataFrame
) -> None:
    # One GX run for all rules (GX costs ~2 s a run); the rows are far apart, so each line
    # below is caused by its own rule alone.
    bad = bars.copy()
    for breaks in dict.fromkeys(b[0] for b in BROKEN):
        breaks(bad)
    with pytest.raises(DataValidationError) as err:
        validate_raw(bad, context_root=gx_root, where="ES+MNQ 2024-01")
    message = str(err.value)
    lines = [x for x in message.splitlines() if x.startswith("  - ")]
    assert message.startswith(f"ES+MNQ 2024-01: GX suite raw_bars failed {len(BROKEN)} check(s)")
    assert len(lines) == len(BROKEN)
    for _, expectation, column, count in BROKEN:
        assert f"  - {expectation} on {column}: {count} unexpected (e.g. ES 2024-01-" in message
    docs = message.split("Data Docs: ")[1].splitlines()[0]
    assert Path(docs).is_file()
    assert "Nothing downstream may use it" in message


def test_jump_bound_is_a_run_time_parameter(gx_root: Path, bars: pd.DataFrame) -> None:
    bad = bars.copy()
    _jump_20pct(bad)
    assert validate_raw(bad, context_root=gx_root, jump_bound=0.25).success


def test_absent_optional_groups_pass_and_a_partial_group_fails(
    gx_root: Path, bars: pd.DataFrame
) -> None:
    ohlcv = bars[["ts", "symbol", "open", "high", "low", "close", "volume"]]
    assert validate_raw(ohlcv, context_root=gx_root).success
    with pytest.raises(DataValidationError) as err:
        validate_raw(ohlcv.assign(bid_volume=1.0), context_root=gx_root)
    assert f"not_be_null on ask_volume: {len(ohlcv)} unexpected" in str(err.value)


def test_context_root_comes_from_mia_gx_root(
    gx_root: Path, bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(gx_context.ENV_ROOT, str(gx_root))
    summary = validate_raw(bars.head(500))
    assert summary.data_docs is not None
    assert gx_root in summary.data_docs.parents


@pytest.fixture(scope="module")
def features(bars: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    names = [f"feat_{i}" for i in range(40)]
    rng = np.random.default_rng(3)
    values = rng.standard_normal((len(bars), len(names))).astype(np.float32)
    frame = pd.concat(
        [bars[["ts", "symbol"]], pd.DataFrame(values, columns=names)], axis=1
    )
    first = frame.groupby("symbol").cumcount() < WARMUP
    frame.loc[first, names] = np.nan  # every feature unwarmed for WARMUP rows per symbol
    return frame, names



def test_features_with_nan_only_in_the_warmup_pass(
    gx_root: Path, features: tuple[pd.DataFrame, list[str]]
) -> None:
    frame, names = features
    summary = validate_features(frame, names, WARMUP, context_root=gx_root)
    assert summary.success
    assert summary.suite == "features"


def test_features_with_nan_after_the_warmup_fail_naming_column_and_count(
    gx_root: Path, features: tuple[pd.DataFrame, list[str]]
) -> None:
    frame, names = features
    bad = frame.copy()
    bad.loc[[WARMUP + 5, WARMUP + 9], "feat_7"] = np.nan
    with pytest.raises(DataValidationError) as err:
        validate_features(bad, names, WARMUP, context_root=gx_root, where="ES features")
    message = str(err.value)
    assert "expect_column_values_to_be_between on feat_7: 2 unexpected" in message
    assert "NaN after the warm-up: ts=2024-01-" in message
    # the same NaN inside a longer warm-up is allowed
    assert validate_features(bad, names, WARMUP + 10, context_root=gx_root).success


def test_infinite_and_missing_features_and_backward_ts_fail(
    gx_root: Path, features: tuple[pd.DataFrame, list[str]]
) -> None:
    frame, names = features
    bad = frame.drop(columns="feat_3")
    bad.loc[WARMUP + 1, "feat_4"] = np.inf
    bad.loc[WARMUP + 2, "ts"] = bad.loc[WARMUP, "ts"]
    with pytest.raises(DataValidationError) as err:
        validate_features(bad, names, WARMUP, context_root=gx_root)
    message = str(err.value)
    assert "expect_column_values_to_be_between on feat_3: missing from the frame" in message
    assert "on feat_4: 1 unexpected (e.g. |value| > 1e+09 or infinite" in message
    assert "on ts: 1 unexpected (e.g. ts not strictly increasing" in message


def test_build_data_docs_returns_the_local_index(gx_root: Path, bars: pd.DataFrame) -> None:
    validate_raw(bars.head(200), context_root=gx_root)
    index = build_data_docs(context_root=gx_root)
    assert index == gx_root / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.is_file()
    assert "raw_bars" in index.read_text()
