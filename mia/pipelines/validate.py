"""Stage ``validate``: Great Expectations suites over the raw bars and the built features.

A failure raises :class:`~mia.errors.DataValidationError` listing every failed expectation with
its column and count, and the Data Docs page of the run; it stops the pipeline (the retrain DAG
fails at this task with the list in its log).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from mia.config import Config
from mia.pipelines._stage import stage_config
from mia.pipelines.features import feature_store
from mia.pipelines.ingest import raw_store

What = Literal["raw", "features"]


def run(
    cfg: Config,
    what: What,
    *,
    symbols: Sequence[str] | None = None,
    context_root: Path | None = None,
) -> dict[str, Any]:
    """Validate each symbol's raw bars or features over the configured dates.

    :param cfg: configuration (``data``).
    :param what: ``raw`` or ``features``.
    :param symbols: override of ``data.symbols``.
    :param context_root: GX context folder (default: the repo's ``great_expectations/``).
    :return: symbol -> :class:`mia.validation.run.ValidationSummary` (all passed).
    """
    from mia.validation.run import validate_features, validate_raw

    d = cfg.params.data
    out: dict[str, Any] = {}
    for sym in symbols or d.symbols:
        if what == "raw":
            bars = raw_store(cfg).read(sym, d.start, d.end)
            out[sym] = validate_raw(bars, context_root=context_root, where=f"{sym} raw bars")
        else:
            store = feature_store(cfg)
            spec = store.spec(sym)
            frame = store.read(sym, d.start, d.end)
            out[sym] = validate_features(
                frame,
                list(spec.names),
                spec.warmup,
                context_root=context_root,
                where=f"{sym} features",
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.validate raw|features [--params FILE] [--home DIR]``."""
    cfg, args = stage_config(
        "validate",
        __doc__,
        argv,
        lambda p: p.add_argument("what", choices=["raw", "features"]),
    )
    for sym, summary in run(cfg, args.what).items():
        print(summary.describe(f"{sym} {args.what}"))
    return 0


if __name__ == "__main__":
    from mia.cli import run_guarded

    raise SystemExit(run_guarded(main))
