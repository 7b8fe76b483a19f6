"""Hyper-parameters of the five agents (``params.yaml: agents``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mia.config._checks import NON_NEGATIVE, POSITIVE, UNIT, Activation, _Checked


@dataclass(frozen=True, kw_only=True, slots=True)
class SACConfig(_Checked):
    """Soft Actor-Critic (Haarnoja et al., 2018) hyper-parameters."""

    actor_arch: tuple[int, ...] = field(metadata=POSITIVE)
    critic_arch: tuple[int, ...] = field(metadata=POSITIVE)
    activation: Activation
    actor_learning_rate: float = field(metadata=POSITIVE)
    critic_learning_rate: float = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    gamma: float = field(metadata=UNIT)
    buffer_size: int = field(metadata=POSITIVE)
    ent_coef: float | Literal["auto"] = field(metadata=POSITIVE)
    tau: float = field(metadata=UNIT)
    total_timesteps: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class PPOConfig(_Checked):
    """Proximal Policy Optimization (Schulman et al., 2017) hyper-parameters."""

    policy_arch: tuple[int, ...] = field(metadata=POSITIVE)
    policy_activation: Activation
    value_arch: tuple[int, ...] = field(metadata=POSITIVE)
    value_activation: Activation
    learning_rate: float = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    clip_range: float = field(metadata=UNIT)
    n_epochs: int = field(metadata=POSITIVE)
    gamma: float = field(metadata=UNIT)
    n_steps: int = field(metadata=POSITIVE)
    gae_lambda: float = field(metadata=UNIT)
    total_timesteps: int = field(metadata=POSITIVE)

    def _cross_checks(self) -> list[str]:
        if self.batch_size > self.n_steps:
            return [f"batch_size: {self.batch_size} exceeds n_steps {self.n_steps}; "
                    "a minibatch cannot be larger than the rollout"]
        return []


@dataclass(frozen=True, kw_only=True, slots=True)
class PPOLagrangianConfig(PPOConfig):
    """PPO with a CVaR cost constraint enforced by a Lagrange multiplier.

    Ray, Achiam & Amodei (2019), "Benchmarking Safe Exploration in Deep Reinforcement Learning".
    """

    cvar_alpha: float = field(metadata=UNIT)
    cvar_limit: float = field(metadata=POSITIVE)
    lambda_init: float = field(metadata=NON_NEGATIVE)
    lambda_learning_rate: float = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class DDPGConfig(_Checked):
    """Deep Deterministic Policy Gradient (Lillicrap et al., 2015) hyper-parameters."""

    actor_arch: tuple[int, ...] = field(metadata=POSITIVE)
    actor_activation: Activation
    critic_arch: tuple[int, ...] = field(metadata=POSITIVE)
    critic_activation: Activation
    actor_learning_rate: float = field(metadata=POSITIVE)
    critic_learning_rate: float = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    gamma: float = field(metadata=UNIT)
    tau: float = field(metadata=UNIT)
    buffer_size: int = field(metadata=POSITIVE)
    action_noise: float = field(metadata=NON_NEGATIVE)
    total_timesteps: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class QRDQNConfig(_Checked):
    """Quantile-Regression DQN (Dabney et al., 2017) hyper-parameters."""

    net_arch: tuple[int, ...] = field(metadata=POSITIVE)
    activation: Activation
    learning_rate: float = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    n_quantiles: int = field(metadata=POSITIVE)
    gamma: float = field(metadata=UNIT)
    buffer_size: int = field(metadata=POSITIVE)
    exploration_fraction: float = field(metadata=UNIT)
    total_timesteps: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentsConfig(_Checked):
    """One config per agent; field names are :data:`AGENT_NAMES`."""

    sac: SACConfig
    ppo: PPOConfig
    ddpg: DDPGConfig
    ppo_lagrangian: PPOLagrangianConfig
    qrdqn: QRDQNConfig

