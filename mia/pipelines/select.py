"""Stage ``select``: SHAP-rank the built features and keep ``selection.n_selected`` per symbol.

Label = forward log return over ``features.label_horizon`` bars, strictly after t; walk-forward
folds with ``walk_forward.purge_bars`` (>= the horizon) and ``embargo_bars``. Only the rows before
the first walk-forward validation window are read (mia.training.layout): the feature set is chosen
without looking at any row that later scores an agent or the bundle. Writes, per symbol,
``<MIA_HOME>/models/selection/<SYMBOL>/spec.json`` (the selected FeatureSpec, in rank order) and
the report (``selection.json``, ``ranking.png``, ``stability.png``). There is no fallback list:
when selection cannot be made the stage stops with the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mia.config import Config
from mia.features.spec import make_spec
from mia.pipelines._stage import stage_config, write_atomic
from mia.pipelines.features import feature_store
from mia.pipelines.ingest import raw_store
from mia.pipelines.regimes import load_regime


@dataclass(frozen=True, kw_only=True, slots=True)
class SelectResult:
    """Per symbol: the selected spec file, report files, stability and its chance level."""

    specs: dict[str, Path]
    reports: dict[str, dict[str, Path]]
    stability: dict[str, tuple[float, float]]
    top: dict[str, list[str]]


def selection_dir(cfg: Config, symbol: str) -> Path:
    """:return: where the selected spec and report of ``symbol`` live."""
    return cfg.endpoints.mia_home / "models" / "selection" / symbol


def run(
    cfg: Config, *, symbols: Sequence[str] | None = None, progress: bool = False
) -> SelectResult:
    """Select features for each configured symbol.

    :param cfg: configuration (``selection``, ``features.label_horizon``, ``walk_forward``).
    :param symbols: override of ``data.symbols``.
    :param progress: show a progress bar over folds.
    """
    from mia.selection import forward_log_return, select_features, write_selection_report
    from mia.training.layout import plan

    p = cfg.params
    specs: dict[str, Path] = {}
    reports: dict[str, dict[str, Path]] = {}
    stability: dict[str, tuple[float, float]] = {}
    top: dict[str, list[str]] = {}
    for sym in symbols or p.data.symbols:
        frame = feature_store(cfg).read(sym, p.data.start, p.data.end)
        bars = raw_store(cfg).read(sym, p.data.start, p.data.end)
        if len(bars) != len(frame) or not (bars["ts"].to_numpy() == frame["ts"].to_numpy()).all():
            from mia.errors import OperationalError

            raise OperationalError(
                f"{sym}: stored features do not cover the raw bars of "
                f"{p.data.start}..{p.data.end}; rerun 'mia features build'"
            )
        label = forward_log_return(bars["close"].to_numpy(), p.features.label_horizon)
        # labels of the last rows read at most `horizon` <= purge bars ahead: still before the
        # first validation row
        stop = plan(p.walk_forward, len(bars), feature_store(cfg).spec(sym).warmup).selection.stop
        result = select_features(
            frame.drop(columns=["ts", "symbol"]).iloc[:stop],
            label[:stop],
            n_select=p.selection.n_selected,
            folds=p.selection.folds,
            purge=p.walk_forward.purge_bars,
            embargo=p.walk_forward.embargo_bars,
            seed=p.selection.seed,
            progress=progress,
        )
        out = selection_dir(cfg, sym)
        out.mkdir(parents=True, exist_ok=True)
        spec = make_spec(list(result.selected), regime=load_regime(cfg, sym))
        write_atomic(out / "spec.json", spec.to_json())
        specs[sym] = out / "spec.json"
        reports[sym] = write_selection_report(result, out)
        stability[sym] = (result.stability, result.chance_stability)
        top[sym] = list(result.selected[:10])
    return SelectResult(specs=specs, reports=reports, stability=stability, top=top)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.select [--params FILE] [--home DIR]``."""
    cfg, _ = stage_config("select", __doc__, argv)
    result = run(cfg, progress=sys.stderr.isatty())
    for sym, path in result.specs.items():
        stab, chance = result.stability[sym]
        print(
            f"{sym}: stability {stab:.2f} (chance {chance:.2f}); top 10: "
            f"{', '.join(result.top[sym])}\n    spec {path}"
        )
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
