"""A small walk-forward table built from synthetic bars, with CI-sized agents.

Three weeks of seeded ES bars, six features (among them ``bid_ask_imbalance``, the input the
planted signal drives), two folds of 8,000 train / 3,000 validation bars, the real env costs.
Agents keep their algorithms and every params.yaml key; only the widths (64, 64), the rollout and
gamma shrink so a fold trains in seconds: the planted signal pays off one bar ahead, so a short
horizon (gamma 0.5) is the honest setting, not a trick.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd

from mia.config import load_config
from mia.config.sections import Params
from mia.data.contracts import contract
from mia.data.synthetic import generate_market
from mia.features.batch import build_features
from mia.training.data import TrainingData
from mia.training.layout import plan

FEATURES = ("bid_ask_imbalance", "orderflow_imbalance", "ret_1", "ret_5", "rsi_14", "natr_14")
SMALL = {
    "sac": {"actor_arch": (64, 64), "critic_arch": (64, 64), "gamma": 0.5},
    "ddpg": {"actor_arch": (64, 64), "critic_arch": (64, 64), "gamma": 0.5},
    "ppo": {"policy_arch": (64, 64), "value_arch": (64, 64), "gamma": 0.5, "n_steps": 1024},
    "ppo_lagrangian": {"policy_arch": (64, 64), "value_arch": (64, 64), "gamma": 0.5,
                       "n_steps": 1024},
    "qrdqn": {"net_arch": (64, 64), "gamma": 0.5},
}


def small_params() -> Params:
    """params.yaml with CI-sized folds and agents (module docstring)."""
    p = load_config(None).params
    wf = dataclasses.replace(p.walk_forward, train_bars=8000, validation_bars=3000, folds=2,
                             holdout_bars=500)
    agents = p.agents
    for name, changes in SMALL.items():
        agents = dataclasses.replace(agents, **{name: dataclasses.replace(getattr(agents, name),
                                                                          **changes)})
    return dataclasses.replace(p, walk_forward=wf, agents=agents)


def synthetic_table(params: Params, *, planted_alpha: float = 0.0, random_walk: bool = False,
                    seed: int = 11) -> TrainingData:
    """:return: the walk-forward table of three weeks of synthetic ES bars."""
    bars = generate_market(["ES"], date(2024, 1, 2), date(2024, 1, 19), seed=seed,
                           planted_alpha=planted_alpha, random_walk=random_walk).bars["ES"]
    ff = build_features(bars, names=list(FEATURES))
    return TrainingData(symbol="ES", features=ff.matrix, spec=ff.spec,
                        open=bars["open"].to_numpy(), close=bars["close"].to_numpy(),
                        spread=bars["bid_ask_spread"].to_numpy(), contract=contract("ES"),
                        layout=plan(params.walk_forward, len(bars), ff.spec.warmup),
                        data_hash=f"synthetic-{seed}-{planted_alpha}-{random_walk}",
                        ts=pd.DatetimeIndex(bars["ts"]).asi8.copy(),
                        high=bars["high"].to_numpy(np.float64),
                        low=bars["low"].to_numpy(np.float64))
