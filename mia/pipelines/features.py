"""Stage ``features``: build every buildable feature per symbol from the raw store.

Writes ``<MIA_HOME>/data/features/symbol=…`` (:class:`~mia.data.feature_store.FeatureStore`) and
``<MIA_HOME>/reports/features.json`` (counts, skipped groups and why, timings).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mia.config import Config
from mia.data.feature_store import FeatureStore
from mia.features.batch import build_features
from mia.pipelines._stage import stage_config, write_atomic
from mia.pipelines.ingest import raw_store
from mia.pipelines.regimes import load_regime


@dataclass(frozen=True, kw_only=True, slots=True)
class FeaturesResult:
    """What the stage built: per symbol, features built and the report lines."""

    store: Path
    built: dict[str, int]
    lines: dict[str, list[str]]
    report: Path


def feature_store(cfg: Config) -> FeatureStore:
    """:return: the feature store under the configured ``MIA_HOME``."""
    return FeatureStore(cfg.endpoints.mia_home / "data" / "features")


def run(
    cfg: Config, *, symbols: Sequence[str] | None = None, progress: bool = False
) -> FeaturesResult:
    """Build and persist features for each configured symbol.

    :param cfg: resolved configuration (``data.symbols``, ``data.start``, ``data.end``).
    :param symbols: override of ``data.symbols``.
    :param progress: show progress bars.
    """
    data = cfg.params.data
    raw, store = raw_store(cfg), feature_store(cfg)
    wanted = list(symbols or data.symbols)
    bars = {s: raw.read(s, data.start, data.end) for s in wanted}
    built: dict[str, int] = {}
    lines: dict[str, list[str]] = {}
    for sym in wanted:
        # the other configured symbol, when there is one, feeds the cross features
        other = next((b for s, b in bars.items() if s != sym), None)
        ff = build_features(bars[sym], cross=other, regime=load_regime(cfg, sym), progress=progress)
        store.write(ff)
        built[sym], lines[sym] = ff.report.built, ff.report.lines()
    out = cfg.endpoints.mia_home / "reports" / "features.json"
    write_atomic(out, json.dumps({"built": built, "report": lines}, indent=2) + "\n")
    return FeaturesResult(store=store.root, built=built, lines=lines, report=out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.features [--params FILE] [--home DIR]``."""
    cfg, _ = stage_config("features", __doc__, argv)
    result = run(cfg, progress=sys.stderr.isatty())
    for sym, text in result.lines.items():
        print(f"{sym}: " + "; ".join(text))
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
