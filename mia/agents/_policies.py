"""SB3 policies whose actor and critic use different activations, as ``params.yaml`` asks.

SB3's ``ActorCriticPolicy`` (PPO) and ``TD3Policy`` (DDPG) take one ``activation_fn`` for both
networks; ``params.yaml`` gives PPO ``policy_activation: tanh`` / ``value_activation: relu`` and
DDPG ``actor_activation`` / ``critic_activation``. These subclasses change only that: the network
layout, initialisation and optimiser are SB3's.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, MlpExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.td3.policies import TD3Policy
from torch import nn


def mlp(in_dim: int, arch: list[int], act: type[nn.Module]) -> nn.Sequential:
    """:return: ``Linear -> act`` per width in ``arch`` (an empty ``arch`` is the identity)."""
    layers: list[nn.Module] = []
    for width in arch:
        layers += [nn.Linear(in_dim, width), act()]
        in_dim = width
    return nn.Sequential(*layers)


class SplitActivationPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` with its own activation for the value network.

    :param value_activation_fn: activation of the value network; ``None`` = ``activation_fn``
        (SB3's behaviour). Other parameters are ``ActorCriticPolicy``'s.
    """

    def __init__(self, *args: Any, value_activation_fn: type[nn.Module] | None = None,
                 **kwargs: Any) -> None:
        # set before super().__init__, which builds the networks
        self.value_activation_fn = value_activation_fn
        super().__init__(*args, **kwargs)

    def value_arch(self) -> list[int]:
        """:return: the value network's widths (``net_arch["vf"]``, or the shared list)."""
        arch = self.net_arch
        return list(arch.get("vf", [])) if isinstance(arch, dict) else list(arch)

    def _build_mlp_extractor(self) -> None:
        super()._build_mlp_extractor()
        if self.value_activation_fn is not None:
            # MlpExtractor.forward_critic runs `value_net`; rebuild it with its own activation
            # (same widths, so latent_dim_vf is unchanged). SB3's ortho init runs afterwards.
            extractor: MlpExtractor = self.mlp_extractor
            extractor.value_net = mlp(self.features_dim, self.value_arch(),
                                      self.value_activation_fn).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["value_activation_fn"] = self.value_activation_fn
        return data


class CostValuePolicy(SplitActivationPolicy):
    """:class:`SplitActivationPolicy` plus a cost value network ``V_c(s)`` for PPO-Lagrangian.

    The cost critic has the value network's widths and activation and its own Adam optimiser
    (``cost_optimizer``): it never shares parameters or gradient clipping with the reward side,
    so with a zero Lagrange multiplier the policy trains exactly as plain PPO (tested).
    """

    cost_value_net: nn.Sequential
    cost_optimizer: th.optim.Optimizer

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        # Initialise from a forked generator so the reward side later draws exactly the random
        # numbers plain PPO would (the lambda = 0 equivalence above).
        with th.random.fork_rng(devices=[]):
            th.manual_seed((th.initial_seed() + 1) % 2**63)
            arch = self.value_arch()
            body = mlp(self.features_dim, arch, self.value_activation_fn or self.activation_fn)
            head = nn.Linear(arch[-1] if arch else self.features_dim, 1)
            if self.ortho_init:  # SB3's gains for the value side
                body.apply(partial(self.init_weights, gain=np.sqrt(2)))
                head.apply(partial(self.init_weights, gain=1.0))
        self.cost_value_net = nn.Sequential(body, head).to(self.device)
        self.cost_optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.cost_value_net.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def predict_cost_values(self, obs: PyTorchObs) -> th.Tensor:
        """:param obs: observations (a batch). :return: (batch, 1) cost values; gradients reach
        the cost network only (features are detached from any shared extractor)."""
        features = cast(th.Tensor, self.extract_features(obs, self.vf_features_extractor))
        values: th.Tensor = self.cost_value_net(features.detach())
        return values


class SplitActivationTD3Policy(TD3Policy):
    """``TD3Policy`` (used by DDPG) with its own activation for the critic.

    :param critic_activation_fn: activation of the Q-networks; ``None`` = ``activation_fn``.
        Other parameters are ``TD3Policy``'s.
    """

    def __init__(self, *args: Any, critic_activation_fn: type[nn.Module] | None = None,
                 **kwargs: Any) -> None:
        self.critic_activation_fn = critic_activation_fn
        super().__init__(*args, **kwargs)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None
                    ) -> ContinuousCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        if self.critic_activation_fn is not None:
            kwargs["activation_fn"] = self.critic_activation_fn
        return ContinuousCritic(**kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["critic_activation_fn"] = self.critic_activation_fn
        return data
