"""Selection labels: forward log returns, strictly after the bar they are attached to."""

from __future__ import annotations

import numpy as np

from mia.errors import ConfigError, DataValidationError


def forward_log_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """Forward log return over ``horizon`` bars: ``y[t] = ln(close[t + horizon] / close[t])``.

    ``y[t]`` reads only ``close[t]`` and ``close[t + horizon]``: nothing before ``t``, and the
    return itself is realised strictly after bar ``t`` closes, so features known at ``t``
    never overlap it. The last ``horizon`` rows have no future close and are NaN (selection
    drops them); a NaN close propagates to the labels that read it. A walk-forward purge of at
    least ``horizon`` rows keeps train labels out of validation rows
    (:mod:`mia.training.splits`).

    :param close: bar closes, oldest first, 1-D, positive (NaN allowed).
    :param horizon: bars ahead, >= 1.
    :return: float64 array of ``len(close)``.
    :raises ConfigError: ``horizon`` is not a positive integer.
    :raises DataValidationError: ``close`` is not 1-D or holds a non-positive or infinite value.
    """
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"forward_log_return: horizon={horizon!r} must be a positive integer "
                          "(bars ahead); fix the label horizon in params.yaml")
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise DataValidationError(f"forward_log_return: close must be 1-D, got shape {c.shape}; "
                                  "pass one symbol's close column")
    bad = np.isinf(c) | (c <= 0)  # NaN compares False: it propagates instead
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"forward_log_return: close[{i}]={float(c[i])!r} is not a "
                                  "positive finite price; reject or repair the bars before "
                                  "labelling")
    out = np.full(c.shape, np.nan)
    if len(c) > horizon:
        logc = np.log(c)
        out[:-horizon] = logc[horizon:] - logc[:-horizon]
    return out
