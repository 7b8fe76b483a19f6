"""The ensemble's Bayesian vote: agents' outputs -> one target position, or flat.

numpy and two compiled QR-DQN kernels, vectorised over any leading shape: the weight fit and
the backtest call :func:`decide` on every bar x position level at once; the executor calls
:func:`decide_one`, the same arithmetic on Python floats, on one bar (held equal by a test).

**Votes.** Each agent gives a probability that the next move should be *long* rather than
*short*; undecided (0.5) is flat:

- a continuous agent (SAC, PPO, DDPG, PPO-Lagrangian) outputs a target fraction ``a`` in
  [-1, 1]: ``p = (1 + a) / 2`` (all-in long is certain, a flat target is undecided);
- QR-DQN outputs quantiles of the return of each action (short, flat, long): ``p`` is 1, 0.5
  or 0 for the action with the highest mean.

``P = sum_k w_k p_k`` with the fitted weights (:mod:`mia.ensemble.fit`; a posterior: non-negative,
summing to 1 over the agents that vote). The ensemble goes long when ``P`` reaches the
**confidence threshold** (params.yaml ``ensemble.confidence_threshold``, 0.65), short when
``1 - P`` does, else stays flat; its size is the weighted net conviction ``|2P - 1|`` (the
weighted mean action when the agents agree in sign), so a single agent in the vote trades as
it would alone, except inside the threshold's dead zone (``|a| < 2 x 0.65 - 1 = 0.3``).

**Risk modifiers** (switched on by the fit when they raise validation Sharpe):

- ``lagrangian_scale``: PPO-Lagrangian, trained under a CVaR constraint, scales the size by its
  own appetite on the chosen side, ``clip(sign(side) * a_lag, 0, 1)``: a veto when it points the
  other way or stays flat.
- ``quantile_confidence``: QR-DQN's return distribution scales the size by the share of the
  chosen side's quantiles above the flat action's median: its uncertainty (a wide spread
  straddling flat) halves a trade it calls a coin flip.

The result is a target *fraction* in [-1, 1]; the env and the backtest multiply it by
``env.max_contracts``, the live risk gate (:mod:`mia.risk`) reads it as a share of the size it
allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mia.ensemble._quantiles import best_action, best_actions, side_share, side_shares
from mia.errors import OperationalError

SIDES = ("short", "flat", "long")
CONTINUOUS = ("sac", "ppo", "ddpg", "ppo_lagrangian")
DISCRETE = ("qrdqn",)


@dataclass(frozen=True, kw_only=True)
class Ensemble:
    """A fitted ensemble: what the bundle stores under ``ensemble``.

    :param weights: agent -> vote weight (non-negative, summing to 1; absent = no vote).
    :param threshold: confidence needed to take a side, in [0, 1].
    :param lagrangian_scale: PPO-Lagrangian scales (and may veto) the size.
    :param quantile_confidence: QR-DQN's quantiles scale the size.
    :param fit: how the weights were found (prior, posterior, validation Sharpe …), for reports.
    """

    weights: dict[str, float]
    threshold: float
    lagrangian_scale: bool = False
    quantile_confidence: bool = False
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = self.weights
        bad = [k for k, v in w.items() if k not in CONTINUOUS + DISCRETE or not v >= 0.0]
        total = sum(w.values())
        if bad or not w or abs(total - 1.0) > 1e-9 or not 0.0 <= self.threshold <= 1.0:
            raise OperationalError(
                f"ensemble: weights {w} must be >= 0 over known agents and sum to 1 (got "
                f"{total:.6g}); threshold {self.threshold} must lie in [0, 1]; refit the ensemble"
            )

    def needs(self) -> tuple[str, ...]:
        """:return: the agents whose outputs the vote reads."""
        out = [k for k, v in self.weights.items() if v > 0.0]
        if self.lagrangian_scale and "ppo_lagrangian" not in out:
            out.append("ppo_lagrangian")
        if self.quantile_confidence and "qrdqn" not in out:
            out.append("qrdqn")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """:return: JSON-able form (the bundle's ``ensemble`` block)."""
        return {"weights": dict(self.weights), "threshold": self.threshold,
                "lagrangian_scale": self.lagrangian_scale,
                "quantile_confidence": self.quantile_confidence, "fit": self.fit}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Ensemble:
        """:param doc: :meth:`to_dict` output. :return: the ensemble.
        :raises OperationalError: keys missing or values out of range."""
        try:
            return cls(weights={str(k): float(v) for k, v in doc["weights"].items()},
                       threshold=float(doc["threshold"]),
                       lagrangian_scale=bool(doc["lagrangian_scale"]),
                       quantile_confidence=bool(doc["quantile_confidence"]),
                       fit=dict(doc.get("fit", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise OperationalError(f"ensemble: malformed block in the bundle ({exc!r}); "
                                   "rebuild the bundle with 'mia ensemble fit'") from None


def continuous_vote(action: np.ndarray) -> np.ndarray:
    """:param action: (...) target fractions in [-1, 1]. :return: (...) P(long) = (1 + a) / 2."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    out: np.ndarray = 0.5 * (1.0 + a)
    return out


def quantile_vote(quantiles: np.ndarray) -> np.ndarray:
    """:param quantiles: (..., n_quantiles, 3) QR-DQN quantiles per action.
    :return: (...) P(long): 0, 0.5 or 1 for the best-mean action short, flat or long."""
    q = np.asarray(quantiles)
    best = best_actions(q.reshape(-1, *q.shape[-2:])).reshape(q.shape[:-2])
    out: np.ndarray = 0.5 * best.astype(np.float64)
    return out


def quantile_share(quantiles: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Share of the chosen side's quantiles above the flat action's median.

    :param quantiles: (..., n_quantiles, 3). :param side: (...) 0 short, 1 flat, 2 long.
    :return: (...) in [0, 1] (1 for flat).
    """
    q = np.asarray(quantiles)
    sides = np.broadcast_to(np.asarray(side, dtype=np.int64), q.shape[:-2])
    share: np.ndarray = side_shares(q.reshape(-1, *q.shape[-2:]),
                                    np.ascontiguousarray(sides).reshape(-1)).reshape(q.shape[:-2])
    return share


def decide_one(ens: Ensemble, actions: Mapping[str, float],
               quantiles: np.ndarray | None = None) -> tuple[float, float]:
    """:func:`decide` for one bar in plain Python floats and the compiled QR-DQN kernels: the
    live path (~2 us; numpy's per-call cost on 1-element arrays would be ~30 us). Held equal
    to :func:`decide` on random inputs by tests/unit/ensemble/test_vote.py.

    :param actions: agent -> continuous action (target fraction) for the continuous agents.
    :param quantiles: (n_quantiles, 3) QR-DQN quantiles, when the ensemble reads QR-DQN.
    :return: (target fraction, confidence), as :func:`decide`.
    """
    p = 0.0  # P(long)
    for name, w in ens.weights.items():
        if w <= 0.0:
            continue
        if name in DISCRETE:
            if quantiles is None:
                raise OperationalError("ensemble: the vote needs QR-DQN's quantiles")
            p += w * (0.5 * best_action(quantiles))
            continue
        a = actions[name]
        a = -1.0 if a < -1.0 else (1.0 if a > 1.0 else a)
        p += w * (0.5 * (1.0 + a))
    long_side = p >= 1.0 - p
    conf = p if long_side else 1.0 - p
    if conf < ens.threshold:
        return 0.0, 0.0
    sign = 1.0 if long_side else -1.0
    size = abs(2.0 * p - 1.0)
    if ens.lagrangian_scale:
        lag = sign * actions["ppo_lagrangian"]
        size *= 0.0 if lag < 0.0 else (1.0 if lag > 1.0 else lag)
    if ens.quantile_confidence:
        if quantiles is None:
            raise OperationalError("ensemble: the vote needs QR-DQN's quantiles")
        side = 2 if sign > 0 else 0
        size *= side_share(quantiles, side)
    return sign * size, conf


def decide(ens: Ensemble, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's target fraction from the agents' outputs.

    :param ens: the fitted ensemble.
    :param outputs: agent -> (...) action for continuous agents, (..., n_quantiles, 3)
        quantiles for QR-DQN; every agent of :meth:`Ensemble.needs`.
    :return: (target fraction in [-1, 1], confidence P of the side taken (0 when flat)).
    :raises OperationalError: an agent the vote needs is missing.
    """
    missing = [k for k in ens.needs() if k not in outputs]
    if missing:
        raise OperationalError(f"ensemble: no output from {missing}; the bundle's policy must "
                               "run every agent the ensemble votes with")
    p = None  # P(long)
    for name, w in ens.weights.items():
        if w <= 0.0:
            continue
        v = quantile_vote(outputs[name]) if name in DISCRETE else continuous_vote(outputs[name])
        p = w * v if p is None else p + w * v
    if p is None:
        raise OperationalError("ensemble: no agent has a positive weight")
    long_side = p >= 1.0 - p
    conf = np.where(long_side, p, 1.0 - p)
    act = conf >= ens.threshold
    sign = np.where(act, np.where(long_side, 1.0, -1.0), 0.0)
    size = np.abs(2.0 * p - 1.0)
    if ens.lagrangian_scale:
        size = size * np.clip(sign * np.asarray(outputs["ppo_lagrangian"], np.float64), 0.0, 1.0)
    if ens.quantile_confidence:
        side = np.where(sign > 0, 2, np.where(sign < 0, 0, 1))
        size = size * quantile_share(outputs["qrdqn"], side)
    return sign * size, np.where(act, conf, 0.0)
