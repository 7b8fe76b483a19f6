"""The Great Expectations 1.x file context of MIA: where it lives, its suites, validation
definitions and checkpoints.

The context is the repo's top-level ``great_expectations/`` folder. In GX 1.x
``get_context(mode="file", context_root_dir=D)`` uses ``D`` itself as the folder that holds
``great_expectations.yml``, whereas ``project_root_dir=P`` scaffolds ``P/gx`` (the 1.x default
name); so we pass the folder itself, never the repo root (which would put the config at the top
of the repo). Everything here is written by :func:`ensure_suites`, which compares before it
writes: on a checkout whose committed JSON matches this code it writes nothing, so parallel
Airflow tasks never race on the files and git stays clean.

GX is imported inside functions: ``import mia.validation`` must stay cheap (GX takes ~4 s to
import) and the executor imports :mod:`mia.validation.inline` only.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mia.errors import ConfigError
from mia.types import OPTIONAL_GROUPS, PRICE_COLUMNS, REQUIRED_COLUMNS, SYMBOLS, VOLUME_COLUMNS

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )
    from great_expectations.expectations.expectation import Expectation

ENV_ROOT: Final[str] = "MIA_GX_ROOT"
DEFAULT_ROOT: Final[Path] = Path(__file__).resolve().parents[2] / "great_expectations"
DATASOURCE: Final[str] = "mia"
BATCH: Final[str] = "whole_frame"
RAW_SUITE: Final[str] = "raw_bars"
FEATURES_SUITE: Final[str] = "features"
# suite -> (data asset, checkpoint result format). Raw results quote (symbol, ts) of offending
# bars; the features batch is a small column profile, so COMPLETE lists every failing column.
_LAYOUT: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    RAW_SUITE: (
        "bars",
        {
            "result_format": "SUMMARY",
            "partial_unexpected_count": 5,
            "unexpected_index_column_names": ["symbol", "ts"],
        },
    ),
    FEATURES_SUITE: (
        "feature_profile",
        {"result_format": "COMPLETE", "unexpected_index_column_names": ["column", "examples"]},
    ),
}
SUITES: Final[tuple[str, ...]] = tuple(_LAYOUT)

# Derived columns of the raw view (mia.validation.run.raw_view computes them before GX runs).
TS_STEP: Final[str] = "ts_step_s"
ABS_LOG_RETURN: Final[str] = "abs_log_return"
JUMP_PARAM: Final[str] = "jump_bound"
DEFAULT_JUMP_BOUND: Final[float] = 0.1
# Feature values beyond this magnitude are treated as broken (an overflow or a division by ~0).
FEATURE_ABS_BOUND: Final[float] = 1e9
# Non-negative optional columns that are neither volumes nor prices (mirrors mia.data.schema).
_NON_NEGATIVE: Final[tuple[str, ...]] = (
    "bid_ask_spread", "iv_call", "iv_put", "iv_1m", "iv_3m", "vix",
)


def has_group(group: str) -> str:
    """:param group: an optional group of :data:`mia.types.OPTIONAL_GROUPS`.
    :return: the name of the raw view's constant flag saying the group is in the frame.
    """
    return f"has_{group}"


def resolve_root(context_root: str | os.PathLike[str] | None = None) -> Path:
    """Find the GX context folder: the argument, else ``$MIA_GX_ROOT``, else the repo's
    top-level ``great_expectations/``.

    :param context_root: the folder holding ``great_expectations.yml`` (a test's tmp copy).
    :return: its absolute path.
    :raises ConfigError: when the default folder has no ``great_expectations.yml``.
    """
    chosen = context_root if context_root is not None else os.environ.get(ENV_ROOT)
    if chosen:
        return Path(chosen).expanduser().resolve()
    if not (DEFAULT_ROOT / "great_expectations.yml").is_file():
        raise ConfigError(
            f"no GX context at {DEFAULT_ROOT} (great_expectations.yml missing); run from a MIA "
            f"checkout or set {ENV_ROOT} to a folder holding great_expectations.yml"
        )
    return DEFAULT_ROOT


def quiet_gx() -> None:
    """Silence GX's import-time and run-time chatter and its usage statistics (no network here).

    Safe to call many times; leaves GX warnings and errors visible.
    """
    # Read by older GX releases when a context starts; 1.24 has no analytics client at all.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX still imports the deprecated sre_* modules; the warning is theirs, not ours to act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"great_expectations\.")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # This one sets its own level to INFO at import, so the parent's level does not reach it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def open_context(context_root: str | os.PathLike[str] | None = None) -> AbstractDataContext:
    """Open (scaffolding if absent) the GX file context, quietly.

    :param context_root: see :func:`resolve_root`.
    :return: the file data context rooted at that folder.
    """
    root = resolve_root(context_root)
    quiet_gx()
    from great_expectations.data_context.data_context.context_factory import get_context
    from great_expectations.data_context.types.base import ProgressBarsConfig

    quiet_gx()  # again: importing GX re-set one logger's level
    context = get_context(mode="file", context_root_dir=root)
    bars: Any = context.variables.progress_bars  # a dict when read from the yml, despite its type
    globally = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
    if globally is not False:
        # A freshly scaffolded context (a test's empty folder) draws tqdm bars by default.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def raw_bars_expectations() -> list[Expectation]:
    """:return: the ``raw_bars`` suite's expectations, each with a note saying why."""
    from great_expectations.expectations.core import (
        expect_column_pair_values_a_to_be_greater_than_b as pair_gt,
    )
    from great_expectations.expectations.core.expect_column_to_exist import ExpectColumnToExist
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
        ExpectColumnValuesToBeInSet,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )
    from great_expectations.expectations.core.expect_compound_columns_to_be_unique import (
        ExpectCompoundColumnsToBeUnique,
    )

    out: list[Expectation] = [
        ExpectColumnToExist(column=c, notes="bar contract, design.md section 4")
        for c in REQUIRED_COLUMNS
    ]
    for c in REQUIRED_COLUMNS:
        out.append(ExpectColumnValuesToNotBeNull(column=c, notes="required bar column"))
    out += [
        ExpectColumnValuesToBeInSet(column="symbol", value_set=list(SYMBOLS)),
        ExpectCompoundColumnsToBeUnique(
            column_list=["symbol", "ts"], notes="one bar per (symbol, ts)"
        ),
        ExpectColumnValuesToBeBetween(
            column=TS_STEP,
            min_value=0,
            strict_min=True,
            notes="derived: seconds since the previous bar of the same symbol, in source "
            "order; must be > 0 (ts strictly increasing per symbol)",
        ),
    ]
    for c in ("open", "high", "low", "close"):
        out.append(ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True))
    out.append(ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    # OHLC consistency as column pairs (no derived column): high >= max(open, close) and
    # low <= min(open, close) are two pairs each. A missing value is the not-null
    # expectation's failure, so pairs skip it instead of reporting it a second time.
    for a, b in (("high", "low"), ("high", "open"), ("high", "close"), ("open", "low"),
                 ("close", "low")):
        out.append(
            pair_gt.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        )
    out.append(
        ExpectColumnValuesToBeBetween(
            column=ABS_LOG_RETURN,
            min_value=0,
            max_value={"$PARAMETER": JUMP_PARAM},
            notes="derived: |log(close / previous close)| per symbol; a larger move is a bad "
            "tick or an unadjusted roll. The bound is a run-time parameter (default 0.1).",
        )
    )
    out += _optional_group_expectations()
    return out


def _optional_group_expectations() -> list[Expectation]:
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )
    from great_expectations.expectations.row_conditions import (
        Column,
        ComparisonCondition,
        Operator,
    )

    out: list[Expectation] = []
    for group, columns in OPTIONAL_GROUPS.items():
        # A group absent from the frame is absent from every row: the view adds its columns as
        # NaN and a False flag, and this condition makes the checks vacuous for it.
        present = ComparisonCondition(
            column=Column(has_group(group)), operator=Operator.EQUAL, parameter=True
        )
        note = f"only when the {group} group is in the frame (all-or-nothing)"
        for c in columns:
            out.append(ExpectColumnValuesToNotBeNull(column=c, row_condition=present,
                                                         notes=note))
            bound: dict[str, Any] | None = None
            if c in PRICE_COLUMNS:
                bound = {"min_value": 0, "strict_min": True}
            elif c in VOLUME_COLUMNS or c in _NON_NEGATIVE:
                bound = {"min_value": 0}
            elif c == "news_impact":
                bound = {"min_value": -1, "max_value": 1}
            if bound is not None:  # net_gamma: any sign
                out.append(ExpectColumnValuesToBeBetween(column=c, row_condition=present,
                                                             notes=note, **bound))
    return out


def features_expectations() -> list[Expectation]:
    """:return: the ``features`` suite's expectations. They run on a column profile of the
    feature frame (one row per expected column, built by ``mia.validation.run.feature_profile``),
    so the suite is the same for every feature set and fast for 350 columns.
    """
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_unique import (
        ExpectColumnValuesToBeUnique,
    )

    return [
        ExpectColumnValuesToBeUnique(column="column", notes="feature names are unique"),
        ExpectColumnValuesToBeBetween(
            column="present", min_value=1, max_value=1, notes="1 if the column is in the frame"
        ),
        ExpectColumnValuesToBeBetween(
            column="nulls",
            min_value=0,
            max_value=0,
            notes="NaN count after the warm-up rows (ts, symbol: over all rows)",
        ),
        ExpectColumnValuesToBeBetween(
            column="abs_max",
            min_value=0,
            max_value=FEATURE_ABS_BOUND,
            notes="largest |value| after the warm-up rows; inf fails (values must be finite)",
        ),
        ExpectColumnValuesToBeBetween(
            column="not_increasing",
            min_value=0,
            max_value=0,
            notes="ts only: steps <= 0 between consecutive rows of a symbol",
        ),
    ]


EXPECTATIONS: Final[dict[str, Callable[[], list[Expectation]]]] = {
    RAW_SUITE: raw_bars_expectations,
    FEATURES_SUITE: features_expectations,
}


def _fingerprint(expectations: list[Expectation]) -> list[dict[str, Any]]:
    # Compare what an expectation checks, not the id GX stamps on it when it is saved.
    return [e.configuration.to_json_dict() | {"id": None} for e in expectations]


def ensure_suites(context: AbstractDataContext) -> tuple[str, ...]:
    """Create or update the data source, assets, suites, validation definitions and checkpoints
    so they match this module; write nothing that already matches.

    :param context: an open file context (:func:`open_context`).
    :return: ``kind:name`` of every object written (empty when all were up to date).
    """
    from great_expectations.checkpoint.actions import UpdateDataDocsAction
    from great_expectations.checkpoint.checkpoint import Checkpoint
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.validation_definition import ValidationDefinition
    from great_expectations.datasource.fluent.pandas_datasource import PandasDatasource
    from great_expectations.exceptions.exceptions import DataContextError

    written: list[str] = []
    if DATASOURCE in context.data_sources.all():
        source = context.data_sources.get(DATASOURCE)
    else:
        source = context.data_sources.add_pandas(name=DATASOURCE)
        written.append(f"datasource:{DATASOURCE}")
    if not isinstance(source, PandasDatasource):
        raise ConfigError(
            f"GX data source {DATASOURCE!r} in {context.root_directory} is a {source.type} "
            "source; MIA needs a pandas one: delete it from great_expectations.yml"
        )
    for suite_name, (asset_name, result_format) in _LAYOUT.items():
        if asset_name in source.get_asset_names():
            asset = source.get_asset(asset_name)
        else:
            asset = source.add_dataframe_asset(name=asset_name)
            written.append(f"asset:{asset_name}")
        if BATCH in {b.name for b in asset.batch_definitions}:
            batch = asset.get_batch_definition(BATCH)
        else:
            batch = asset.add_batch_definition_whole_dataframe(BATCH)
            written.append(f"batch_definition:{asset_name}/{BATCH}")

        wanted = EXPECTATIONS[suite_name]()
        try:
            suite = context.suites.get(suite_name)
            stale = _fingerprint(suite.expectations) != _fingerprint(wanted)
        except DataContextError:
            stale = True
        if stale:
            suite = context.suites.add_or_update(
                ExpectationSuite(name=suite_name, expectations=wanted)
            )
            written.append(f"suite:{suite_name}")

        try:
            definition = context.validation_definitions.get(suite_name)
            stale = definition.suite.id != suite.id or definition.data.id != batch.id
        except DataContextError:
            stale = True
        if stale:
            definition = context.validation_definitions.add_or_update(
                ValidationDefinition(name=suite_name, data=batch, suite=suite)
            )
            written.append(f"validation_definition:{suite_name}")

        try:
            checkpoint = context.checkpoints.get(suite_name)
            stale = (
                [v.id for v in checkpoint.validation_definitions] != [definition.id]
                or checkpoint.result_format != result_format
                or [a.type for a in checkpoint.actions] != ["update_data_docs"]
            )
        except DataContextError:
            stale = True
        if stale:
            context.checkpoints.add_or_update(
                Checkpoint(
                    name=suite_name,
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="update_data_docs")],
                    result_format=result_format,
                )
            )
            written.append(f"checkpoint:{suite_name}")
    return tuple(written)
