"""Stage ``drift_watch``: the executor's live features against the production bundle's reference.

Per symbol, over a time window of the live feature log (mia.drift.live_log, written by the
executor: ``<MIA_HOME>/live/features/symbol=<SYM>/date=<YYYY-MM-DD>.parquet``):

Window: the bars whose close is in ``(start, end]``, logged by the production version.

1. the ``production`` version of ``mia-<SYMBOL>`` is downloaded from MLflow (pinned by number, so
   an alias moving meanwhile cannot mix two versions) and its ``drift`` block read: the PSI bin
   edges and reference shares the drift stage computed on the training period;
2. PSI per feature of the live window against those shares (mia.drift.psi); a feature drifts when
   its PSI exceeds ``drift.psi_threshold``, the symbol when at least ``drift.drift_share`` of its
   features drift. This is the decision;
3. beside it, for people, Evidently's HTML report of the live window against the training
   period's reference rows of the feature store (the drift stage's reference window).

A symbol without a production model, or with too few live bars in the window (a closed market),
is reported as not judged, with the reason; a production bundle without a drift reference, or a
live log lacking the bundle's features, is an error: monitoring would be blind. Writes
``<out_dir>/<SYMBOL>/psi.json`` (and ``drift.html`` / ``drift.json``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.errors import DataValidationError, OperationalError
from mia.pipelines._stage import write_atomic

MIN_ROWS = 50  # as mia.drift.report: fewer bars say little about a distribution


@dataclass(frozen=True, kw_only=True, slots=True)
class SymbolDrift:
    """The verdict on one symbol's live window.

    :param symbol: the symbol. :param version: the production version judged against, or None.
    :param rows: live bars in the window.
    :param psi: PSI per feature (empty when not judged).
    :param drifted: features whose PSI exceeds the threshold.
    :param drifted_share: ``len(drifted) / len(psi)``, 0 when not judged.
    :param dataset_drifted: ``drifted_share >= drift.drift_share``: this triggers a retrain.
    :param report: ``psi.json`` of this window. :param html: Evidently's report, or None.
    :param note: why the symbol was not judged or has no HTML report; "" otherwise.
    """

    symbol: str
    version: str | None
    rows: int
    psi: dict[str, float]
    drifted: tuple[str, ...]
    drifted_share: float
    dataset_drifted: bool
    report: Path | None
    html: Path | None
    note: str

    def alert(self, threshold: float) -> str:
        """:return: the one-line alert for a drifted symbol (worst features first)."""
        worst = sorted(self.drifted, key=lambda n: -self.psi[n])[:5]
        text = ", ".join(f"{n} {self.psi[n]:.2f}" for n in worst)
        return (f"ALERT drift {self.symbol}: {len(self.drifted)}/{len(self.psi)} features "
                f"({self.drifted_share:.0%}) over PSI {threshold} against mia-{self.symbol} "
                f"v{self.version} over {self.rows} live bars; worst: {text}; report "
                f"{self.html or self.report}")


@dataclass(frozen=True, kw_only=True, slots=True)
class DriftWatchResult:
    """One window's verdicts; ``drifted`` lists the symbols whose retrain it asks for."""

    start: datetime
    end: datetime
    symbols: dict[str, SymbolDrift]
    psi_threshold: float

    @property
    def drifted(self) -> tuple[str, ...]:
        """Symbols whose live features drifted."""
        return tuple(s for s, v in self.symbols.items() if v.dataset_drifted)

    def to_xcom(self) -> dict[str, Any]:
        """:return: the task's XCom value: verdicts and report URIs, no data."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "drifted": list(self.drifted),
                "alerts": [v.alert(self.psi_threshold) for v in self.symbols.values()
                           if v.dataset_drifted],
                "symbols": {s: {"version": v.version, "rows": v.rows,
                                "drifted_share": round(v.drifted_share, 4),
                                "drifted": list(v.drifted), "note": v.note,
                                "report": v.report.as_uri() if v.report else None,
                                "html": v.html.as_uri() if v.html else None}
                            for s, v in self.symbols.items()}}


def assess(reference: Mapping[str, Any], live: Any, *, psi_threshold: float,
           drift_share: float) -> tuple[dict[str, float], tuple[str, ...], float, bool]:
    """PSI of a live window against a bundle's drift reference.

    :param reference: the bundle's ``drift`` block: ``features``, ``edges`` (``null`` = +inf
        padding) and ``expected`` shares with the missing bucket last (mia.pipelines.drift).
    :param live: a DataFrame holding at least the reference's features.
    :param psi_threshold: PSI above which a feature drifted.
    :param drift_share: share of drifted features at which the window drifted.
    :return: PSI per feature, the drifted features, their share, and the verdict.
    :raises OperationalError: a malformed reference.
    :raises DataValidationError: the live window lacks some of the reference's features.
    """
    from mia.drift import bin_proportions, psi_value

    try:
        names = [str(n) for n in reference["features"]]
        edges = np.array([[np.inf if e is None else float(e) for e in row]
                          for row in reference["edges"]], dtype=np.float64)
        expected = np.asarray(reference["expected"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise OperationalError(f"drift watch: malformed drift reference ({exc!r}); rebuild the "
                               "bundle with the drift stage") from None
    if edges.shape[0] != len(names) or expected.shape != (len(names), edges.shape[1] + 2):
        raise OperationalError(f"drift watch: drift reference of {len(names)} features has "
                               f"edges {edges.shape} and shares {expected.shape}; rebuild it")
    missing = [n for n in names if n not in live.columns]
    if missing:
        raise DataValidationError(f"drift watch: the live feature log lacks {len(missing)} of "
                                  f"the bundle's features ({', '.join(missing[:5])}); the "
                                  "executor must log every feature of the bundle it trades")
    actual = bin_proportions(live[names].to_numpy(np.float64), edges)
    values = psi_value(actual, expected)
    psi = {n: float(v) for n, v in zip(names, values, strict=True)}
    drifted = tuple(n for n in names if psi[n] > psi_threshold)
    share = len(drifted) / len(names)
    return psi, drifted, share, share >= drift_share


def production_bundle(cfg: Config, symbol: str, into: Path) -> tuple[str, Path] | None:
    """Download the bundle holding ``mia-<SYMBOL>@production``.

    :return: (version, bundle folder), or None when the model or the alias does not exist.
    :raises TemporaryError: MLflow unreachable.
    """
    import mlflow

    from mia.registry.handle import model_name
    from mia.registry.tracking import configure, mlflow_errors

    t = configure(cfg)
    name = model_name(symbol)
    try:
        with mlflow_errors(t.uri, f"reading {name}@production"):
            version = str(t.client.get_model_version_by_alias(name, "production").version)
    except OperationalError:  # no such model or alias: nothing trades, nothing to watch
        return None
    with mlflow_errors(t.uri, f"downloading {name} v{version}"):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}",
                                                         dst_path=str(into)))
    found = sorted(p.parent for p in local.rglob("bundle.json"))
    if not found:
        raise OperationalError(f"{name} v{version} holds no bundle.json; re-register it")
    return version, found[0]


def _reference_rows(cfg: Config, symbol: str, names: Sequence[str],
                    warmup: int) -> tuple[Any, str]:
    # the drift stage's reference window: the first drift.reference_bars bars after the
    # bundle's feature warm-up
    from mia.pipelines.features import feature_store

    p = cfg.params
    try:
        frame = feature_store(cfg).read(symbol, p.data.start, p.data.end)
    except (OperationalError, OSError) as exc:
        return None, f"no feature store reference for the HTML report ({exc})"
    missing = [n for n in names if n not in frame.columns]
    if missing:
        return None, f"the feature store lacks {missing[:3]}: no HTML report"
    return frame.iloc[warmup: warmup + p.drift.reference_bars][list(names)], ""


def _judge(cfg: Config, symbol: str, start: datetime, end: datetime, out: Path,
           tmp: Path) -> SymbolDrift:
    from mia.drift import drift_report
    from mia.drift.live_log import read_live_features
    from mia.registry.bundle import read_bundle

    d = cfg.params.drift
    found = production_bundle(cfg, symbol, tmp)
    if found is None:
        return SymbolDrift(symbol=symbol, version=None, rows=0, psi={}, drifted=(),
                           drifted_share=0.0, dataset_drifted=False, report=None, html=None,
                           note=f"no production model mia-{symbol}: nothing to compare")
    version, folder = found
    bundle = read_bundle(folder)
    if bundle.drift is None:
        raise OperationalError(f"mia-{symbol} v{version} has no drift reference; its drift "
                               "cannot be watched: retrain with the drift stage and promote")
    logged = read_live_features(cfg.endpoints.mia_home, symbol, start, end)
    # bars closing in (start, end]: a bar closed at `start` belonged to the previous window; the
    # rows production computed (a canary's rows follow another bundle's spec)
    live = logged[(logged["ts"] > start) & (logged["model_version"].astype(str) == version)]
    if len(live) < MIN_ROWS:
        return SymbolDrift(symbol=symbol, version=version, rows=len(live), psi={}, drifted=(),
                           drifted_share=0.0, dataset_drifted=False, report=None, html=None,
                           note=f"{len(live)} live bars in {start.isoformat()}.."
                                f"{end.isoformat()}: too few to judge (need {MIN_ROWS})")
    psi, drifted, share, verdict = assess(bundle.drift, live, psi_threshold=d.psi_threshold,
                                          drift_share=d.drift_share)
    names = list(psi)
    reference, note = _reference_rows(cfg, symbol, names, bundle.spec.warmup)
    html = None
    if reference is not None:
        html = drift_report(reference, live[names], out, drift_share=d.drift_share).html_path
    report = out / "psi.json"
    write_atomic(report, json.dumps({
        "symbol": symbol, "version": version, "start": start.isoformat(),
        "end": end.isoformat(), "rows": len(live), "psi_threshold": d.psi_threshold,
        "drift_share": d.drift_share, "drifted_share": share, "dataset_drifted": verdict,
        "drifted": list(drifted), "psi": psi}, indent=1) + "\n")
    return SymbolDrift(symbol=symbol, version=version, rows=len(live), psi=psi, drifted=drifted,
                       drifted_share=share, dataset_drifted=verdict, report=report, html=html,
                       note=note)


def run(cfg: Config, *, start: datetime, end: datetime, out_dir: Path,
        symbols: Sequence[str] | None = None) -> DriftWatchResult:
    """Judge each symbol's live features in ``[start, end)`` (module docstring).

    :param cfg: configuration (``drift``, ``data.symbols``; MLflow and ``MIA_HOME`` from the env).
    :param start: window start, tz-aware. :param end: window end, tz-aware, after ``start``.
    :param out_dir: this window's report folder (one sub-folder per symbol), overwritten.
    :param symbols: override of ``data.symbols``.
    :raises DataValidationError: naive or empty window.
    """
    if start.tzinfo is None or end.tzinfo is None or not start < end:
        raise DataValidationError(f"drift watch: window {start}..{end} must be tz-aware and "
                                  "non-empty")
    tmp = Path(tempfile.mkdtemp(prefix="mia-drift-watch-"))
    try:
        verdicts = {s: _judge(cfg, s, start, end, Path(out_dir) / s, tmp / s)
                    for s in symbols or cfg.params.data.symbols}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return DriftWatchResult(start=start, end=end, symbols=verdicts,
                            psi_threshold=cfg.params.drift.psi_threshold)
