"""Stage ``validate``: Great Expectations suites over the raw bars and the built features.

A failure raises :class:`~mia.errors.DataValidationError` listing every failed expectation with
its column and count, and the Data Docs page of the run; it stops the pipeline (the retrain DAG
fails at this task with the list in its log). Either way the verdict is recorded in
``<MIA_HOME>/reports/validation_<raw|features>.json`` per symbol, with the hash of the bars it
judged: the promotion gate refuses a candidate whose data did not pass (:func:`passed`).
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
    from mia.errors import DataValidationError
    from mia.validation.run import validate_features, validate_raw

    d = cfg.params.data
    out: dict[str, Any] = {}
    for sym in symbols or d.symbols:
        bars, digest = raw_store(cfg).read_hashed(sym, d.start, d.end)
        try:
            if what == "raw":
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
        except DataValidationError as exc:
            _record(cfg, what, sym, digest.sha256, passed=False, detail=str(exc))
            raise
        _record(cfg, what, sym, digest.sha256, passed=True, detail="")
    return out


def _record(cfg: Config, what: str, symbol: str, data_hash: str, *, passed: bool,
            detail: str) -> None:
    import json

    from mia.pipelines._stage import write_atomic

    path = cfg.endpoints.mia_home / "reports" / f"validation_{what}.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[symbol] = {"passed": passed, "data_hash": data_hash, "detail": detail[:2000]}
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def passed(cfg: Config, symbol: str, data_hash: str) -> tuple[bool, str]:
    """Did the raw bars and the features of ``symbol`` pass validation on these very bars?

    :param data_hash: the content hash of the bars the candidate was trained and scored on.
    :return: (ok, why not) — not validated, failed, or validated on other bars.
    """
    import json

    for what in ("raw", "features"):
        path = cfg.endpoints.mia_home / "reports" / f"validation_{what}.json"
        entry = json.loads(path.read_text()).get(symbol) if path.is_file() else None
        if entry is None:
            return False, f"{what} data of {symbol} was never validated (mia validate {what})"
        if not entry["passed"]:
            return False, f"{what} data of {symbol} failed validation: {entry['detail'][:300]}"
        if entry["data_hash"] != data_hash:
            return False, (f"{what} validation of {symbol} judged other bars (hash "
                           f"{entry['data_hash'][:12]}, candidate {data_hash[:12]}); rerun it")
    return True, ""


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
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
