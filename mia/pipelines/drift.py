"""Stage ``drift``: Evidently report of the recent window against the reference window.

Per symbol, over the selected features (all built features when selection has not run): the
reference is the first ``drift.reference_bars`` bars after warm-up (the training period), the
current window the last ``drift.reference_bars`` bars. Writes
``<MIA_HOME>/reports/drift/<SYMBOL>/drift.html|json`` and the PSI reference the online monitor
uses: ``<MIA_HOME>/models/drift/<SYMBOL>/psi_reference.json`` (per-feature bin edges and
reference shares).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.errors import DataValidationError
from mia.pipelines._stage import stage_config, write_atomic
from mia.pipelines.features import feature_store
from mia.pipelines.select import selection_dir

PSI_BINS = 10


@dataclass(frozen=True, kw_only=True, slots=True)
class DriftResult:
    """Per symbol: the Evidently summary and the PSI reference file."""

    summaries: dict[str, Any]
    psi_reference: dict[str, Path]


def psi_reference_path(cfg: Config, symbol: str) -> Path:
    """:return: ``<MIA_HOME>/models/drift/<SYMBOL>/psi_reference.json``."""
    return cfg.endpoints.mia_home / "models" / "drift" / symbol / "psi_reference.json"


def run(cfg: Config, *, symbols: Sequence[str] | None = None) -> DriftResult:
    """Compute the drift report and PSI reference of each symbol.

    :param cfg: configuration (``drift``, ``data``).
    :param symbols: override of ``data.symbols``.
    """
    from mia.drift import bin_proportions, drift_report, reference_quantiles

    p = cfg.params
    summaries: dict[str, Any] = {}
    refs: dict[str, Path] = {}
    for sym in symbols or p.data.symbols:
        store = feature_store(cfg)
        frame = store.read(sym, p.data.start, p.data.end)
        spec_file = selection_dir(cfg, sym) / "spec.json"
        if spec_file.is_file():
            from mia.features.spec import FeatureSpec

            spec = FeatureSpec.from_json(spec_file.read_text())
        else:
            spec = store.spec(sym)
        names, n = list(spec.names), p.drift.reference_bars
        usable = frame.iloc[spec.warmup :]
        if len(usable) < 2 * n:
            raise DataValidationError(
                f"{sym}: {len(usable)} bars after warm-up, drift needs 2 x drift.reference_bars "
                f"= {2 * n}; lower drift.reference_bars or widen data.start..data.end"
            )
        reference, current = usable.iloc[:n][names], usable.iloc[-n:][names]
        out = cfg.endpoints.mia_home / "reports" / "drift" / sym
        summaries[sym] = drift_report(reference, current, out, drift_share=p.drift.drift_share)
        ref = reference.to_numpy(dtype=np.float64)
        edges = reference_quantiles(ref, PSI_BINS)
        doc = {
            "features": names,
            # JSON has no infinity: padding edges of discrete features are written as null
            "edges": [[float(e) if np.isfinite(e) else None for e in row] for row in edges],
            "expected": bin_proportions(ref, edges).tolist(),
            "bars": n,
        }
        path = psi_reference_path(cfg, sym)
        write_atomic(path, json.dumps(doc) + "\n")
        refs[sym] = path
    return DriftResult(summaries=summaries, psi_reference=refs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.drift [--params FILE] [--home DIR]``."""
    cfg, _ = stage_config("drift", __doc__, argv)
    print_result(run(cfg))
    return 0


def print_result(result: DriftResult) -> None:
    """Print each symbol's drifted share, the most drifted features and where the report is."""
    for sym, s in result.summaries.items():
        worst = ", ".join(s.drifted_columns[:8]) or "none"
        print(
            f"{sym}: {s.n_drifted}/{s.n_columns} features drifted ({s.drifted_share:.0%}); "
            f"dataset drift: {'YES' if s.dataset_drifted else 'no'}; drifted: {worst}\n"
            f"    report {s.html_path}; PSI reference {result.psi_reference[sym]}"
        )


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
