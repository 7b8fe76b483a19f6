"""SHAP ranking of features across walk-forward folds (350 -> 150).

A LightGBM surrogate (Ke et al., 2017) is fitted per walk-forward fold on the forward-return
label and explained on that fold's *validation* rows with exact TreeSHAP (Lundberg et al., 2020,
*From local explanations to global understanding with explainable AI for trees*; LightGBM's
``predict(pred_contrib=True)`` implements that algorithm). Explaining held-out rows ranks what
generalises, not what the trees memorised. Features are ordered by their mean rank across folds,
so a feature that matters in one regime only cannot outrank one that matters in every fold.
:attr:`SelectionResult.stability` is the plain mean pairwise overlap of the per-fold top sets;
random sets already overlap by ``n_select / n_features`` on average (Kuncheva, 2007, *A stability
index for feature selection*, corrects for exactly that), hence
:attr:`SelectionResult.chance_stability` next to it.

There is no fallback list: when the inputs cannot support a ranking the function raises.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mia.errors import ConfigError, OperationalError
from mia.training.splits import walk_forward_splits

if TYPE_CHECKING:
    import lightgbm as lgb

# Modest surrogate: a ranking needs the strong effects, not the last basis point of fit, and one
# fold of 20k x 350 must stay well under 15 s on 2 cores (benchmarks/bench_selection.py).
ROUNDS = 200
_MIN_BLOCK_ROWS = 250  # usable train/validation rows per block below which we refuse
_SHAP_CHUNK = 16_384  # rows per pred_contrib call: caps the (rows, F + 1) float64 buffer


def surrogate_params(seed: int) -> dict[str, Any]:
    """LightGBM parameters of the surrogate: deterministic for a given ``seed``.

    :param seed: master seed; LightGBM derives its bagging and feature-fraction seeds from it.
    """
    return {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 100,  # minute returns are mostly noise: no leaf on a handful of bars
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_bin": 63,
        "seed": seed,
        # deterministic=True is only honoured with a fixed histogram layout (LightGBM docs)
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }


def _lightgbm() -> Any:
    # LightGBM's OpenMP threads busy-wait at every barrier; when the 2 cores are shared with
    # other work a descheduled thread stalls the other, and one fold went from 3 s to 50 s on a
    # loaded CI box (LightGBM issues #5039, #6728). A passive wait policy avoids that; it is read
    # when libgomp loads, so it must be set before the first lightgbm import, and an explicit
    # setting by the operator wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import lightgbm

    return lightgbm


def fit_surrogate(X: np.ndarray, y: np.ndarray, *, seed: int, rounds: int = ROUNDS) -> lgb.Booster:
    """Fit the LightGBM surrogate regressor.

    :param X: (rows, features) float matrix without NaN.
    :param y: (rows,) label.
    :param seed: see :func:`surrogate_params`.
    :param rounds: boosting rounds.
    """
    lightgbm = _lightgbm()
    params = surrogate_params(seed)
    # positional names: LightGBM rejects some characters that feature names may contain
    names = [f"f{i}" for i in range(X.shape[1])]
    data = lightgbm.Dataset(X, label=y, feature_name=names, params={"max_bin": params["max_bin"]},
                       free_raw_data=True)
    booster: lgb.Booster = lightgbm.train(params, data, num_boost_round=rounds)
    return booster


def mean_abs_shap(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per feature over the rows of ``X`` (exact TreeSHAP via ``pred_contrib``).

    :param booster: a fitted surrogate.
    :param X: (rows, features) rows to explain.
    :return: float64 (features,).
    """
    total = np.zeros(X.shape[1], dtype=np.float64)
    for lo in range(0, len(X), _SHAP_CHUNK):
        contrib = booster.predict(X[lo:lo + _SHAP_CHUNK], pred_contrib=True, num_threads=2)
        total += np.abs(np.asarray(contrib)[:, :-1]).sum(axis=0)  # last column: expected value
    return total / max(len(X), 1)


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of :func:`select_features`.

    :param selected: the top ``n_select`` feature names, best first.
    :param ranking: one row per feature in final order: ``feature``, ``mean_abs_shap`` (mean over
        folds), ``mean_abs_shap_fold{k}``, ``rank_fold{k}`` (1 = best, ties averaged),
        ``mean_rank``, ``rank_std``, ``selected``.
    :param stability: mean pairwise overlap ``|A & B| / n_select`` of the per-fold top-``n_select``
        sets, 0..1 (1.0 when there is a single fold). Compare with :attr:`chance_stability`.
    :param folds: number of folds.
    :param rows_used: rows left after dropping NaN labels and features.
    """

    selected: tuple[str, ...]
    ranking: pd.DataFrame
    stability: float
    folds: int
    rows_used: int

    @property
    def chance_stability(self) -> float:
        """Expected :attr:`stability` of random sets: ``n_select / n_features``."""
        return len(self.selected) / max(len(self.ranking), 1)


def _check_inputs(X: pd.DataFrame, label: np.ndarray, n_select: int, folds: int) -> None:
    if not isinstance(X, pd.DataFrame):
        raise OperationalError(f"selection: X must be a pandas DataFrame, got {type(X).__name__}")
    for name, value in (("n_select", n_select), ("folds", folds)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"selection: {name}={value!r} must be a positive integer; fix "
                              "selection.n_selected / selection.folds in params.yaml")
    if X.columns.has_duplicates:
        dup = sorted(set(X.columns[X.columns.duplicated()].astype(str)))
        raise OperationalError(f"selection: duplicate feature columns {dup[:5]}; names must be "
                               "unique")
    non_numeric = [str(c) for c, t in X.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
                   or pd.api.types.is_bool_dtype(t)]
    if non_numeric:
        raise OperationalError(f"selection: non-numeric feature columns {non_numeric[:5]}; "
                               "pass the float feature frame only (no ts/symbol columns)")
    if X.shape[1] < n_select:
        raise OperationalError(
            f"selection: asked for {n_select} features but the frame has only {X.shape[1]}; "
            f"lower selection.n_selected to <= {X.shape[1]} or build more features")
    if label.ndim != 1 or len(label) != len(X):
        raise OperationalError(f"selection: label has shape {label.shape} but X has {len(X)} "
                               "rows; pass one label per feature row")
    finite = label[np.isfinite(label)]
    if finite.size == 0:
        raise OperationalError("selection: the label is empty (no finite value); check the "
                               "close column and the label horizon")
    if np.ptp(finite) == 0:
        raise OperationalError(f"selection: the label is constant ({finite[0]!r}); a constant "
                               "target carries no signal to rank features by")


def select_features(
    X: pd.DataFrame,
    label: np.ndarray,
    *,
    n_select: int,
    folds: int,
    purge: int,
    embargo: int,
    seed: int,
    progress: bool = False,
) -> SelectionResult:
    """Rank the columns of ``X`` by out-of-sample mean |SHAP| and keep the top ``n_select``.

    Rows whose label or any feature is NaN/inf are dropped first: warm-up rows (features not yet
    defined) and the last ``horizon`` rows (no future close) go. The remaining rows keep their time
    order and are split with :func:`~mia.training.splits.walk_forward_splits` into ``folds``
    equal validation windows after one leading train block, **rolling** scheme: each surrogate
    trains on the block just before its validation window, so consecutive folds share (almost) no
    train rows and their rankings are independent evidence. With expanding windows the noise
    learned on the shared early rows persists into every later fold and inflates stability: on a
    pure-noise label we measured 0.22 against a chance level of 0.03 (top 10 of 350).
    ``purge`` and ``embargo`` count rows of the cleaned table; dropping rows only widens the time
    gap they span.

    Per fold: fit :func:`fit_surrogate` on the train rows, compute mean |SHAP| on the validation
    rows, rank features (1 = largest, ties averaged). Final order: mean rank across folds,
    then mean |SHAP|, then name. A label of pure noise is *not* refused (the trees still split on
    noise); it shows as :attr:`SelectionResult.stability` near
    :attr:`SelectionResult.chance_stability`, which the caller should log and alert on.

    :param X: feature frame, one row per bar, oldest first, numeric columns only.
    :param label: forward return per row (:func:`mia.selection.labels.forward_log_return`).
    :param n_select: features to keep (``selection.n_selected``).
    :param folds: walk-forward folds (``selection.folds``).
    :param purge: rows between train and validation, >= the label horizon.
    :param embargo: rows after each validation window kept out of later train windows.
    :param seed: surrogate seed (``selection.seed``); same inputs and seed give the same result.
    :param progress: show a progress bar over folds.
    :raises ConfigError: ``n_select``/``folds`` not positive, or a bad purge/embargo.
    :raises OperationalError: too few usable rows, fewer features than ``n_select``, an empty or
        constant label, or a fold whose surrogate explains nothing (all SHAP values zero).
    """
    y_all = np.asarray(label, dtype=np.float64)
    _check_inputs(X, y_all, n_select, folds)
    values = X.to_numpy(dtype=np.float32)
    usable = np.isfinite(values).all(axis=1) & np.isfinite(y_all)
    rows = int(usable.sum())
    # rolling layout: folds + 1 blocks, each train block loses the purge and at most one embargo
    needed = (folds + 1) * (_MIN_BLOCK_ROWS + max(purge, 0) + max(embargo, 0))
    if rows < needed:
        nan_rows = (~np.isfinite(values)).sum(axis=0)
        worst = ", ".join(f"{X.columns[i]} ({nan_rows[i]})" for i in np.argsort(-nan_rows)[:3])
        raise OperationalError(
            f"selection: {rows} of {len(X)} rows have a finite label and finite features, need "
            f">= {needed} for {folds} folds; columns with most NaN rows: {worst}; drop those "
            "columns, supply more history or lower selection.folds")
    Xu, yu = values[usable], y_all[usable]
    splits = walk_forward_splits(rows, folds=folds, scheme="rolling", train_rows=None,
                                 validation_rows=None, purge=purge, embargo=embargo)
    names = [str(c) for c in X.columns]
    shap_by_fold = np.empty((folds, len(names)), dtype=np.float64)
    fold_iter: Any = splits
    if progress:
        from tqdm import tqdm

        fold_iter = tqdm(splits, desc="selection", unit="fold", leave=False)
    for fold in fold_iter:
        idx = fold.train_indices()
        if np.ptp(yu[idx]) == 0:
            raise OperationalError(f"selection: fold {fold.index}: the label is constant over "
                                   f"its {len(idx)} train rows; check the bars of that period")
        booster = fit_surrogate(Xu[idx], yu[idx], seed=seed)
        shap_by_fold[fold.index] = mean_abs_shap(booster, Xu[fold.validation])
        if not shap_by_fold[fold.index].any():
            raise OperationalError(
                f"selection: fold {fold.index}: every feature has zero SHAP on the validation "
                "rows; no feature carries signal; selection refused (check the label and that "
                "the features vary)")
    return _aggregate(names, shap_by_fold, n_select, rows)


def _aggregate(names: list[str], shap_by_fold: np.ndarray, n_select: int,
               rows: int) -> SelectionResult:
    folds, n_feat = shap_by_fold.shape
    name_arr = np.asarray(names, dtype=object)
    ranks = np.empty_like(shap_by_fold)
    top_sets: list[set[int]] = []
    for k in range(folds):
        ranks[k] = pd.Series(shap_by_fold[k]).rank(ascending=False, method="average").to_numpy()
        order_k = np.lexsort((name_arr, -shap_by_fold[k]))
        top_sets.append(set(order_k[:n_select].tolist()))
    mean_rank = ranks.mean(axis=0)
    mean_shap = shap_by_fold.mean(axis=0)
    order = np.lexsort((name_arr, -mean_shap, mean_rank))  # last key is the primary one
    pairs = list(itertools.combinations(top_sets, 2))
    stability = (float(np.mean([len(a & b) / n_select for a, b in pairs])) if pairs else 1.0)
    table: dict[str, Any] = {"feature": name_arr[order].astype(str),
                             "mean_abs_shap": mean_shap[order]}
    for k in range(folds):
        table[f"mean_abs_shap_fold{k}"] = shap_by_fold[k, order]
    for k in range(folds):
        table[f"rank_fold{k}"] = ranks[k, order]
    table["mean_rank"] = mean_rank[order]
    table["rank_std"] = ranks.std(axis=0)[order]
    table["selected"] = np.arange(n_feat) < n_select
    ranking = pd.DataFrame(table)
    return SelectionResult(selected=tuple(ranking["feature"].iloc[:n_select]), ranking=ranking,
                           stability=stability, folds=folds, rows_used=rows)
