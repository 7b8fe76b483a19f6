"""Stage ``regimes``: fit the 3-state HMM per symbol on the first training window.

Only the first ``walk_forward.train_bars`` bars are used, so the HMM never sees a bar that a
later validation fold scores. Writes ``<MIA_HOME>/models/regime/<SYMBOL>.json``
(``HMMParams.to_dict()``), which the ``features`` stage turns into regime-probability features.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia.config import Config
from mia.errors import DataValidationError
from mia.pipelines._stage import stage_config, write_atomic
from mia.pipelines.ingest import raw_store


@dataclass(frozen=True, kw_only=True, slots=True)
class RegimesResult:
    """Per symbol: the params file and the share of training bars filtered into each regime."""

    paths: dict[str, Path]
    shares: dict[str, dict[str, float]]


def params_path(cfg: Config, symbol: str) -> Path:
    """:return: where the fitted HMM parameters of ``symbol`` live."""
    return cfg.endpoints.mia_home / "models" / "regime" / f"{symbol}.json"


def load_regime(cfg: Config, symbol: str) -> Mapping[str, Any] | None:
    """:return: the fitted parameters of ``symbol``, or None when the stage has not run."""
    path = params_path(cfg, symbol)
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg: Config, *, symbols: Sequence[str] | None = None) -> RegimesResult:
    """Fit and store the HMM of each symbol.

    :param cfg: configuration (``features.regime_states``, ``walk_forward.train_bars``).
    :param symbols: override of ``data.symbols``.
    """
    from mia.regime import forward_filter, regime_observations
    from mia.regime.hmm import fit_hmm

    p = cfg.params
    raw = raw_store(cfg)
    paths: dict[str, Path] = {}
    shares: dict[str, dict[str, float]] = {}
    for sym in symbols or p.data.symbols:
        close = raw.read(sym, p.data.start, p.data.end)["close"].to_numpy()
        train = close[: p.walk_forward.train_bars]
        if len(train) < 50 * p.features.regime_states:
            raise DataValidationError(
                f"{sym}: only {len(train)} bars to fit the regime HMM; widen data.start..data.end"
            )
        obs = regime_observations(train)
        params = fit_hmm(obs, n_states=p.features.regime_states, seed=p.selection.seed)
        labels = forward_filter(params, obs).argmax(axis=1)
        shares[sym] = {name: float(np.mean(labels == i)) for i, name in enumerate(params.labels)}
        path = params_path(cfg, sym)
        write_atomic(path, json.dumps(params.to_dict(), indent=1) + "\n")
        paths[sym] = path
    return RegimesResult(paths=paths, shares=shares)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.regimes [--params FILE] [--home DIR]``."""
    cfg, _ = stage_config("regimes", __doc__, argv)
    result = run(cfg)
    for sym, share in result.shares.items():
        text = ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        print(f"{sym}: {text} of training bars -> {result.paths[sym]}")
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
