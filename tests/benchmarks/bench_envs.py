"""Trading env benchmarks (issue 4): raw ``TradingEnv.step`` at 2k and 200k rows x 150 features,
the vectorised env against SB3's DummyVecEnv over TradingEnv (1, 8, 32 windows), and a bare numpy
array env as the floor of what a Python ``step`` costs, all measured in the same run.
Results: tests/benchmarks/results/envs.json.

Targets: raw step >= 500k steps/s; steps/s at 200k rows within 10 % of 2k rows (FinRL's
StockTradingEnv does ~2.4k steps/s on this machine, a bare array env ~2.2M). Each figure is the
best of several timed rounds in steps per CPU-second of the benchmark process, the sizes
interleaved round by round: the machine is shared, and a round slowed by a neighbour says more
about the neighbour than about the env (medians are recorded too).
"""

from __future__ import annotations

from tests.benchmarks.common import measure, record

SETUP = """
import time
import numpy as np
from mia.config import load_params
from mia.data.contracts import contract
from mia.envs.market import Market

CFG = load_params("params.yaml", env={}).env
F = 150

def market(rows, seed=0):
    rng = np.random.default_rng(seed)
    close = 4800.0 + 0.25 * np.cumsum(rng.integers(-4, 5, rows))
    open_ = np.r_[close[0], close[:-1]] + 0.25 * rng.integers(-1, 2, rows)
    feats = np.clip(rng.standard_normal((rows, F)), -5, 5).astype(np.float32)
    return Market(features=feats, names=tuple(f"f{i}" for i in range(F)), open=open_,
                  close=close, spread=0.25 * rng.integers(1, 4, rows).astype(float),
                  spec=contract("ES"), bound=5.0)

def rate(run, steps):
    # steps per CPU-second of this process: time a neighbour holds the core is not counted
    t0 = time.process_time()
    run(steps)
    return steps / (time.process_time() - t0)
"""

RAW_STEP = SETUP + """
from mia.envs.trading_env import TradingEnv

class BareEnv:
    # the floor: a fresh observation row, a reward from a list, no accounting
    def __init__(self, obs, rewards):
        self.obs, self.rew, self.t, self.n = obs, rewards.tolist(), 0, len(rewards)
    def reset(self):
        self.t = 0
        return self.obs[0].copy(), {}
    def step(self, action):
        t = self.t + 1
        self.t = t
        return self.obs[t].copy(), self.rew[t], False, t == self.n - 1, {}

rng = np.random.default_rng(1)
actions = [rng.uniform(-1, 1, 1).astype(np.float32) for _ in range(4096)]

def runner(env):
    env.reset(seed=0) if isinstance(env, TradingEnv) else env.reset()
    def run(steps):
        step, reset, acts = env.step, env.reset, actions
        for i in range(steps):
            if step(acts[i & 4095])[3]:
                reset()
    return run

envs = {}
build = {}
for rows in (2_000, 200_000):
    m = market(rows)
    t0 = time.perf_counter()
    envs[rows] = TradingEnv(m, [slice(0, rows)], CFG)
    build[rows] = time.perf_counter() - t0
m = market(2_000)
bare = BareEnv(m.features, m.close)
runs = {2_000: runner(envs[2_000]), 200_000: runner(envs[200_000]), "bare": runner(bare)}
for run in runs.values():
    run(50_000)  # warm up
rates = {k: [] for k in runs}
for _ in range(15):  # interleaved rounds: neighbours slow every size alike
    for k, run in runs.items():
        rates[k].append(rate(run, 200_000))
best = {k: max(v) for k, v in rates.items()}
RESULT = {
    "features": F, "episode_bars": CFG.episode_bars,
    "steps_per_s_2k_rows": round(best[2_000]), "steps_per_s_200k_rows": round(best[200_000]),
    "median_steps_per_s_2k_rows": round(float(np.median(rates[2_000]))),
    "median_steps_per_s_200k_rows": round(float(np.median(rates[200_000]))),
    "ratio_200k_to_2k": round(best[200_000] / best[2_000], 3),
    "bare_array_env_steps_per_s": round(best["bare"]),
    "construct_seconds_2k_rows": round(build[2_000], 3),
    "construct_seconds_200k_rows": round(build[200_000], 3),
}
"""

VEC_STEP = SETUP + """
import torch
torch.set_num_threads(1)
from stable_baselines3.common.vec_env import DummyVecEnv
from mia.envs.trading_env import TradingEnv
from mia.envs.vec_env import TradingVecEnv

# 20k rows (a training fold): each DummyVecEnv member holds its own observation matrix, so 32
# of them at 200k rows would need ~6 GB; TradingVecEnv holds one for all windows.
ROWS = 20_000
m = market(ROWS)
seg = [slice(0, ROWS)]
rng = np.random.default_rng(1)
RESULT = {"rows": ROWS, "features": F}
for n in (1, 8, 32):
    acts = [rng.uniform(-1, 1, (n, 1)).astype(np.float32) for _ in range(256)]
    native = TradingVecEnv(m, seg, CFG, n, seed=0)
    dummy = DummyVecEnv([lambda: TradingEnv(m, seg, CFG) for _ in range(n)])
    dummy.seed(0)
    for venv in (native, dummy):
        venv.reset()
    def runner(venv):
        def run(steps):
            step = venv.step
            for i in range(steps):
                step(acts[i & 255])
        return run
    steps = max(100_000 // n, 2_000)
    r_native, r_dummy = [], []
    for _ in range(5):
        r_native.append(rate(runner(native), steps))
        r_dummy.append(rate(runner(dummy), max(steps // 4, 500)))
    RESULT[f"n_envs_{n}"] = {"native_env_steps_per_s": round(max(r_native) * n),
                             "dummy_vec_env_steps_per_s": round(max(r_dummy) * n)}
"""


def main() -> None:
    record("envs", {
        "raw_step_150_features": {**measure(RAW_STEP), "target_steps_per_s": 500_000,
                                  "target_ratio_200k_to_2k": 0.9},
        "vec_env_150_features": measure(VEC_STEP, env={"OMP_NUM_THREADS": "1"}),
    })


if __name__ == "__main__":
    main()
