"""Agent training benchmarks (issue 4): env steps per second while each of the five agents
trains on the real trading env (150 features + position = 151-dim observation) with the
params.yaml architectures and hyper-parameters, one torch thread, CPU.
Results: tests/benchmarks/results/agents.json.

Reference on this machine (issue 4): PPO ~1.9k steps/s, SAC ~75, DDPG ~120, QR-DQN ~120. Each
agent runs in its own process: one short ``learn`` first (imports, SB3 setup, the off-policy
warm-up of 100 steps collected before any gradient step), then a timed ``learn`` continuing
from there, so the figure is the steady training rate. Steps per wall-second and per
CPU-second of the process are both recorded (the machine is shared; CPU time does not count a
neighbour's turn on the core).

Usage: ``python -m tests.benchmarks.bench_agents [scale]``; ``scale`` (default 1) multiplies
the timed step counts.
"""

from __future__ import annotations

import sys

from tests.benchmarks.common import measure, record

TRAIN = """
import time
import numpy as np
import torch
torch.set_num_threads(1)
from mia.agents import action_kind, build
from mia.config import load_params
from mia.data.contracts import contract
from mia.envs.market import Market
from mia.envs.trading_env import TradingEnv

params = load_params("params.yaml", env={{}})
NAME, WARMUP, STEPS, ROWS, F = {name!r}, {warmup}, {steps}, 50_000, 150
rng = np.random.default_rng(0)
close = 4800.0 + 0.25 * np.cumsum(rng.integers(-4, 5, ROWS))
open_ = np.r_[close[0], close[:-1]] + 0.25 * rng.integers(-1, 2, ROWS)
market = Market(features=np.clip(rng.standard_normal((ROWS, F)), -5, 5).astype(np.float32),
                names=tuple(f"f{{i}}" for i in range(F)), open=open_, close=close,
                spread=None, spec=contract("ES"), bound=5.0)
env = TradingEnv(market, [slice(0, ROWS)], params.env,
                 discrete=action_kind(NAME) == "discrete")
cfg = getattr(params.agents, NAME)
model = build(NAME, cfg, env, seed=0)
model.learn(WARMUP)
wall, cpu = time.perf_counter(), time.process_time()
model.learn(STEPS, reset_num_timesteps=False)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
RESULT = {{"obs_dim": int(env.observation_space.shape[0]), "timed_steps": STEPS,
          "warmup_steps": WARMUP, "steps_per_s": round(STEPS / wall, 1),
          "steps_per_cpu_s": round(STEPS / cpu, 1), "torch_threads": torch.get_num_threads()}}
"""

# (warm-up steps, timed steps at scale 1): PPO's are whole 2048-step rollouts (each followed by
# its 10 training epochs); off-policy agents warm up past the 100 steps before the first update.
PLAN = {
    "ppo": (2048, 4096, 1900),
    "ppo_lagrangian": (2048, 4096, None),
    "sac": (200, 400, 75),
    "ddpg": (200, 600, 120),
    "qrdqn": (200, 800, 120),
}


def main(scale: float = 1.0) -> None:
    results: dict[str, object] = {}
    for name, (warmup, steps, reference) in PLAN.items():
        timed = max(1, int(steps * scale))
        figures = measure(TRAIN.format(name=name, warmup=warmup, steps=timed))
        results[name] = {**figures, "reference_steps_per_s": reference}
        print(f"{name}: {figures['steps_per_s']} steps/s", flush=True)
    record("agents", results)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
