"""Feature normalisation fit on a fold's training rows, and the observation vector layout.

Pure numpy (the live row's compiled pass is imported when first used): the live executor
imports this module, and the statistics travel in the policy
bundle as JSON (:meth:`Normalizer.to_dict`), so what the executor feeds a policy is exactly what
the env fed it in training.

**Statistics: median and IQR, fit on training rows only.** Features are heavy-tailed (jumps, news
bars, volume bursts); a mean and standard deviation fit on them are dragged by a handful of bars,
the median and inter-quartile range are not. ``scale = IQR / 1.349`` (the IQR of a normal
distribution is 1.349 sigma, so a Gaussian feature comes out with unit variance). Sparse or
discrete features whose IQR is zero (news flags, one-hot regimes) fall back to the standard
deviation; a constant feature gets scale 1 (it normalises to 0 and carries no information). Fitting
on validation rows would leak their distribution into training, so :meth:`Normalizer.fit` takes the
fold's train rows (``Fold.train_indices()``) and nothing else.

**Clip.** Normalised values are clipped to ``[-clip, clip]`` (default 5): beyond five robust
standard deviations a value is an outlier whose exact size should not drive a policy network,
and bounded inputs give the env a finite observation space. Non-finite inputs stay NaN (never
clipped into a plausible number); :func:`observation` and the env refuse them.

**Observation layout** (defined here only): the normalised features in spec order, then the
current position as ``position / max_contracts`` in ``[-1, 1]``::

    obs = [z_0, ..., z_{F-1}, position / max_contracts]        float32, length F + 1
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from mia.errors import OperationalError

FORMAT: Final[int] = 1
METHOD: Final[str] = "median_iqr"
DEFAULT_CLIP: Final[float] = 5.0
IQR_TO_SIGMA: Final[float] = 1.349  # IQR of N(0, 1): Phi^-1(0.75) - Phi^-1(0.25)
POSITION_NAME: Final[str] = "position"
POSITION_INDEX: Final[int] = -1  # where the position sits in an observation (the last slot)


def first_non_finite(matrix: np.ndarray, names: Sequence[str],
                     rows: np.ndarray | None = None) -> str | None:
    """Describe the first NaN/inf in a feature matrix, or ``None`` if every value is finite.

    :param matrix: (T, F) features.
    :param names: the F feature names.
    :param rows: row numbers to check (default: all); reported rows are row numbers of
        ``matrix``.
    :return: ``"feature 'x' is nan at row 812"`` (earliest row, then leftmost feature), or None.
    """
    sub = matrix if rows is None else matrix[rows]
    bad = ~np.isfinite(sub)
    if not bad.any():
        return None
    r, c = np.unravel_index(int(np.argmax(bad)), bad.shape)
    row = int(r) if rows is None else int(rows[int(r)])
    return f"feature {names[int(c)]!r} is {float(sub[int(r), int(c)])} at row {row}"


@dataclass(frozen=True, kw_only=True)
class Normalizer:
    """Per-feature location and scale; ``z = clip((x - center) / scale, -clip, clip)``.

    :param names: feature names, in column order.
    :param center: (F,) float64 medians of the training rows.
    :param scale: (F,) float64 scales (> 0), see the module docstring.
    :param clip: bound of the normalised values.
    """

    names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    clip: float = DEFAULT_CLIP

    def __post_init__(self) -> None:
        n = len(self.names)
        problems = []
        if len(set(self.names)) != n:
            problems.append("feature names repeat")
        for label, arr in (("center", self.center), ("scale", self.scale)):
            if np.shape(arr) != (n,):
                problems.append(f"{label} has shape {np.shape(arr)}, expected ({n},)")
            elif not np.isfinite(arr).all():
                problems.append(f"{label} has non-finite values")
        if not problems and not (self.scale > 0).all():
            problems.append("scale must be > 0")
        if not (math.isfinite(self.clip) and self.clip > 0):
            problems.append(f"clip={self.clip!r} must be finite and > 0")
        if problems:
            raise OperationalError(f"normaliser: {'; '.join(problems)}; refit it or rebuild the "
                                   "bundle")

    @classmethod
    def fit(cls, features: np.ndarray, names: Sequence[str], rows: np.ndarray | slice,
            *, clip: float = DEFAULT_CLIP) -> Normalizer:
        """Fit on the training rows of a fold only.

        :param features: (T, F) raw features of the whole table (NaN allowed outside ``rows``,
            e.g. warm-up bars).
        :param names: the F feature names (the FeatureSpec order).
        :param rows: the training rows: ``Fold.train_indices()`` (or a slice).
        :param clip: bound of the normalised values.
        :return: the fitted normaliser.
        :raises OperationalError: shapes disagree, no rows, or a value in ``rows`` is NaN/inf
            (named by feature and row: drop warm-up rows or fix the feature).
        """
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise OperationalError(f"normaliser: features have shape {x.shape} but {len(names)} "
                                   "names were given; pass the (T, F) matrix of the spec")
        idx = (np.arange(x.shape[0])[rows] if isinstance(rows, slice)
               else np.asarray(rows, dtype=np.int64))
        if idx.size == 0:
            raise OperationalError("normaliser: no training rows to fit on (empty fold)")
        if idx.min() < 0 or idx.max() >= x.shape[0]:
            raise OperationalError(f"normaliser: training rows span {idx.min()}..{idx.max()} "
                                   f"outside the {x.shape[0]} rows of the features")
        where = first_non_finite(x, names, idx)
        if where is not None:
            raise OperationalError(f"normaliser: {where} (a training row); features must be "
                                   "finite after warm-up: start the fold after the spec's "
                                   "warm-up bars or fix the feature")
        train = x[idx].astype(np.float64)
        q25, med, q75 = np.percentile(train, [25.0, 50.0, 75.0], axis=0)
        scale = (q75 - q25) / IQR_TO_SIGMA
        std = train.std(axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        return cls(names=tuple(names), center=med, scale=scale, clip=float(clip))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Normalise one row (F,) or a matrix (T, F).

        :param features: raw features in :attr:`names` order.
        :return: float32 of the same shape, clipped; non-finite inputs come out NaN.
        :raises OperationalError: the last dimension is not F.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.shape[-1:] != (len(self.names),):
            raise OperationalError(f"normaliser: got {x.shape[-1:]} features, the bundle's spec "
                                   f"has {len(self.names)}; the feature spec and the normaliser "
                                   "must come from the same bundle")
        z = (x - self.center) / self.scale
        np.clip(z, -self.clip, self.clip, out=z)
        z[~np.isfinite(x)] = np.nan
        out: np.ndarray = z.astype(np.float32)
        return out

    def transform_into(self, row: np.ndarray, out: np.ndarray) -> None:
        """Normalise one finite row into ``out[:F]`` (float32): :meth:`transform`'s arithmetic,
        in place, for the live path (one compiled pass, ~0.5 us for 150 features against ~10 us
        for :meth:`transform`).

        :param row: (F,) raw features in :attr:`names` order.
        :param out: float32 buffer of at least F values (e.g. an observation row).
        :raises OperationalError: wrong length, or a NaN/inf feature (named).
        """
        x = np.asarray(row, dtype=np.float64)
        if x.shape != self.center.shape:
            raise OperationalError(f"normaliser: got {x.shape} features, the bundle's spec has "
                                   f"{len(self.names)}; the feature spec and the normaliser must "
                                   "come from the same bundle")
        from mia.features._normalize_kernel import normalise_into  # numba: the live path only

        bad = normalise_into(x, self.center, self.scale, float(self.clip), out)
        if bad >= 0:
            where = first_non_finite(x[None, :], self.names)
            raise OperationalError(f"normaliser: non-finite input, {where}; a live bar needs "
                                   "every feature")

    def to_dict(self) -> dict[str, Any]:
        """:return: JSON-safe statistics for the policy bundle (floats round-trip exactly)."""
        return {"format": FORMAT, "method": METHOD, "names": list(self.names),
                "center": [float(v) for v in self.center],
                "scale": [float(v) for v in self.scale], "clip": float(self.clip)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Rebuild a normaliser from :meth:`to_dict` output.

        :param data: the mapping read from the bundle.
        :return: the normaliser.
        :raises OperationalError: keys missing, unknown format or method, or bad values.
        """
        keys = {"format", "method", "names", "center", "scale", "clip"}
        if not isinstance(data, Mapping) or set(data) != keys:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise OperationalError(f"normaliser: bundle entry has keys {got}, expected "
                                   f"{sorted(keys)}; rebuild the bundle")
        if data["format"] != FORMAT or data["method"] != METHOD:
            raise OperationalError(f"normaliser: format {data['format']!r} / method "
                                   f"{data['method']!r} is not {FORMAT} / {METHOD!r}; this "
                                   "version of MIA cannot read it")
        try:
            return cls(names=tuple(str(n) for n in data["names"]),
                       center=np.asarray(data["center"], dtype=np.float64),
                       scale=np.asarray(data["scale"], dtype=np.float64),
                       clip=float(data["clip"]))
        except (TypeError, ValueError) as exc:
            raise OperationalError(f"normaliser: bad values in the bundle ({exc})") from None


def observation_names(names: Sequence[str]) -> tuple[str, ...]:
    """:param names: feature names. :return: the names of the observation's elements."""
    return (*names, POSITION_NAME)


def position_value(position: float, max_contracts: int) -> float:
    """The observation's position element.

    :param position: signed contracts held.
    :param max_contracts: position limit (> 0).
    :return: ``position / max_contracts`` in ``[-1, 1]``.
    :raises OperationalError: the position exceeds the limit.
    """
    if max_contracts <= 0 or abs(position) > max_contracts:
        raise OperationalError(f"position {position} is outside the limit +/-{max_contracts}")
    return position / max_contracts


def observation(features: np.ndarray, position: float, max_contracts: int) -> np.ndarray:
    """Build one observation: normalised features, then the position (layout above).

    :param features: (F,) normalised features (:meth:`Normalizer.transform` of one row).
    :param position: signed contracts held now.
    :param max_contracts: position limit.
    :return: (F + 1,) float32.
    :raises OperationalError: a feature is NaN/inf, or the position exceeds the limit.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise OperationalError(f"observation: features must be a finite (F,) row, got shape "
                               f"{x.shape} with {int((~np.isfinite(x)).sum())} non-finite values")
    out = np.empty(x.shape[0] + 1, dtype=np.float32)
    out[:POSITION_INDEX] = x
    out[POSITION_INDEX] = position_value(position, max_contracts)
    return out


def observation_matrix(features: np.ndarray) -> np.ndarray:
    """Observations of every row with the position slot zeroed, for envs that fill it in place.

    :param features: (T, F) normalised features.
    :return: (T, F + 1) float32, C-contiguous; row ``t`` is ``observation(features[t], 0, m)``.
    """
    x = np.asarray(features, dtype=np.float32)
    out = np.zeros((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    out[:, :POSITION_INDEX] = x
    return out

