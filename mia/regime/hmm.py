"""Fit a 3-state Gaussian HMM on regime observations and name its states deterministically.

Offline only. hmmlearn (and through it scikit-learn and scipy) is imported inside
:func:`fit_hmm`, so importing :mod:`mia.regime` stays light. The result is an
:class:`~mia.regime.filter.HMMParams` whose state i is ``REGIMES[i]`` (trend, range, defensive),
whatever order hmmlearn's EM happened to find the states in. docs/regime.md explains the rule.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from mia.errors import ConfigError, DataValidationError, OperationalError
from mia.regime.filter import HMMParams
from mia.types import REGIMES

# EM needs a few dozen bars per state to estimate a mean and a variance per dimension; below
# this the fit is noise (and hmmlearn's k-means initialisation can leave a state empty).
MIN_ROWS_PER_STATE: Final[int] = 50
# EM starts: one deterministic (volatility terciles) and N_STARTS - 1 seeded jitters of it.
N_STARTS: Final[int] = 3
# Switch probability per bar of the starting transition matrix: states lasting ~100 bars, as
# slow as a regime can be and still be learnt from a few weeks of 1-minute bars.
INIT_SWITCH_PROB: Final[float] = 0.01


def fit_hmm(obs: np.ndarray, *, n_states: int = 3, seed: int = 0, n_iter: int = 100) -> HMMParams:
    """Fit ``GaussianHMM(covariance_type="diag")`` by EM and label its states.

    The returned ``startprob`` is the stationary distribution of the fitted transition matrix,
    not hmmlearn's ``startprob_``: EM estimates the latter from the first bar of the training
    window alone, while the filter is started at arbitrary bars (live restarts, new windows).

    :param obs: (T, d) finite observations, column 0 the 1-bar return
        (:func:`mia.regime.filter.regime_observations`), T >= 50 * n_states.
    :param n_states: number of hidden states; must be 3 (the regimes are defined for 3).
    :param seed: seed of the jittered EM starts (the first start is deterministic; the fit
        with the highest log-likelihood wins).
    :param n_iter: maximum EM iterations per start.
    :return: parameters with ``labels == REGIMES``.
    """
    if n_states != len(REGIMES):
        raise ConfigError(
            f"n_states={n_states}: regime labels {REGIMES} are defined for exactly "
            f"{len(REGIMES)} states; set features.regime_states to {len(REGIMES)} in params.yaml"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 1:
        raise ConfigError(f"n_iter={n_iter!r} must be a positive integer")
    x = _check_obs(obs, n_states)
    # Lazy import: hmmlearn pulls in scikit-learn, which the executor never needs.
    from hmmlearn.hmm import GaussianHMM

    rng = np.random.default_rng(seed)
    best, best_ll = None, -np.inf
    for start in range(N_STARTS):
        model = GaussianHMM(
            n_components=n_states,
            covariance_type="diag",
            n_iter=n_iter,
            random_state=int(rng.integers(2**31)),
            init_params="",
        )
        _init_by_volatility(model, x, n_states, rng if start > 0 else None)
        model.fit(x)
        ll = float(model.score(x))
        if ll > best_ll:  # strict: ties keep the earlier (deterministic) start
            best, best_ll = model, ll
    if best is None:
        raise OperationalError(
            "HMM fit diverged from every start (log-likelihood not finite); check the "
            "observations for constant stretches or fit on more bars"
        )
    # hmmlearn exposes diagonal covariances as full (K, d, d) matrices; keep the diagonals.
    variances = np.diagonal(np.asarray(best.covars_), axis1=1, axis2=2)
    try:
        return label_states(np.asarray(best.transmat_), np.asarray(best.means_), variances)
    except OperationalError as exc:
        raise OperationalError(
            f"HMM fit gave unusable parameters ({exc}); fit on more bars or another seed"
        ) from exc


def _init_by_volatility(model: Any, x: np.ndarray, k: int, rng: np.random.Generator | None) -> None:
    # Start EM from the k volatility terciles (rows sorted by the last column, the log EWMA of
    # squared returns). hmmlearn's default k-means start fell into a worse local optimum for 1
    # seed in 4 on the synthetic market (two near-identical low-volatility states that flip every
    # few bars to mimic fat tails, log-likelihood ~14 % lower) and used all 100 iterations; the
    # tercile start reached the best optimum seen on every window tried, in 11-35 iterations.
    # Later starts jitter the tercile means (by a quarter of the within-tercile sd) so that a
    # better optimum, if any, can still win on likelihood.
    parts = np.array_split(np.argsort(x[:, -1], kind="stable"), k)
    means = np.array([x[p].mean(axis=0) for p in parts])
    sd = np.array([x[p].std(axis=0) for p in parts])
    if rng is not None:
        means = means + 0.25 * sd * rng.standard_normal(means.shape)
    stay = 1.0 - INIT_SWITCH_PROB
    trans = np.full((k, k), INIT_SWITCH_PROB / (k - 1))
    np.fill_diagonal(trans, stay)
    model.startprob_ = np.full(k, 1.0 / k)
    model.transmat_ = trans
    model.means_ = means
    model.covars_ = np.maximum(sd**2, 1e-3)


def label_states(transmat: np.ndarray, means: np.ndarray, variances: np.ndarray) -> HMMParams:
    """Name the states of a fitted 3-state HMM and reorder them as ``REGIMES``.

    The rule uses the return variance (column 0) only: highest = ``defensive``, middle =
    ``trend``, lowest = ``range`` (ties broken by the mean of the last column, then by index).
    Why not |mean| / sd for trend: on 1-minute bars a trend's drift is 1-3 % of one bar's
    standard deviation, and a state mixes up- and down-trends, so the fitted means are noise
    and the order would flip between refits. Variance is estimated far more precisely, and the
    synthetic market (like ES) has trend volatility above range volatility (mia.data.synthetic
    ANNUAL_VOL: 14 % vs 11 %, defensive 35 %). The result does not depend on the input order
    of the states, so refits that find the same states name them the same way.

    :param transmat: (3, 3) row-stochastic transition matrix in any state order.
    :param means: (3, d) emission means, column 0 the return.
    :param variances: (3, d) emission variances.
    :return: parameters with state i named ``REGIMES[i]`` and the stationary ``startprob``.
    """
    a = np.asarray(transmat, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    k = len(REGIMES)
    if a.shape != (k, k) or m.ndim != 2 or m.shape[0] != k or v.shape != m.shape:
        raise OperationalError(
            f"label_states needs transmat (3, 3) and means/variances (3, d); got {a.shape}, "
            f"{m.shape}, {v.shape}"
        )
    # np.lexsort sorts by the last key first: return variance, then level of the last column.
    ascending = np.lexsort((np.arange(k), m[:, -1], v[:, 0]))
    by_name = {"range": ascending[0], "trend": ascending[1], "defensive": ascending[2]}
    perm = np.array([by_name[name] for name in REGIMES])
    a = a[np.ix_(perm, perm)]
    return HMMParams(REGIMES, stationary_distribution(a), a, m[perm], v[perm])


def stationary_distribution(transmat: np.ndarray) -> np.ndarray:
    """Stationary distribution pi of a row-stochastic matrix: ``pi @ transmat == pi``.

    :param transmat: (K, K) row-stochastic matrix.
    :return: (K,) probabilities (least-squares solution; the minimum-norm one if not unique).
    """
    a = np.asarray(transmat, dtype=np.float64)
    k = a.shape[0]
    lhs = np.vstack([a.T - np.eye(k), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    pi = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    total = float(pi.sum())
    if not np.isfinite(total) or total <= 0.0:
        raise OperationalError(f"transition matrix {a.tolist()} has no stationary distribution")
    return np.asarray(pi / total)


def _check_obs(obs: np.ndarray, n_states: int) -> np.ndarray:
    x = np.asarray(obs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise DataValidationError(
            f"observations have shape {x.shape}; pass a (T, d) array from regime_observations"
        )
    need = MIN_ROWS_PER_STATE * n_states
    if x.shape[0] < need:
        raise DataValidationError(
            f"{x.shape[0]} observation rows are too few to fit {n_states} states; pass at "
            f"least {need} bars (about {need / 1380:.2f} sessions of 1-minute bars)"
        )
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    if bad.size:
        raise DataValidationError(
            f"observations have {bad.size} non-finite rows (first {bad[0]}); compute them "
            "with regime_observations from validated bars"
        )
    return x
