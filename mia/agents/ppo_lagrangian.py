"""PPO-Lagrangian with a CVaR constraint on the per-step loss.

Ray, Achiam & Amodei (2019), "Benchmarking Safe Exploration in Deep Reinforcement Learning":
PPO on the Lagrangian ``max_pi min_{lambda >= 0} J_R(pi) - lambda (J_C(pi) - d)``, with the
multiplier learned by dual ascent. The constrained quantity here is the CVaR at level ``alpha``
of the per-step cost ``c_t = info["cost"]`` (a loss as a percent of initial equity), in the form
of Rockafellar & Uryasev (2000), "Optimization of conditional value-at-risk":
``CVaR_a(c) = min_v v + E[(c - v)+] / (1 - a)``; as in Chow et al. (2017), "Risk-Constrained
Reinforcement Learning with Percentile Risk Criteria", its policy gradient at the minimiser
``v = VaR_a`` is the gradient of ``E[(c - v)+] / (1 - a)`` with ``v`` held fixed.

Per rollout:

1. collect ``c_t`` and a separate cost critic's ``V_c(s_t)`` beside SB3's rollout;
2. estimate ``VaR_a`` (the a-quantile of the rollout's step costs) and
   ``CVaR_a = VaR + mean((c - VaR)+) / (1 - a)``;
3. GAE on the shaped cost ``(c - VaR)+ / (1 - a)`` gives cost advantages ``A_c``;
4. dual ascent: ``lambda <- max(0, lambda + lambda_learning_rate * (CVaR - cvar_limit))``;
5. PPO epochs on ``-(L_R - lambda L_C) / (1 + lambda)``, ``L_R`` SB3's clipped surrogate of the
   (normalised) reward advantages and ``L_C`` the pessimistic clipped surrogate of the
   (centred) cost advantages, ``max(ratio A_c, clip(ratio) A_c)``; dividing by ``1 + lambda``
   keeps the step size bounded as lambda grows (Ray et al.'s implementation). Cost advantages
   are centred but not scaled: scaling would change the units lambda trades CVaR against.

Logs ``train/cvar``, ``train/var``, ``train/lambda``, ``train/constraint_violation`` (CVaR minus
the limit; > 0 means violated), ``train/cost_mean`` and ``train/cost_value_loss``.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from mia.agents._common import (
    check_config,
    check_device,
    check_seed,
    check_spaces,
    set_torch_threads,
)
from mia.agents._cost_buffer import CostRolloutBuffer
from mia.agents._policies import CostValuePolicy
from mia.agents.ppo import ppo_kwargs
from mia.backtest.metrics import var_cvar
from mia.config.agents import PPOLagrangianConfig
from mia.errors import ConfigError, OperationalError


class PPOLagrangian(PPO):
    """SB3 PPO with a Lagrange multiplier on the CVaR of the per-step cost (module docstring).

    :param cvar_alpha: CVaR level in (0, 1), e.g. 0.95: the mean of the worst 5 % of step costs.
    :param cvar_limit: the constraint ``CVaR <= cvar_limit``, in the cost's units.
    :param lambda_init: starting multiplier, >= 0.
    :param lambda_learning_rate: dual ascent step per rollout, > 0.
        Other parameters are SB3 ``PPO``'s; the policy must be a :class:`CostValuePolicy`.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": CostValuePolicy}
    policy: CostValuePolicy

    def __init__(self, *args: Any, cvar_alpha: float = 0.95, cvar_limit: float = 0.1,
                 lambda_init: float = 0.0, lambda_learning_rate: float = 0.05,
                 **kwargs: Any) -> None:
        problems = [msg for bad, msg in (
            (not 0 < cvar_alpha < 1, f"cvar_alpha: {cvar_alpha!r}; must lie in (0, 1) (CVaR "
                                     "divides by 1 - alpha)"),
            (not cvar_limit > 0, f"cvar_limit: {cvar_limit!r}; must be > 0"),
            (not lambda_init >= 0, f"lambda_init: {lambda_init!r}; must be >= 0"),
            (not lambda_learning_rate > 0, f"lambda_learning_rate: {lambda_learning_rate!r}; "
                                           "must be > 0"),
        ) if bad]
        if problems:
            raise ConfigError("agents.ppo_lagrangian." + "\nagents.ppo_lagrangian.".join(problems))
        buffer_class = kwargs.setdefault("rollout_buffer_class", CostRolloutBuffer)
        if not (isinstance(buffer_class, type) and issubclass(buffer_class, CostRolloutBuffer)):
            raise ConfigError(f"rollout_buffer_class: {buffer_class!r}; PPO-Lagrangian needs a "
                              "CostRolloutBuffer (it stores the costs)")
        # set before super().__init__, which runs _setup_model
        self.cvar_alpha, self.cvar_limit = float(cvar_alpha), float(cvar_limit)
        self.lagrange_multiplier = float(lambda_init)
        self.lambda_learning_rate = float(lambda_learning_rate)
        self.rollout_var, self.rollout_cvar = float("nan"), float("nan")
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.policy, CostValuePolicy):
            raise ConfigError(f"policy: {type(self.policy).__name__}; PPO-Lagrangian needs a "
                              "CostValuePolicy (it has the cost critic)")

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer", "policy.cost_optimizer"], []

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback,
                         rollout_buffer: CostRolloutBuffer,  # type: ignore[override]
                         n_rollout_steps: int) -> bool:
        """SB3's ``OnPolicyAlgorithm.collect_rollouts`` plus costs, cost values and the
        rollout's VaR/CVaR (steps marked ``# cost``).

        :raises OperationalError: if a step's info lacks a finite ``cost``.
        """
        if self._last_obs is None:
            raise OperationalError("no previous observation; call learn(), not collect_rollouts")
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low,
                                              self.action_space.high)
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            rollout_buffer.record_cost(_step_costs(infos))  # cost
            for idx, done in enumerate(dones):
                if (done and infos[idx].get("terminal_observation") is not None
                        and infos[idx].get("TimeLimit.truncated", False)):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                        terminal_cost = self.policy.predict_cost_values(terminal_obs)[0]  # type: ignore[arg-type]
                    rewards[idx] += self.gamma * terminal_value
                    rollout_buffer.bootstrap_cost(idx, self.gamma * float(terminal_cost))  # cost
            rollout_buffer.add(self._last_obs, actions, rewards,  # type: ignore[arg-type]
                               self._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
        with th.no_grad():
            last = obs_as_tensor(new_obs, self.device)  # type: ignore[arg-type]
            values = self.policy.predict_values(last)
            last_cost_values = self.policy.predict_cost_values(last)  # cost
            stored = rollout_buffer.observations.reshape(-1, *rollout_buffer.obs_shape)  # cost
            rollout_buffer.record_cost_values(self.policy.predict_cost_values(
                obs_as_tensor(stored, self.device)))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self.rollout_var, self.rollout_cvar = var_cvar(rollout_buffer.costs.ravel(),  # cost
                                                       self.cvar_alpha)
        rollout_buffer.compute_cost_returns_and_advantage(  # cost
            last_cost_values, dones, var=self.rollout_var, alpha=self.cvar_alpha)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def dual_ascent(self) -> float:
        """``lambda <- max(0, lambda + lambda_learning_rate * (CVaR - cvar_limit))`` with the
        last rollout's CVaR. :return: the new multiplier."""
        gap = self.rollout_cvar - self.cvar_limit
        self.lagrange_multiplier = max(0.0, self.lagrange_multiplier
                                       + self.lambda_learning_rate * gap)
        return self.lagrange_multiplier

    def train(self) -> None:
        """Dual ascent, then SB3's ``PPO.train`` with the Lagrangian policy loss and a cost
        critic step per minibatch (differences from SB3 marked ``# cost``)."""
        buffer = cast(CostRolloutBuffer, self.rollout_buffer)
        lam = self.dual_ascent()  # cost
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.policy.optimizer, self.policy.cost_optimizer])
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        # the reward side's parameters only: the cost critic has its own clip and step
        reward_params = [p for group in self.policy.optimizer.param_groups for p in group["params"]]
        entropy_losses, pg_losses, value_losses, cost_losses, clip_fractions = [], [], [], [], []
        approx_kl_divs: list[float] = []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for batch in buffer.minibatches(self.batch_size):
                data = batch.base
                actions = data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = data.actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(data.observations,
                                                                         actions)
                values = values.flatten()
                advantages = data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                cost_adv = batch.cost_advantages  # cost
                if len(cost_adv) > 1:
                    cost_adv = cost_adv - cost_adv.mean()
                ratio = th.exp(log_prob - data.old_log_prob)
                clipped = th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                reward_surrogate = th.min(advantages * ratio, advantages * clipped).mean()
                cost_surrogate = th.max(cost_adv * ratio, cost_adv * clipped).mean()  # cost
                policy_loss = -(reward_surrogate - lam * cost_surrogate) / (1.0 + lam)  # cost
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                if self.clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = data.old_values + th.clamp(values - data.old_values,
                                                             -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(data.returns, values_pred)
                value_losses.append(value_loss.item())
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                with th.no_grad():
                    log_ratio = log_prob - data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(float(approx_kl_div))
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: "  # noqa: T201
                              f"{approx_kl_div:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                th.nn.utils.clip_grad_norm_(reward_params, self.max_grad_norm)
                self.policy.optimizer.step()
                # cost: the cost critic regresses the shaped-cost GAE returns
                cost_pred = self.policy.predict_cost_values(data.observations).flatten()
                cost_loss = F.mse_loss(batch.cost_returns, cost_pred)
                cost_losses.append(cost_loss.item())
                self.policy.cost_optimizer.zero_grad()
                (self.vf_coef * cost_loss).backward()  # type: ignore[no-untyped-call]
                th.nn.utils.clip_grad_norm_(self.policy.cost_value_net.parameters(),
                                            self.max_grad_norm)
                self.policy.cost_optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
        log = self.logger.record
        log("train/entropy_loss", np.mean(entropy_losses))
        log("train/policy_gradient_loss", np.mean(pg_losses))
        log("train/value_loss", np.mean(value_losses))
        log("train/cost_value_loss", np.mean(cost_losses))
        log("train/approx_kl", np.mean(approx_kl_divs))
        log("train/clip_fraction", np.mean(clip_fractions))
        log("train/loss", loss.item())
        log("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            log("train/std", th.exp(self.policy.log_std).mean().item())
        log("train/n_updates", self._n_updates, exclude="tensorboard")
        log("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            log("train/clip_range_vf", clip_range_vf)
        log("train/var", self.rollout_var)
        log("train/cvar", self.rollout_cvar)
        log("train/lambda", lam)
        log("train/constraint_violation", self.rollout_cvar - self.cvar_limit)
        log("train/cost_mean", float(np.mean(buffer.costs)))


def _step_costs(infos: list[dict[str, Any]]) -> np.ndarray:
    try:
        costs = np.array([float(info["cost"]) for info in infos], dtype=np.float32)
    except KeyError:
        keys = sorted(next((i for i in infos if "cost" not in i), {}))
        raise OperationalError(
            "PPO-Lagrangian needs the per-step loss in info['cost'] (mia.envs provides it); "
            f"this env's step info has keys {keys}") from None
    if not np.all(np.isfinite(costs)):
        raise OperationalError(f"info['cost'] is not finite: {costs.tolist()}; fix the env's "
                               "cost signal")
    return costs


def build(cfg: PPOLagrangianConfig, env: GymEnv, *, seed: int, device: str = "cpu",
          verbose: int = 0) -> PPOLagrangian:
    """Build PPO-Lagrangian from ``params.yaml: agents.ppo_lagrangian``.

    :param cfg: PPO hyper-parameters plus ``cvar_alpha``, ``cvar_limit`` (in the env's cost
        units, percent of initial equity per step), ``lambda_init``, ``lambda_learning_rate``.
    :param env: a gymnasium env or VecEnv with a bounded ``Box`` action whose step info carries
        ``cost``.
    :param seed: seeds Python, numpy, torch and the env (SB3 ``seed=``).
    :param device: torch device; determinism is promised on ``cpu``.
    :param verbose: SB3 verbosity.
    :return: the untrained model; train it with ``model.learn(cfg.total_timesteps)``.
    :raises ConfigError: for a bad hyper-parameter (``cvar_alpha = 1`` included), seed, device or
        an env that does not fit.
    """
    check_config(cfg, PPOLagrangianConfig, "ppo_lagrangian")
    seed = check_seed(seed)
    check_device(device)
    check_spaces(env, "continuous", "ppo_lagrangian")
    kwargs = ppo_kwargs(cfg, env, "ppo_lagrangian")
    if not cfg.cvar_alpha < 1:
        raise ConfigError(f"agents.ppo_lagrangian.cvar_alpha: {cfg.cvar_alpha}; must be below 1 "
                          "(CVaR divides by 1 - alpha), e.g. 0.95")
    set_torch_threads()
    return PPOLagrangian(
        CostValuePolicy, env, cvar_alpha=cfg.cvar_alpha, cvar_limit=cfg.cvar_limit,
        lambda_init=cfg.lambda_init, lambda_learning_rate=cfg.lambda_learning_rate,
        seed=seed, device=device, verbose=verbose, **kwargs)
