"""Selection report: ``selection.json`` plus two PNG charts, for MLflow and for people."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mia.selection.shap_rank import SelectionResult

_TOP = 40  # bars in the ranking chart: enough to see the cut-off region, still readable


def _fold_columns(result: SelectionResult, prefix: str) -> list[str]:
    return [f"{prefix}{k}" for k in range(result.folds)]


def selection_payload(result: SelectionResult) -> dict[str, Any]:
    """The JSON document written as ``selection.json`` (selected names in order, scores).

    :param result: a selection result.
    """
    r = result.ranking
    shap_cols = _fold_columns(result, "mean_abs_shap_fold")
    rank_cols = _fold_columns(result, "rank_fold")
    features = [
        {
            "feature": str(row["feature"]),
            "mean_abs_shap": float(row["mean_abs_shap"]),
            "mean_abs_shap_by_fold": [float(row[c]) for c in shap_cols],
            "rank_by_fold": [float(row[c]) for c in rank_cols],
            "mean_rank": float(row["mean_rank"]),
            "rank_std": float(row["rank_std"]),
            "selected": bool(row["selected"]),
        }
        for row in r.to_dict("records")
    ]
    return {
        "selected": list(result.selected),
        "n_selected": len(result.selected),
        "n_features": len(r),
        "stability": result.stability,
        "chance_stability": result.chance_stability,
        "folds": result.folds,
        "rows_used": result.rows_used,
        "features": features,
    }


def _write_atomic(path: Path, text: str) -> None:
    # a retried task overwrites its own output; a reader never sees half a file
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_selection_report(result: SelectionResult, out_dir: Path) -> dict[str, Path]:
    """Write ``selection.json``, ``ranking.png`` and ``stability.png`` into ``out_dir``.

    ``ranking.png``: the top 40 features by final order, bar = mean |SHAP| across folds, dots =
    the per-fold values (their spread is the fold-to-fold variation), selected bars coloured.
    ``stability.png``: per-fold rank of those features as a heat map, with the overlap
    stability in the title.

    :param result: a selection result.
    :param out_dir: created if missing; existing report files are overwritten.
    :return: ``{"selection": …json, "ranking": …png, "stability": …png}``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"selection": out_dir / "selection.json", "ranking": out_dir / "ranking.png",
             "stability": out_dir / "stability.png"}
    _write_atomic(paths["selection"], json.dumps(selection_payload(result), indent=2) + "\n")

    top = result.ranking.head(_TOP)
    names = top["feature"].astype(str).tolist()
    y = np.arange(len(top))[::-1]  # best at the top
    per_fold = top[_fold_columns(result, "mean_abs_shap_fold")].to_numpy()

    fig = Figure(figsize=(8, 0.22 * len(top) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    colors = np.where(top["selected"].to_numpy(), "tab:blue", "tab:gray")
    ax.barh(y, top["mean_abs_shap"].to_numpy(), color=colors, alpha=0.8)
    for k in range(per_fold.shape[1]):
        ax.scatter(per_fold[:, k], y, s=9, color="black", zorder=3,
                   label="per fold" if k == 0 else None)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("mean |SHAP| on validation rows (label units)")
    ax.set_title(f"Top {len(top)} of {len(result.ranking)} features "
                 f"({len(result.selected)} selected, blue)")
    ax.legend(loc="lower right", fontsize=7)
    fig.savefig(paths["ranking"], dpi=110)

    ranks = top[_fold_columns(result, "rank_fold")].to_numpy()
    fig = Figure(figsize=(2.5 + 0.6 * result.folds, 0.22 * len(top) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(ranks, aspect="auto", cmap="viridis_r", interpolation="nearest")
    ax.set_yticks(np.arange(len(top)), names, fontsize=7)
    ax.set_xticks(np.arange(result.folds), [f"fold {k}" for k in range(result.folds)],
                  fontsize=7)
    ax.set_title(f"rank per fold; stability {result.stability:.2f} "
                 f"(chance {result.chance_stability:.2f})", fontsize=9)
    fig.colorbar(image, ax=ax, label="rank (1 = best)")
    fig.savefig(paths["stability"], dpi=110)
    return paths
