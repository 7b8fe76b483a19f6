"""Checks and settings every agent builder shares: spaces, seeds, devices, threads, buffers.

Everything here runs before a model is constructed, so a bad hyper-parameter or an env that does
not fit the algorithm fails in milliseconds, not after minutes of training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from mia.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

ActionKind = Literal["continuous", "discrete"]

TORCH_THREADS_ENV: Final[str] = "MIA_TORCH_THREADS"
# One intra-op thread per training process: the walk-forward maps (agent, fold) tasks over
# workers, one per core, and MLPs of a few hundred units gain little from a second thread while
# two processes with two threads each on 2 cores thrash. Override with MIA_TORCH_THREADS.
DEFAULT_TORCH_THREADS: Final[int] = 1

# SB3's default for SAC, DDPG and QR-DQN: transitions collected before the first gradient step.
LEARNING_STARTS: Final[int] = 100


def torch_threads(env: Mapping[str, str] | None = None) -> int:
    """The torch intra-op thread count to use: ``$MIA_TORCH_THREADS``, else the default (1).

    :param env: the environment; default :data:`os.environ`.
    :return: a positive thread count.
    :raises ConfigError: if the variable is set but is not a positive integer.
    """
    raw = (os.environ if env is None else env).get(TORCH_THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_TORCH_THREADS
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{TORCH_THREADS_ENV}={raw!r}: expected a positive integer thread "
                          f"count; unset it for the default ({DEFAULT_TORCH_THREADS})")
    return n


def set_torch_threads(env: Mapping[str, str] | None = None) -> int:
    """Set torch's intra-op thread count explicitly (see :func:`torch_threads`).

    :param env: the environment; default :data:`os.environ`.
    :return: the thread count set.
    """
    import torch

    n = torch_threads(env)
    torch.set_num_threads(n)
    return n


def activation(name: str, key: str) -> type[nn.Module]:
    """Map a ``params.yaml`` activation name to its torch module class.

    :param name: ``relu`` or ``tanh``.
    :param key: the config key, named in the error.
    :return: ``torch.nn.ReLU`` or ``torch.nn.Tanh``.
    :raises ConfigError: for any other name.
    """
    from torch import nn

    classes: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
    if name not in classes:
        raise ConfigError(f"{key}: {name!r} is not an activation; use one of {', '.join(classes)}")
    return classes[name]


def check_config(cfg: object, expected: type, agent: str) -> None:
    """:raises ConfigError: if ``cfg`` is not the agent's config class."""
    if type(cfg) is not expected:
        raise ConfigError(f"agents.{agent}: build needs a {expected.__name__} "
                          f"(params.agents.{agent}), got {type(cfg).__name__}")


def check_seed(seed: object) -> int:
    """:return: ``seed``. :raises ConfigError: unless an int in [0, 2**32) (numpy's range)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed: {seed!r} is not usable; pass an int in [0, 2**32)")
    return int(seed)


def check_device(device: str) -> str:
    """:return: ``device`` (``auto``, ``cpu``, ``cuda[:n]``...).
    :raises ConfigError: if torch cannot use it here.

    SB3 silently falls back to the CPU when CUDA is missing; a run asked to use a GPU should say
    it cannot instead of running ten times slower.
    """
    import torch

    if device == "auto":  # SB3's convention: CUDA when present, else the CPU
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {device!r} is not a torch device; use 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but this torch has no CUDA; use 'cpu'")
    return device


def check_spaces(env: Any, kind: ActionKind, agent: str) -> None:
    """Check the env's spaces fit the algorithm.

    :param env: a gymnasium env or an SB3 VecEnv (both expose the two spaces).
    :param kind: ``continuous`` (a bounded ``Box``) or ``discrete`` (``Discrete``).
    :param agent: the agent name, used in the message.
    :raises ConfigError: if the observation is not a ``Box`` or the action space is wrong.
    """
    from gymnasium import spaces

    obs, act = getattr(env, "observation_space", None), getattr(env, "action_space", None)
    if not isinstance(obs, spaces.Box):
        raise ConfigError(f"{agent}: the env's observation space must be a Box of features, "
                          f"got {obs!r}")
    if kind == "discrete":
        if not isinstance(act, spaces.Discrete):
            raise ConfigError(f"{agent} needs a Discrete action space ({{short, flat, long}}), "
                              f"got {act!r}; build the env with discrete actions")
        return
    if not isinstance(act, spaces.Box):
        raise ConfigError(f"{agent} needs a continuous Box action space (target position in "
                          f"[-1, 1]), got {act!r}; build the env with continuous actions")
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        raise ConfigError(f"{agent}: the action Box must be bounded, got {act!r}")


def replay_capacity(buffer_size: int, total_timesteps: int) -> int:
    """Transitions to allocate for a replay buffer.

    SB3 allocates observations and next observations up front: ``buffer_size x obs_dim x 4``
    bytes each (1,000,000 x 151 features ~ 1.2 GB). A buffer larger than the steps trained never
    holds more than ``total_timesteps`` transitions, so the cap changes nothing but the memory.
    (A later ``learn`` call beyond the budget overwrites the oldest transitions, first in first
    out, as any full buffer does.)

    :param buffer_size: ``params.yaml``'s buffer size.
    :param total_timesteps: env steps per fold.
    :return: ``min(buffer_size, total_timesteps)``.
    """
    return min(buffer_size, total_timesteps)


def check_off_policy_budget(agent: str, total_timesteps: int, batch_size: int) -> None:
    """:raises ConfigError: if training would end before the first gradient step."""
    if total_timesteps <= LEARNING_STARTS:
        raise ConfigError(f"agents.{agent}.total_timesteps: {total_timesteps} does not exceed the "
                          f"{LEARNING_STARTS} warm-up steps collected before the first update; "
                          "the agent would never train. Raise total_timesteps")
    if batch_size > total_timesteps:
        raise ConfigError(f"agents.{agent}.batch_size: {batch_size} exceeds total_timesteps "
                          f"{total_timesteps}; lower batch_size")
