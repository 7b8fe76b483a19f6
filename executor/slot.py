"""One loaded bundle, live: its feature states, its ONNX policy and its vote (a model slot).

A slot advances its online features on every bar (so a canary's state is warm whether or not it
trades) and, when asked, turns the latest features and the book's position into a target
fraction with the same code the backtest scored: :class:`mia.registry.policy.Policy` and
:func:`mia.ensemble.vote.decide_one`. The risk gate reads the bundle's ``risk_spec`` features,
computed beside the model's by the same kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from mia.ensemble.vote import Ensemble, decide_one
from mia.errors import OperationalError
from mia.features.online import OnlineFeatures
from mia.registry.bundle import Bundle, read_bundle
from mia.registry.policy import Policy
from mia.risk import FeatureTap, RiskFeatures


class Decision(NamedTuple):
    """A slot's decision on one bar.

    :param fraction: target fraction in [-1, 1] (0 = flat), before risk.
    :param confidence: the vote's confidence in the side taken (0 when flat).
    :param actions: each agent's raw action (continuous agents), for the journal.
    """

    fraction: float
    confidence: float
    actions: dict[str, float]


class ModelSlot:
    """A bundle ready to act: load with :meth:`load`, :meth:`warm`, then :meth:`update` every bar.

    :param bundle: a verified bundle.
    :param version: the registry version (or a label for a local bundle).
    """

    def __init__(self, bundle: Bundle, version: str) -> None:
        self.bundle = bundle
        self.version = version
        self.policy = Policy(bundle)
        self.ensemble = Ensemble.from_dict(bundle.ensemble)
        self.features = OnlineFeatures(bundle.spec)
        self.risk = OnlineFeatures(bundle.risk_spec) if bundle.risk_spec.names else None
        self.tap = FeatureTap(bundle.risk_spec.names)
        self._raw = np.full(len(bundle.spec.names), np.nan)
        self._risk_raw = np.full(len(bundle.risk_spec.names), np.nan)
        self._risk_view: RiskFeatures | None = None  # the latest bar's, read once (lazily)
        self._warmup = max(self.features.spec.warmup,
                           self.risk.spec.warmup if self.risk is not None else 0)
        self._quantiles = "qrdqn" in {a.name for a in bundle.agents}

    @classmethod
    def load(cls, path: str | Path, version: str) -> ModelSlot:
        """:param path: the bundle directory (verified: format, hashes, buildable spec).
        :raises OperationalError: a broken or tampered bundle (the running model is kept)."""
        return cls(read_bundle(path), version)

    @property
    def warmup(self) -> int:
        """Bars the feature states need before every feature is ready."""
        return self._warmup

    @property
    def ready(self) -> bool:
        """Every model and risk feature is past its warm-up."""
        return self.features.ready and (self.risk is None or self.risk.ready)

    def update(self, row: np.ndarray) -> None:
        """Advance the feature states by one accepted bar (every bar, traded or not).

        :param row: the bar's input row (executor.rows.input_row).
        """
        self._raw = self.features.update(row)
        if self.risk is not None:
            self._risk_raw = self.risk.update(row)
        self._risk_view = None

    def warm(self, rows: np.ndarray) -> None:
        """Run recent history through the feature states (the same kernels, bar by bar).

        :param rows: (T, N_INPUTS) input rows, oldest first; at least :attr:`warmup` + 1.
        """
        if len(rows) <= self.warmup:
            raise OperationalError(f"model v{self.version}: {len(rows)} bars of history, its "
                                   f"features need {self.warmup + 1} to warm up; extend the "
                                   "warm-up window or the data store")
        for row in rows:
            self.update(np.ascontiguousarray(row))

    def risk_features(self) -> RiskFeatures:
        """:return: the risk gate's view of the latest bar (NaN where a feature is absent);
        the stops, the marks and the decision of a bar read the same one."""
        view = self._risk_view
        if view is None:
            view = self._risk_view = self.tap.read(self._risk_raw)
        return view

    def decide(self, position: int) -> Decision:
        """The slot's target for the latest bar, given its book's position.

        :param position: contracts the slot's book holds (within the bundle's limit).
        :raises OperationalError: the features are not warm yet, or one is not finite (a bad
            bar got through).
        """
        if not self.ready:
            seen = self.features.bars_seen
            raise OperationalError(f"model v{self.version}: features not warm ({seen} bars seen, "
                                   f"{self.warmup + 1} needed); no decision before the warm-up "
                                   "ends")
        out = self.policy.act(self._raw, position)
        actions = {k: v.fraction for k, v in out.items() if v.quantiles is None}
        q = out["qrdqn"].quantiles if self._quantiles else None
        fraction, confidence = decide_one(self.ensemble, actions, q)
        return Decision(fraction=fraction, confidence=confidence, actions=actions)

    def raw_features(self) -> np.ndarray:
        """:return: the latest raw model features (the live feature log)."""
        return self._raw
