"""Stage ``ingest``: fill the raw bar store from the synthetic market or a vendor file.

``params.yaml: data`` chooses the source. The stage is idempotent: running it twice leaves the
same store and the same content hashes. It writes ``<MIA_HOME>/reports/ingest.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mia.config import Config
from mia.data.ingest import ingest_file
from mia.data.store import BarStore
from mia.errors import ConfigError
from mia.pipelines._stage import stage_config, write_atomic


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestResult:
    """What the stage produced.

    :param store: root of the raw store.
    :param hashes: content hash per symbol over the configured dates.
    :param rows: bars per symbol over the configured dates.
    :param planted: description of the planted signal ("none" for files and plain markets).
    :param report: the JSON report written.
    """

    store: Path
    hashes: dict[str, str]
    rows: dict[str, int]
    planted: str
    report: Path


def raw_store(cfg: Config) -> BarStore:
    """:return: the raw store under the configured ``MIA_HOME``."""
    return BarStore(cfg.endpoints.mia_home / "data" / "raw")


def run(cfg: Config, *, progress: bool = False) -> IngestResult:
    """Fill the raw store as ``params.yaml: data`` says and hash the result.

    :param cfg: resolved configuration.
    :param progress: show progress bars.
    """
    data = cfg.params.data
    store = raw_store(cfg)
    planted = "none"
    if data.source == "synthetic":
        from mia.data.synthetic import generate_market

        market = generate_market(
            data.symbols,
            data.start,
            data.end,
            data.seed,
            planted_alpha=data.planted_alpha,
            random_walk=data.random_walk,
            progress=progress,
        )
        store.write(
            pd.concat(market.bars.values(), ignore_index=True),
            where="synthetic market",
            progress=progress,
        )
        planted = market.planted
        symbols: list[str] = list(data.symbols)
    else:
        if data.file is None:  # config validation already refuses this; never guess a file
            raise ConfigError(
                f"{cfg.params_path}: data.file is required when data.source is 'file'"
            )
        report = ingest_file(
            store,
            Path(data.file),
            symbol=data.symbols[0] if len(data.symbols) == 1 else None,
            column_map=data.column_map,
            tz=data.tz,
            progress=progress,
        )
        symbols = list(report.write.symbols)
    hashes: dict[str, str] = {}
    rows: dict[str, int] = {}
    for sym in symbols:
        h = store.content_hash(sym, data.start, data.end)
        hashes[sym], rows[sym] = h.sha256, h.rows
    out = cfg.endpoints.mia_home / "reports" / "ingest.json"
    payload = {
        "source": data.source,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
        "seed": data.seed,
        "planted": planted,
        "rows": rows,
        "sha256": hashes,
    }
    write_atomic(out, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return IngestResult(store=store.root, hashes=hashes, rows=rows, planted=planted, report=out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.ingest [--params FILE] [--home DIR]``."""
    cfg, _ = stage_config("ingest", __doc__, argv)
    result = run(cfg, progress=sys.stderr.isatty())
    for sym, digest in result.hashes.items():
        print(f"{sym}: {result.rows[sym]} bars, sha256 {digest[:16]}")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
