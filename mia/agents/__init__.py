"""The five RL agents: one module per algorithm, each with ``build(cfg, env, *, seed, ...)``.

This package stays light: importing it does not import torch or SB3. Each builder's module is
imported only when that agent is built (:func:`builder`), so ``import mia.agents`` costs nothing
in the executor or the CLI's ``--help``.

==================  =====================================  ==========================
name                algorithm                              action space
==================  =====================================  ==========================
``sac``             SB3 SAC, separate actor/critic rates   continuous Box (position)
``ppo``             SB3 PPO                                continuous Box
``ddpg``            SB3 DDPG, separate rates, noise        continuous Box
``ppo_lagrangian``  PPO + CVaR constraint (Lagrangian)     continuous Box
``qrdqn``           sb3-contrib QR-DQN                     Discrete {short, flat, long}
==================  =====================================  ==========================

Torch runs ``$MIA_TORCH_THREADS`` intra-op threads (default 1, :mod:`mia.agents._common`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from mia.agents._common import ActionKind
from mia.errors import ConfigError

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


class AgentSpec(NamedTuple):
    """How to build one agent.

    :param name: the ``params.yaml: agents`` key.
    :param module: the module holding ``build``.
    :param action_kind: ``continuous`` (Box target position) or ``discrete`` (Discrete(3)).
    """

    name: str
    module: str
    action_kind: ActionKind


# same names and order as mia.config.AGENT_NAMES (tested)
AGENTS: Final[dict[str, AgentSpec]] = {
    spec.name: spec for spec in (
        AgentSpec(name="sac", module="mia.agents.sac", action_kind="continuous"),
        AgentSpec(name="ppo", module="mia.agents.ppo", action_kind="continuous"),
        AgentSpec(name="ddpg", module="mia.agents.ddpg", action_kind="continuous"),
        AgentSpec(name="ppo_lagrangian", module="mia.agents.ppo_lagrangian",
                  action_kind="continuous"),
        AgentSpec(name="qrdqn", module="mia.agents.qrdqn", action_kind="discrete"),
    )
}


def spec(name: str) -> AgentSpec:
    """:param name: an agent name. :return: its spec.
    :raises ConfigError: for an unknown name, listing the known ones."""
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
    return AGENTS[name]


def action_kind(name: str) -> ActionKind:
    """:param name: an agent name. :return: the action space its env must offer."""
    return spec(name).action_kind


def builder(name: str) -> Callable[..., BaseAlgorithm]:
    """:param name: an agent name. :return: its module's ``build`` (imports torch and SB3)."""
    build_fn: Callable[..., BaseAlgorithm] = importlib.import_module(spec(name).module).build
    return build_fn


def build(name: str, cfg: Any, env: Any, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> BaseAlgorithm:
    """Build one agent by name.

    :param name: an agent name (:data:`mia.config.AGENT_NAMES`).
    :param cfg: its config, ``params.agents.<name>``.
    :param env: a gymnasium env or SB3 VecEnv with the action space :func:`action_kind` names.
    :param seed: seed of Python, numpy, torch and the env.
    :param device: torch device.
    :param verbose: SB3 verbosity.
    :return: the untrained SB3 model.
    :raises ConfigError: for an unknown name, a bad config or an env that does not fit.
    """
    return builder(name)(cfg, env, seed=seed, device=device, verbose=verbose)


# the SB3 class each agent's build() returns, for loading a saved model (module, class)
_CLASSES: Final[dict[str, tuple[str, str]]] = {
    "sac": ("mia.agents.sac", "SplitRateSAC"),
    "ppo": ("stable_baselines3", "PPO"),
    "ddpg": ("mia.agents.ddpg", "SplitRateDDPG"),
    "ppo_lagrangian": ("mia.agents.ppo_lagrangian", "PPOLagrangian"),
    "qrdqn": ("sb3_contrib", "QRDQN"),
}


def load(name: str, path: Any, *, device: str = "cpu") -> BaseAlgorithm:
    """Load a model saved by ``model.save`` (training side: SB3's zip, which pickles).

    :param name: the agent name. :param path: the ``model.zip``.
    :param device: torch device.
    :raises OperationalError: the file is missing.
    """
    from pathlib import Path

    from mia.errors import OperationalError

    spec(name)
    if not Path(path).is_file():
        raise OperationalError(f"no saved {name} model at {path}; train it first ('mia train')")
    module, cls = _CLASSES[name]
    model: BaseAlgorithm = getattr(importlib.import_module(module), cls).load(path, device=device)
    return model


__all__ = ["AGENTS", "AgentSpec", "ActionKind", "action_kind", "build", "builder", "load", "spec"]
