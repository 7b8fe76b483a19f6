"""Market regimes (trend / range / defensive) from a Gaussian HMM, filtered without look-ahead.

:mod:`mia.regime.filter` holds what the live executor runs (observations, parameters, the
forward filter; numpy + numba only). :mod:`mia.regime.hmm` fits and labels the HMM offline and
imports hmmlearn only inside :func:`fit_hmm`. See docs/regime.md.
"""

from mia.regime.filter import (
    FILTER_WARMUP,
    OBS_DIM,
    OBS_STATE_SIZE,
    OBS_WARMUP,
    HMMParams,
    filter_init,
    filter_step,
    forward_filter,
    observation_step,
    regime_observations,
)
from mia.regime.hmm import fit_hmm, label_states, stationary_distribution

__all__ = [
    "FILTER_WARMUP",
    "OBS_DIM",
    "OBS_STATE_SIZE",
    "OBS_WARMUP",
    "HMMParams",
    "filter_init",
    "filter_step",
    "fit_hmm",
    "forward_filter",
    "label_states",
    "observation_step",
    "regime_observations",
    "stationary_distribution",
]
