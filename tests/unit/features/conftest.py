from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from mia.data.synthetic import generate_market


@pytest.fixture(scope="session")
def market() -> dict[str, pd.DataFrame]:
    """12 trading days of ES + MNQ with every group: longer than the longest warm-up + offset."""
    return generate_market(["ES", "MNQ"], date(2024, 1, 2), date(2024, 1, 18), seed=5).bars


@pytest.fixture(scope="session")
def regime(market) -> dict:
    """HMM parameters fitted on the first 8,000 ES bars (a training window)."""
    from mia.regime import fit_hmm, regime_observations

    obs = regime_observations(market["ES"]["close"].to_numpy()[:8000])
    return fit_hmm(obs, seed=0, n_iter=30).to_dict()
