"""Online drift: Population Stability Index per feature over a sliding window of bars.

PSI = sum over bins of ``(a - e) * ln(a / e)``, with ``e`` the reference share and ``a`` the
live share of a bin (Yurdakul, 2018, *Statistical properties of population stability index*;
the customary reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 drifted). Bins are reference
quantiles (:func:`reference_quantiles`), stored in the policy bundle next to the expected shares
(:func:`bin_proportions`).

:class:`PSIMonitor` is the live executor's drift check, so this module is numpy + numba, no I/O.
Per bar, :meth:`PSIMonitor.update` is one compiled call: per feature, a binary search for the
bin, then the bin the oldest bar occupied is decremented and the new one incremented (a ring
buffer of bin indices). Work per bar is O(F log B) and memory is fixed at ``window x F`` small
ints, whatever the number of bars seen.

Missing values: a non-finite value (NaN, +-inf) is counted in an extra *missing* bucket, the
last column of the counts. Its reference share is the reference's NaN share (0 for a clean
reference), so a feature that goes NaN live shows up as drift instead of silently shrinking the
window. Feed the monitor only bars after the feature warm-up.
"""

from __future__ import annotations

import numba
import numpy as np

from mia._jit import JIT_CACHE  # numba's cache folder is set first; off on the live path
from mia.errors import DataValidationError, OperationalError

EPSILON = 1e-4  # share given to an empty bin: ln(a / e) must stay finite (and small for a = e)
_MAX_BINS = 1_000  # bin indices live in int16; far beyond any sensible PSI binning


def reference_quantiles(X: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Per-feature interior bin edges at the reference quantiles ``k / n_bins``.

    Discrete features repeat quantiles (a 0/1 flag with 70 % zeros has seven edges at 0); the
    repeats are removed and the row is padded with ``+inf`` so every row keeps ``n_bins - 1``
    edges. A padded bin can only hold ``+inf`` (counted as missing), so it stays empty in the
    reference and live alike and adds nothing to the PSI.

    :param X: (rows, F) reference values; NaN are ignored.
    :param n_bins: bins per feature, 2..1000.
    :return: float64 (F, n_bins - 1), each row non-decreasing.
    :raises OperationalError: ``X`` is not 2-D, ``n_bins`` is out of range, or a feature has no
        finite reference value.
    """
    if not isinstance(n_bins, int | np.integer) or not 2 <= n_bins <= _MAX_BINS:
        raise OperationalError(f"psi: n_bins={n_bins!r} must be an integer in 2..{_MAX_BINS}")
    ref = np.asarray(X, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[0] == 0:
        raise OperationalError(f"psi: reference must be a non-empty (rows, features) matrix, got "
                               f"shape {ref.shape}")
    ref = np.where(np.isfinite(ref), ref, np.nan)
    empty = np.flatnonzero(np.isnan(ref).all(axis=0))
    if empty.size:
        raise OperationalError(f"psi: reference features {empty[:10].tolist()} have no finite "
                               "value; drop them or take a reference window after warm-up")
    qs = np.nanquantile(ref, np.arange(1, n_bins) / n_bins, axis=0).T  # (F, n_bins - 1)
    edges = np.full_like(qs, np.inf)
    for f in range(qs.shape[0]):
        unique = np.unique(qs[f])
        edges[f, : unique.size] = unique
    return edges


@numba.njit(cache=JIT_CACHE)
def _bin_of(row: np.ndarray, v: float) -> int:
    # searchsorted(side="right"): bin i holds edges[i - 1] <= v < edges[i]
    lo, hi = 0, row.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if v < row[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=JIT_CACHE)
def _update(edges: np.ndarray, ring: np.ndarray, counts: np.ndarray, state: np.ndarray,
            x: np.ndarray) -> None:
    # state[0]: next ring slot, state[1]: bars held (<= window)
    pos = state[0]
    full = state[1] == ring.shape[0]
    missing = edges.shape[1] + 1
    for f in range(x.shape[0]):
        v = x[f]
        b = missing if not np.isfinite(v) else _bin_of(edges[f], v)
        if full:
            counts[f, ring[pos, f]] -= 1
        ring[pos, f] = b
        counts[f, b] += 1
    state[0] = (pos + 1) % ring.shape[0]
    if not full:
        state[1] += 1


def bin_proportions(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the rows of ``X`` in each bin, plus the missing share (last column).

    :param X: (rows, F) values, typically the reference window the edges came from.
    :param edges: (F, n_bins - 1) from :func:`reference_quantiles`.
    :return: float64 (F, n_bins + 1), rows summing to 1.
    """
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != edges.shape[0] or values.shape[0] == 0:
        raise OperationalError(f"psi: X has shape {values.shape}, expected (rows>0, "
                               f"{edges.shape[0]}) to match the edges")
    n_bins = edges.shape[1] + 1
    out = np.zeros((edges.shape[0], n_bins + 1))
    for f in range(edges.shape[0]):
        col = values[:, f]
        ok = np.isfinite(col)
        idx = np.searchsorted(edges[f], col[ok], side="right")
        out[f, :n_bins] = np.bincount(idx, minlength=n_bins)
        out[f, n_bins] = (~ok).sum()
    shares: np.ndarray = out / values.shape[0]
    return shares


def psi_value(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """PSI per row of two (F, bins) share matrices, empty bins floored at :data:`EPSILON`.

    :param actual: live shares.
    :param expected: reference shares.
    """
    a = np.maximum(actual, EPSILON)
    e = np.maximum(expected, EPSILON)
    result: np.ndarray = ((a - e) * np.log(a / e)).sum(axis=1)
    return result


class PSIMonitor:
    """Sliding-window PSI per feature, updated once per bar.

    :param edges: (F, n_bins - 1) interior edges from :func:`reference_quantiles`.
    :param window: bars in the sliding window.
    :param expected: reference shares, (F, n_bins + 1) from :func:`bin_proportions` or
        (F, n_bins) without the missing bucket (taken as 0). ``None``: equal shares over each
        feature's distinct bins, which is what quantile edges give a continuous reference; pass
        :func:`bin_proportions` for discrete features.
    :raises OperationalError: shapes or shares are inconsistent.
    """

    def __init__(self, edges: np.ndarray, window: int, expected: np.ndarray | None = None) -> None:
        e = np.ascontiguousarray(edges, dtype=np.float64)
        if e.ndim != 2 or e.shape[0] == 0 or not 1 <= e.shape[1] < _MAX_BINS:
            raise OperationalError(f"psi: edges must be (features, n_bins - 1), got {e.shape}")
        if np.isnan(e).any() or (e[:, 1:] < e[:, :-1]).any():
            raise OperationalError("psi: edges must be non-decreasing and not NaN per feature; "
                                   "build them with reference_quantiles")
        if not isinstance(window, int | np.integer) or window < 1:
            raise OperationalError(f"psi: window={window!r} must be a positive integer (bars)")
        n_feat, n_bins = e.shape[0], e.shape[1] + 1
        self._edges = e
        self._expected = self._check_expected(e, expected)
        self._ring = np.zeros((int(window), n_feat), dtype=np.int16)
        self._counts = np.zeros((n_feat, n_bins + 1), dtype=np.int64)
        self._state = np.zeros(2, dtype=np.int64)
        self._shape = (n_feat,)

    @staticmethod
    def _check_expected(edges: np.ndarray, expected: np.ndarray | None) -> np.ndarray:
        n_feat, n_bins = edges.shape[0], edges.shape[1] + 1
        if expected is None:
            distinct = np.isfinite(edges).sum(axis=1) + 1  # bins a finite value can reach
            out = np.zeros((n_feat, n_bins + 1))
            out[:, :n_bins] = (np.arange(n_bins)[None, :] < distinct[:, None]) / distinct[:, None]
            return out
        exp = np.asarray(expected, dtype=np.float64)
        if exp.shape == (n_feat, n_bins):
            exp = np.hstack([exp, np.zeros((n_feat, 1))])
        if exp.shape != (n_feat, n_bins + 1):
            raise OperationalError(f"psi: expected has shape {exp.shape}, need ({n_feat}, "
                                   f"{n_bins + 1}) (bins + missing) or ({n_feat}, {n_bins})")
        if (exp < 0).any() or not np.allclose(exp.sum(axis=1), 1.0, atol=1e-6):
            raise OperationalError("psi: expected shares must be >= 0 and sum to 1 per feature; "
                                   "build them with bin_proportions")
        return exp

    def update(self, x: np.ndarray) -> None:
        """Add one bar's feature values; the oldest bar leaves once the window is full.

        :param x: (F,) float values in the order of the edges; non-finite counts as missing.
        :raises DataValidationError: ``x`` does not hold exactly F values.
        """
        if not isinstance(x, np.ndarray) or x.shape != self._shape:
            raise DataValidationError(
                f"psi: update got shape {getattr(x, 'shape', type(x).__name__)}, expected "
                f"{self._shape}; the feature vector does not match the bundle's drift reference")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        _update(self._edges, self._ring, self._counts, self._state, x)

    @property
    def n_observed(self) -> int:
        """Bars currently in the window (grows to ``window``, then stays)."""
        return int(self._state[1])

    @property
    def counts(self) -> np.ndarray:
        """Copy of the (F, n_bins + 1) window counts, missing bucket last."""
        return self._counts.copy()

    @property
    def nbytes(self) -> int:
        """Bytes held by the monitor's arrays (constant after construction)."""
        arrays = (self._edges, self._expected, self._ring, self._counts, self._state)
        return sum(a.nbytes for a in arrays)

    def psi(self) -> np.ndarray:
        """PSI per feature over the bars in the window (float64, shape (F,)).

        Before the window has filled, the value is over the bars seen so far and is noisier.

        :raises OperationalError: no bar has been observed yet.
        """
        n = self.n_observed
        if n == 0:
            raise OperationalError("psi: no bar observed yet; call update() before psi()")
        return psi_value(self._counts / n, self._expected)

    def drifted(self, threshold: float = 0.2) -> np.ndarray:
        """Boolean (F,) mask: PSI above ``threshold`` (``drift.psi_threshold``).

        :param threshold: PSI above which a feature counts as drifted.
        """
        return self.psi() > threshold
