"""Regime observations and the HMM forward filter: the kernels the live executor runs.

numpy + numba only, no I/O, no hmmlearn. Every quantity at bar t is computed from bars <= t:
the observations are an EWMA recursion and the regime probabilities are the *filtered*
posterior p(s_t | x_<=t) of the forward algorithm (Rabiner 1989, eq. 19-20, normalised as in
Zucchini & MacDonald 2009, ch. 3). Batch functions are the step kernels looped in numba, so
batch and online values are byte-identical (tests/unit/test_regime.py holds this).

docs/regime.md documents the observations, the filter convention, the warm-up constants and
the flat parameter layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numba import njit

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path
from mia.errors import DataValidationError, OperationalError
from mia.types import REGIMES

OBS_DIM: Final[int] = 2
OBS_NAMES: Final[tuple[str, ...]] = ("ret_bp", "log_ewma60_ret2_bp2")
OBS_EWMA_SPAN: Final[int] = 60
OBS_ALPHA: Final[float] = 2.0 / (OBS_EWMA_SPAN + 1)
# EWMA of squared returns "before bar 0", in bp^2: about the squared 1-minute return of ES/MNQ in a
# quiet hour, so the first observations are not outliers for the HMM. It is forgotten
# geometrically (see OBS_WARMUP).
OBS_EWMA_SEED: Final[float] = 1.0
# Floor of the EWMA inside the log only: a long run of unchanged closes decays the EWMA towards 0
# and log(0) = -inf would poison the filter. 1e-8 bp^2 is far below one tick of ES (~0.27 bp^2).
OBS_VAR_FLOOR: Final[float] = 1e-8
# Observation state: [previous close, EWMA of squared returns (bp^2), bars seen].
OBS_STATE_SIZE: Final[int] = 3
# A state started fresh differs from a long-running one only through the EWMA, by
# (1 - alpha)^n times the initial gap. n with (1 - alpha)^n <= 1e-14 gives 1e-12 relative (= 1e-12
# absolute on the log column) with 100x headroom for the variance falling during the warm-up
# (the intraday volatility profile of ES spans ~25x in variance).
OBS_WARMUP: Final[int] = math.ceil(math.log(1e-14) / math.log(1.0 - OBS_ALPHA)) + 1
# Bars after which a filter started fresh (filter_init) agrees with a long-running one within
# 1e-9 absolute. Forgetting of the initial distribution is geometric: the Hilbert-metric distance
# between two filters contracts at least by the Birkhoff coefficient of the transition matrix each
# bar, and much faster when the observations are informative (Le Gland & Mevel 2000, "Exponential
# forgetting and geometric ergodicity in hidden Markov models"). The Birkhoff bound alone is loose
# for sticky regimes (thousands of bars), so the constant is measured: on 4 synthetic ES markets
# (fresh and one-hot starts every ~100 bars) the worst start needed 71 bars; 500 is a 7x margin.
FILTER_WARMUP: Final[int] = 500

_LOG_2PI: Final[float] = math.log(2.0 * math.pi)


@njit(cache=JIT_CACHE)
def observation_step(state: np.ndarray, close: float, out: np.ndarray) -> None:
    """Advance the observation state by one bar and write its 2 observations.

    ``out[0]`` = 1-bar log return in bp (0 on the first bar), ``out[1]`` = log of the EWMA
    (span :data:`OBS_EWMA_SPAN`, seeded with :data:`OBS_EWMA_SEED`) of squared returns in bp^2,
    floored at :data:`OBS_VAR_FLOOR`. Nothing is changed when the close is rejected.

    :param state: float64 array of length :data:`OBS_STATE_SIZE`; a fresh state is
        ``np.zeros(OBS_STATE_SIZE)``.
    :param close: the bar's close, finite and > 0.
    :param out: float64 array of length >= 2 receiving the observations.
    """
    # numba does not check bounds: a short array would be read past its end
    if state.shape[0] < OBS_STATE_SIZE or out.shape[0] < OBS_DIM:
        raise OperationalError(
            "observation_step: state needs OBS_STATE_SIZE and out 2 float64 entries; "
            "allocate them with np.zeros(OBS_STATE_SIZE) and np.empty(2)"
        )
    if not (close > 0.0 and close < np.inf):
        raise DataValidationError(
            "observation_step: close must be finite and > 0; reject the bar upstream "
            "(regime state unchanged)"
        )
    if state[2] == 0.0:
        ret = 0.0
        ewma = OBS_EWMA_SEED
    else:
        ret = math.log(close / state[0]) * 1e4
        ewma = state[1]
    ewma = (1.0 - OBS_ALPHA) * ewma + OBS_ALPHA * ret * ret
    state[0] = close
    state[1] = ewma
    state[2] += 1.0
    out[0] = ret
    out[1] = math.log(max(ewma, OBS_VAR_FLOOR))


@njit(cache=JIT_CACHE)
def _observation_loop(close: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:
    for t in range(close.shape[0]):
        observation_step(state, close[t], out[t])


def regime_observations(close: np.ndarray) -> np.ndarray:
    """Observations of every bar, from a fresh state: :func:`observation_step` looped.

    :param close: 1-D closes in time order, finite and > 0.
    :return: float64 array of shape (T, 2): return in bp, log EWMA of squared returns in bp^2.
    """
    c = np.ascontiguousarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise DataValidationError(f"close has shape {c.shape}; pass one 1-D column of closes")
    bad = np.flatnonzero(~(np.isfinite(c) & (c > 0.0)))
    if bad.size:
        raise DataValidationError(
            f"close has {bad.size} non-finite or non-positive values (first at row {bad[0]}: "
            f"{c[bad[0]]!r}); validate the bars (mia.data.schema) before computing regimes"
        )
    out = np.empty((c.shape[0], OBS_DIM), dtype=np.float64)
    _observation_loop(c, np.zeros(OBS_STATE_SIZE, dtype=np.float64), out)
    return out


@dataclass(frozen=True, eq=False)
class HMMParams:
    """Parameters of a Gaussian HMM with diagonal covariances, state i named ``labels[i]``.

    Arrays are stored as read-only float64 copies; construction validates everything, so an
    ``HMMParams`` that exists is safe to filter with.

    :param labels: regime name of each state, distinct members of :data:`mia.types.REGIMES`.
    :param startprob: (K,) prior of the state before the first filtered bar.
    :param transmat: (K, K) row-stochastic, ``transmat[i, j] = p(s_t = j | s_{t-1} = i)``.
    :param means: (K, d) emission means.
    :param variances: (K, d) emission variances (the covariance diagonals), > 0.
    """

    labels: tuple[str, ...]
    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def __post_init__(self) -> None:
        for name in ("startprob", "transmat", "means", "variances"):
            arr = np.array(getattr(self, name), dtype=np.float64, order="C", copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "labels", tuple(self.labels))
        _check_params(self)

    @property
    def n_states(self) -> int:
        """:return: K, the number of hidden states."""
        return int(self.startprob.shape[0])

    @property
    def n_features(self) -> int:
        """:return: d, the dimension of an observation."""
        return int(self.means.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """:return: JSON-able dict of lists; :meth:`from_dict` restores it exactly."""
        return {
            "labels": list(self.labels),
            "startprob": self.startprob.tolist(),
            "transmat": self.transmat.tolist(),
            "means": self.means.tolist(),
            "variances": self.variances.tolist(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HMMParams:
        """Rebuild parameters from :meth:`to_dict` output, refusing anything malformed.

        :param doc: mapping with exactly the keys of :meth:`to_dict`.
        :return: validated parameters.
        """
        keys = {"labels", "startprob", "transmat", "means", "variances"}
        if not isinstance(doc, Mapping) or set(doc) != keys:
            got = sorted(doc) if isinstance(doc, Mapping) else type(doc).__name__
            raise OperationalError(
                f"HMM params must have exactly the keys {sorted(keys)}, got {got}; "
                "write them with HMMParams.to_dict() (refit with mia.regime.fit_hmm if lost)"
            )
        labels = doc["labels"]
        if not isinstance(labels, list | tuple) or not all(isinstance(s, str) for s in labels):
            raise OperationalError(f"HMM params: labels must be a list of names, got {labels!r}")
        arrays = []
        for name in ("startprob", "transmat", "means", "variances"):
            try:
                arrays.append(np.asarray(doc[name], dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise OperationalError(
                    f"HMM params: {name} is not a rectangular list of numbers ({exc}); "
                    "the bundle is corrupt, rewrite it from HMMParams.to_dict()"
                ) from exc
        return cls(tuple(labels), *arrays)

    def to_vector(self) -> np.ndarray:
        """Flat float64 layout for the compiled feature engine.

        Order: startprob (K), transmat (K*K, row-major), means (K*d, row-major), variances
        (K*d, row-major); length ``K + K*K + 2*K*d``.

        :return: a new 1-D float64 array.
        """
        return np.concatenate(
            [self.startprob, self.transmat.ravel(), self.means.ravel(), self.variances.ravel()]
        )

    @classmethod
    def from_vector(
        cls, v: np.ndarray, n_states: int, n_features: int, labels: tuple[str, ...]
    ) -> HMMParams:
        """Inverse of :meth:`to_vector`.

        :param v: 1-D array of length ``K + K*K + 2*K*d``.
        :param n_states: K.
        :param n_features: d.
        :param labels: name of each state.
        :return: validated parameters.
        """
        k, d = int(n_states), int(n_features)
        arr = np.asarray(v, dtype=np.float64)
        size = k + k * k + 2 * k * d
        if k < 1 or d < 1 or arr.shape != (size,):
            raise OperationalError(
                f"HMM vector has shape {arr.shape}; K={k}, d={d} need ({size},) laid out as "
                "startprob, transmat, means, variances (HMMParams.to_vector)"
            )
        a, b, c = k, k + k * k, k + k * k + k * d
        return cls(
            labels, arr[:a], arr[a:b].reshape(k, k), arr[b:c].reshape(k, d), arr[c:].reshape(k, d)
        )


def _check_params(p: HMMParams) -> None:
    if p.startprob.ndim != 1 or p.means.ndim != 2 or p.startprob.size < 1 or p.means.size < 1:
        raise OperationalError(
            f"HMM params: startprob must be (K,) and means (K, d), got {p.startprob.shape} and "
            f"{p.means.shape}. Refit (mia.regime.fit_hmm) or restore the bundle"
        )
    k, d = p.startprob.shape[0], p.means.shape[1]
    shapes = {"startprob": (k,), "transmat": (k, k), "means": (k, d), "variances": (k, d)}
    for name, want in shapes.items():
        got = getattr(p, name).shape
        if got != want:
            raise OperationalError(
                f"HMM params: {name} has shape {got}; with startprob (K,) and means (K, d) it "
                f"must be {want}. Refit (mia.regime.fit_hmm) or restore the bundle"
            )
        if not np.all(np.isfinite(getattr(p, name))):
            raise OperationalError(f"HMM params: {name} has non-finite entries; refit the HMM")
    for name, rows in (("startprob", p.startprob[None, :]), ("transmat", p.transmat)):
        err = np.abs(rows.sum(axis=1) - 1.0)
        if np.any(rows < 0.0) or np.any(err > 1e-9):
            raise OperationalError(
                f"HMM params: {name} rows must be probabilities (>= 0, summing to 1 within "
                f"1e-9), worst row sum error {err.max():.3g}; the params were tampered with, "
                "refit or restore them"
            )
    if np.any(p.variances <= 0.0):
        raise OperationalError("HMM params: variances must be > 0; refit or restore the bundle")
    if (
        len(p.labels) != k
        or len(set(p.labels)) != k
        or not all(isinstance(s, str) and s in REGIMES for s in p.labels)
    ):
        raise OperationalError(
            f"HMM params: labels {p.labels!r} must be {k} distinct names from {REGIMES}"
        )


def filter_init(startprob: np.ndarray) -> np.ndarray:
    """Filter state before the first bar: a writable copy of the prior.

    The first :func:`filter_step` applies the transition to it like every later one, so the
    prior of bar 0 is ``startprob @ transmat`` (equal to ``startprob`` when, as
    :func:`mia.regime.fit_hmm` returns, it is the stationary distribution).

    :param startprob: (K,) probabilities summing to 1.
    :return: a new float64 (K,) array to pass to :func:`filter_step`.
    """
    p = np.array(startprob, dtype=np.float64, order="C", copy=True)
    if (
        p.ndim != 1
        or p.size == 0
        or np.any(~np.isfinite(p))
        or np.any(p < 0.0)
        or abs(float(p.sum()) - 1.0) > 1e-9
    ):
        raise OperationalError(
            f"filter_init: startprob {p!r} must be a 1-D probability vector; "
            "use HMMParams.startprob"
        )
    return p


@njit(cache=JIT_CACHE)
def filter_step(
    prob: np.ndarray,
    x: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Update ``prob`` in place from p(s_{t-1} | x_<=t-1) to p(s_t | x_<=t). O(K^2 + K d).

    Predict with the transition matrix, weight by the diagonal-Gaussian likelihood, normalise;
    all in log space with the max subtracted before ``exp``. Allocates nothing; ``prob`` is
    unchanged when an error is raised.

    :param prob: (K,) filtered probabilities of the previous bar (from :func:`filter_init`
        before the first bar); overwritten.
    :param x: (d,) observation of this bar, finite.
    :param transmat: (K, K) row-stochastic transition matrix.
    :param means: (K, d) emission means.
    :param variances: (K, d) emission variances, > 0.
    :param scratch: float64 work array of length >= 2K (e.g. ``np.empty(2 * K)``), contents
        ignored.
    """
    k = prob.shape[0]
    d = x.shape[0]
    # numba does not check bounds: wrong shapes would read past the arrays
    if (
        transmat.shape[0] != k
        or transmat.shape[1] != k
        or means.shape[0] != k
        or means.shape[1] != d
        or variances.shape[0] != k
        or variances.shape[1] != d
        or scratch.shape[0] < 2 * k
    ):
        raise OperationalError(
            "filter_step: shapes disagree; need prob (K,), x (d,), transmat (K, K), means and "
            "variances (K, d), scratch (>= 2K,): build them from one HMMParams"
        )
    for j in range(d):
        if not np.isfinite(x[j]):
            raise DataValidationError(
                "filter_step: observation is not finite; reject the bar upstream "
                "(regime probabilities unchanged)"
            )
    for i in range(k):  # predict: p(s_t = i | x_<=t-1)
        acc = 0.0
        for j in range(k):
            acc += prob[j] * transmat[j, i]
        scratch[i] = acc
    top = -np.inf
    for i in range(k):  # log prior + log likelihood; log(0) = -inf drops the state
        ll = 0.0
        for j in range(d):
            v = variances[i, j]
            z = x[j] - means[i, j]
            ll -= 0.5 * (z * z / v + math.log(v) + _LOG_2PI)
        lp = np.log(scratch[i]) + ll
        scratch[k + i] = lp
        if lp > top:
            top = lp
    if not (top > -np.inf and top < np.inf):
        raise DataValidationError(
            "filter_step: observation has zero likelihood under every state or the filter "
            "state is invalid; reject the bar or restart the filter with filter_init"
        )
    total = 0.0
    for i in range(k):
        w = math.exp(scratch[k + i] - top)
        scratch[k + i] = w
        total += w
    for i in range(k):
        prob[i] = scratch[k + i] / total


@njit(cache=JIT_CACHE)
def _filter_loop(
    prob: np.ndarray,
    obs: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    scratch: np.ndarray,
    out: np.ndarray,
) -> None:
    for t in range(obs.shape[0]):
        filter_step(prob, obs[t], transmat, means, variances, scratch)
        out[t, :] = prob


def forward_filter(params: HMMParams, obs: np.ndarray) -> np.ndarray:
    """Filtered regime probabilities of every bar: :func:`filter_step` looped from
    :func:`filter_init`. Row t depends on ``obs[:t + 1]`` only.

    :param params: fitted parameters.
    :param obs: (T, d) finite observations (:func:`regime_observations`).
    :return: float64 (T, K), each row p(s_t | x_<=t) in the order of ``params.labels``.
    """
    x = np.ascontiguousarray(obs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != params.n_features:
        raise DataValidationError(
            f"observations have shape {x.shape}; the HMM needs (T, {params.n_features}) "
            "from regime_observations"
        )
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    if bad.size:
        raise DataValidationError(
            f"observations have {bad.size} non-finite rows (first {bad[0]}); "
            "validate the bars before filtering"
        )
    # Forward filter only, never hmmlearn's predict / predict_proba / score_samples: those run
    # forward-backward (smoothing), so their value at bar t reads bars after t (look-ahead).
    k = params.n_states
    out = np.empty((x.shape[0], k), dtype=np.float64)
    _filter_loop(
        filter_init(params.startprob),
        x,
        params.transmat,
        params.means,
        params.variances,
        np.empty(2 * k, dtype=np.float64),
        out,
    )
    return out
