"""Export each agent's deterministic policy to ONNX, and fuse the agents into one graph.

Training side only (torch, SB3, onnx); the bundle reader runs the result with ONNX Runtime.
Each exported graph computes exactly what SB3's ``model.predict(obs, deterministic=True)``
returns (a test holds them within 1e-5 on 10,000 observations):

==================  ==========================================================================
PPO, PPO-Lagrangian  the Gaussian policy's mean ``action_net(policy_net(obs))``, then the clip to
                     the action Box SB3's ``predict`` applies (the mode of a Gaussian is its mean)
SAC                  ``tanh`` of the actor mean (the mode of the squashed Gaussian), unscaled to
                     the Box as SB3 does (``low + (a + 1) / 2 * (high - low)``)
DDPG                 the actor (it ends in ``tanh``), unscaled the same way
QR-DQN               the quantiles ``(B, n_quantiles, 3)`` and the greedy action
                     ``argmax_a mean_q quantiles`` (first index on ties, as torch and ONNX do)
==================  ==========================================================================

Graphs have one input ``obs`` (B, F + 1) float32 with a dynamic batch axis; outputs ``action``
((B, 1) float32, or (B,) int64 for QR-DQN) and ``quantiles``. The TorchScript exporter
(``dynamo=False``) is used: the torch.export-based one needs onnxscript, which MIA does not
install, and gains nothing on these static MLPs.

:func:`fuse` merges the agents' graphs into one model (node, edge and initializer names prefixed
with ``<agent>/``, the input ``obs`` shared), so one ``InferenceSession.run`` serves every agent.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, NamedTuple, cast

import onnx
import torch as th
from gymnasium import spaces
from onnx import compose, helper
from sb3_contrib import QRDQN
from stable_baselines3 import DDPG, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from mia.agents import action_kind
from mia.agents.ppo_lagrangian import PPOLagrangian
from mia.errors import OperationalError
from mia.registry.bundle import ACTION, OBS_INPUT, QUANTILES, ActionKind, AgentGraph

OPSET: Final[int] = 17
# The class each agent must be; "ppo" must not be a PPO-Lagrangian (a subclass of PPO).
_CLASSES: Final[dict[str, tuple[type[BaseAlgorithm], str]]] = {
    "sac": (SAC, "SAC"), "ppo": (PPO, "PPO"), "ddpg": (DDPG, "DDPG"),
    "ppo_lagrangian": (PPOLagrangian, "PPO-Lagrangian"), "qrdqn": (QRDQN, "QR-DQN")}


class ExportedPolicy(NamedTuple):
    """What :func:`mia.registry.bundle_writer.write_bundle` takes: each agent and the fused graph.

    :param agents: the agents' graphs, in the order given.
    :param graph: the fused ONNX model (serialised).
    """

    agents: tuple[AgentGraph, ...]
    graph: bytes


class _Unscale(nn.Module):
    """SB3's ``BasePolicy.unscale_action``: [-1, 1] -> [low, high], same float32 operations."""

    low: th.Tensor
    high: th.Tensor

    def __init__(self, space: spaces.Box) -> None:
        super().__init__()
        self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    def forward(self, scaled: th.Tensor) -> th.Tensor:
        return self.low + 0.5 * (scaled + 1.0) * (self.high - self.low)


class _GaussianMean(nn.Module):
    """PPO family: the mean of ``get_distribution(obs)``, clipped like ``predict``."""

    low: th.Tensor
    high: th.Tensor

    def __init__(self, model: PPO, space: spaces.Box) -> None:
        super().__init__()
        self.policy = model.policy
        self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        p = self.policy
        features = cast(th.Tensor, p.extract_features(obs, p.pi_features_extractor))
        mean = p.action_net(p.mlp_extractor.forward_actor(features))
        return th.minimum(th.maximum(mean, self.low), self.high)  # np.clip(a, low, high)


class _SquashedMean(nn.Module):
    """SAC: ``tanh(mu(latent_pi(features)))``, the deterministic ``actor(obs)``, unscaled."""

    def __init__(self, model: SAC, space: spaces.Box) -> None:
        super().__init__()
        self.actor = model.policy.actor
        self.unscale = _Unscale(space)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        a = self.actor
        features = a.extract_features(obs, a.features_extractor)
        out: th.Tensor = self.unscale(th.tanh(a.mu(a.latent_pi(features))))
        return out


class _Actor(nn.Module):
    """DDPG: the deterministic actor (its last layer is ``tanh``), unscaled."""

    def __init__(self, model: DDPG, space: spaces.Box) -> None:
        super().__init__()
        self.actor = model.policy.actor
        self.unscale = _Unscale(space)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        out: th.Tensor = self.unscale(self.actor(obs))
        return out


class _QuantileGreedy(nn.Module):
    """QR-DQN: quantiles ``(B, N, A)`` once, and the greedy action on their mean."""

    def __init__(self, model: QRDQN) -> None:
        super().__init__()
        self.net = model.policy.quantile_net

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        quantiles = self.net(obs)
        return quantiles.mean(dim=1).argmax(dim=1), quantiles


def _wrap(name: str, model: BaseAlgorithm) -> tuple[nn.Module, str, int | None]:
    cls, algorithm = _CLASSES[name]
    if not isinstance(model, cls) or name == "ppo" and isinstance(model, PPOLagrangian):
        raise OperationalError(f"export: agent {name!r} must be a {cls.__name__}, got "
                               f"{type(model).__name__}")
    obs, act = model.observation_space, model.action_space
    if not isinstance(obs, spaces.Box) or len(obs.shape) != 1:
        raise OperationalError(f"export: {name}: observation space {obs!r} is not a flat Box")
    if getattr(model, "use_sde", False):
        raise OperationalError(f"export: {name}: gSDE policies are not supported (MIA's "
                               "builders never enable use_sde)")
    if isinstance(model, QRDQN):
        if not (isinstance(act, spaces.Discrete) and act.n == 3):
            raise OperationalError(f"export: {name}: action space {act!r} is not Discrete(3) "
                                   "{short, flat, long}")
        return _QuantileGreedy(model), algorithm, int(model.policy.n_quantiles)
    if not (isinstance(act, spaces.Box) and act.shape == (1,)
            and float(act.low[0]) == -1.0 and float(act.high[0]) == 1.0):
        raise OperationalError(f"export: {name}: action space {act!r} is not Box(-1, 1, (1,)), "
                               "the bundle's target fraction of max_contracts")
    wrappers: dict[str, type[nn.Module]] = {"sac": _SquashedMean, "ddpg": _Actor}
    return wrappers.get(name, _GaussianMean)(model, act), algorithm, None


def export_agent(name: str, model: BaseAlgorithm, *, opset: int = OPSET) -> AgentGraph:
    """Export one agent's deterministic policy.

    :param name: the agent (``sac``, ``ppo``, ``ddpg``, ``ppo_lagrangian``, ``qrdqn``).
    :param model: its trained (or untrained) SB3 model of the matching class.
    :param opset: ONNX opset, >= 17.
    :return: the graph, checked by ``onnx.checker`` (full check, shapes inferred).
    :raises ConfigError: unknown agent name.
    :raises OperationalError: wrong class or spaces, a gSDE policy, an opset below 17.
    """
    kind: ActionKind = action_kind(name)
    if opset < OPSET:
        raise OperationalError(f"export: opset {opset} < {OPSET}; use {OPSET} or later")
    module, algorithm, n_quantiles = _wrap(name, model)
    model.policy.set_training_mode(False)  # what predict() does: eval mode
    module.eval()
    size = int(model.observation_space.shape[0])  # type: ignore[index]
    outputs = [ACTION] if kind == "continuous" else [ACTION, QUANTILES]
    with tempfile.TemporaryDirectory() as tmp, th.no_grad(), warnings.catch_warnings():
        # the legacy exporter warns that it is legacy; it is chosen on purpose (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        file = Path(tmp) / f"{name}.onnx"
        th.onnx.export(module, (th.zeros((1, size), dtype=th.float32, device=model.device),),
                       file, input_names=[OBS_INPUT], output_names=outputs,
                       dynamic_axes={n: {0: "batch"} for n in (OBS_INPUT, *outputs)},
                       opset_version=opset, do_constant_folding=True, dynamo=False)
        proto = onnx.load_model(file)
    proto.producer_name, proto.doc_string = "mia", f"{algorithm} deterministic policy ({name})"
    helper.set_model_props(proto, {"mia.agent": name, "mia.algorithm": algorithm})
    onnx.checker.check_model(proto, full_check=True)
    return AgentGraph(name=name, algorithm=algorithm, kind=kind, obs_size=size,
                      n_quantiles=n_quantiles, onnx=bytes(proto.SerializeToString()))


def fuse(agents: Sequence[AgentGraph]) -> bytes:
    """Merge the agents' graphs into one model with the shared input ``obs``.

    :param agents: exported agents with the same observation size and opset.
    :return: the fused model; its outputs are ``<agent>/action`` (and ``<agent>/quantiles``), in
        the order given.
    :raises OperationalError: no agent, a repeated name, different observation sizes or opsets.
    """
    names = [a.name for a in agents]
    if not agents or len(set(names)) != len(names):
        raise OperationalError(f"fuse: need distinct agents, got {names}")
    models = [onnx.load_from_string(a.onnx) for a in agents]
    if len({a.obs_size for a in agents}) != 1 or len(
            {tuple((o.domain, o.version) for o in m.opset_import) for m in models}) != 1:
        raise OperationalError("fuse: agents differ in observation size or opset; export them "
                               "from one env with one opset")
    graphs = [compose.add_prefix(m, f"{a.name}/", rename_inputs=False).graph
              for a, m in zip(agents, models, strict=True)]
    graph = helper.make_graph(
        nodes=[n for g in graphs for n in g.node], name="mia_policy",
        inputs=[graphs[0].input[0]], outputs=[o for g in graphs for o in g.output],
        initializer=[i for g in graphs for i in g.initializer],
        doc_string="MIA policy: every agent's deterministic action from one observation")
    fused = helper.make_model(graph, opset_imports=models[0].opset_import,
                              ir_version=models[0].ir_version, producer_name="mia")
    helper.set_model_props(fused, {"mia.agents": ",".join(names)})
    onnx.checker.check_model(fused, full_check=True)
    return bytes(fused.SerializeToString())


def export_policy(models: Mapping[str, BaseAlgorithm], *, opset: int = OPSET) -> ExportedPolicy:
    """Export every agent and fuse them.

    :param models: agent name -> SB3 model (the bundle keeps this order).
    :param opset: ONNX opset, >= 17.
    :return: the agents' graphs and the fused graph.
    """
    agents = tuple(export_agent(name, model, opset=opset) for name, model in models.items())
    return ExportedPolicy(agents=agents, graph=fuse(agents))

