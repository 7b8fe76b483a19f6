"""Bundle inference benchmark (issue 5): one observation through normalise + observation + the
agents, for the five agents with the params.yaml architectures on 150 features (151 inputs).
Results: tests/benchmarks/results/bundle.json.

Target (issue 5): bundle inference for 5 agents + the vote, p50 <= 50 us, p99 <= 100 us. Measured
here, per call, in microseconds (p50 / p99 / p99.9, wall clock and thread CPU time):

- ``fused_act``: :meth:`mia.registry.policy.Policy.act` on the fused graph: raw row ->
  Normalizer -> observation -> one ONNX Runtime run -> five AgentOutput records. This is the
  executor's path.
- ``per_agent_act``: the same with one session per agent (five runs).
- ``fused_graph_only``: the fused graph on a ready observation (bound buffers), for the split.
- ``fused_session_run``: the same through plain ``InferenceSession.run`` (no I/O binding).
- ``normalise_observation``: Normalizer.transform + observation alone.
- ``torch_eager``: the same five deterministic policies as torch modules (the exported
  wrappers), one forward each under ``inference_mode``, one thread.
- ``sb3_predict``: ``model.predict(obs, deterministic=True)`` of the five SB3 models.

- ``fused_act_vote``: ``fused_act`` plus the ensemble's vote
  (:func:`mia.ensemble.vote.decide_one`, both risk modifiers on): the target's whole per-bar
  decision.

Untrained agents (weights do not change latency). ONNX Runtime is measured in a process that
never imports torch (as in the executor); torch in another. Calls cycle over 256 distinct rows
and positions; rounds of each step interleave, so a neighbour's load on the shared machine
spreads over every step alike (``round_p50_us`` shows the spread).

Usage: ``python -m tests.benchmarks.bench_bundle [calls]`` (ONNX calls per step per round,
default 20000, torch a fifth of it; 5 rounds).
"""

from __future__ import annotations

import sys
import tempfile

from tests.benchmarks.common import measure, record

ROUNDS = 5

TIMING = """
import time
import numpy as np

def percentiles(samples):
    a = np.asarray(samples, dtype=np.float64) / 1e3
    return {"p50_us": round(float(np.percentile(a, 50)), 2),
            "p99_us": round(float(np.percentile(a, 99)), 2),
            "p999_us": round(float(np.percentile(a, 99.9)), 2)}

def timed(steps, calls, rounds):
    wall = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    per_round = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for i in range(2000):  # warm-up: caches, ORT arenas
                step(i)
            w = np.empty(calls, dtype=np.int64)
            c = np.empty(calls, dtype=np.int64)
            for i in range(calls):
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                step(i)
                w[i] = time.perf_counter_ns() - t0
                c[i] = time.thread_time_ns() - c0
            wall[name].append(w)
            cpu[name].append(c)
            per_round[name].append(round(float(np.percentile(w, 50)) / 1e3, 2))
    return {k: {"wall": percentiles(np.concatenate(wall[k])),
                "cpu": percentiles(np.concatenate(cpu[k])),
                "round_p50_us": per_round[k]} for k in steps}
"""

BUILD = """
import torch
torch.set_num_threads(1)
from datetime import UTC, datetime
from mia.agents import action_kind, build
from mia.config import load_params
from mia.data.contracts import contract
from mia.envs.market import Market
from mia.envs.trading_env import TradingEnv
from mia.features.normalize import Normalizer
from mia.features.registry import registry
from mia.features.spec import make_spec
from mia.registry.bundle_writer import write_bundle
from mia.registry.onnx_export import _wrap, export_policy

params = load_params("params.yaml", env={{}})
F, ROWS = 150, 2_000
spec = make_spec([k for k, d in registry().items() if "regime" not in d.groups][:F])
rng = np.random.default_rng(0)
raw = rng.standard_normal((ROWS, F)) * 2.0 + 0.5
norm = Normalizer.fit(raw, spec.names, slice(0, ROWS))
close = 4800.0 + 0.25 * np.cumsum(rng.integers(-4, 5, ROWS))
market = Market(features=norm.transform(raw), names=spec.names, open=np.r_[close[0], close[:-1]],
                close=close, spread=None, spec=contract("ES"), bound=norm.clip)
models = {{}}
for name in ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn"):
    env = TradingEnv(market, [slice(0, ROWS)], params.env,
                     discrete=action_kind(name) == "discrete")
    models[name] = build(name, getattr(params.agents, name), env, seed=0)
exported = export_policy(models)
write_bundle({path!r}, symbol="ES", spec=spec, normalizer=norm, agents=exported.agents,
             graph=exported.graph, ensemble={{"weights": {{"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}},
                                               "confidence_threshold": 0.65}},
             hmm=None, drift=None, risk=params.risk, env=params.env, metrics={{}},
             data_hash="bench", git_sha="bench", created_at=datetime(2024, 1, 1, tzinfo=UTC))

obs = np.hstack([norm.transform(raw[:256]), rng.integers(-5, 6, (256, 1)) / 5]).astype(np.float32)
tensors = [torch.as_tensor(o[None]) for o in obs]
modules = [_wrap(name, m)[0].eval() for name, m in models.items()]

def torch_eager(i):
    x = tensors[i & 255]
    with torch.inference_mode():
        for module in modules:
            module(x)

def sb3_predict(i):
    o = obs[i & 255]
    for m in models.values():
        m.predict(o, deterministic=True)

RESULT = timed({{"torch_eager": torch_eager, "sb3_predict": sb3_predict}}, {calls}, {rounds})
RESULT["torch_threads"] = torch.get_num_threads()
"""

# The ONNX side: numpy, onnxruntime and mia.features only, as in the executor.
ACT_STEPS = {
    "fused_act": "fused.act(rows[i & 255], positions[i & 255])",
    # the whole per-bar decision: 5 agents + the ensemble's vote with both risk modifiers
    "fused_act_vote": "vote(fused.act(rows[i & 255], positions[i & 255]))",
    "per_agent_act": "alone.act(rows[i & 255], positions[i & 255])",
    "fused_graph_only": "graph_step(obs[i & 255])",
    "fused_session_run": "session_run(names, {'obs': obs2d[i & 255]})",
    "normalise_observation": "observation(norm.transform(rows[i & 255]), positions[i & 255], 5)",
}

ACT = """
import sys
from mia.ensemble.vote import Ensemble, decide_one
from mia.features.normalize import observation
from mia.registry.policy import Policy

ens = Ensemble(weights={{"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}}, threshold=0.65,
               lagrangian_scale=True, quantile_confidence=True)

def vote(out):
    return decide_one(ens, {{k: v.fraction for k, v in out.items() if v.quantiles is None}},
                      out["qrdqn"].quantiles)

fused, alone = Policy.load({path!r}), Policy.load({path!r}, fused=False)
norm = fused.bundle.normalizer
rng = np.random.default_rng(1)
rows = rng.standard_normal((256, 150)) * 2.0 + 0.5
positions = rng.integers(-5, 6, 256).tolist()
obs = [observation(norm.transform(r), p, 5) for r, p in zip(rows, positions)]
graph_step = fused._runner.step
session_run, names = fused._runner._runs[0]  # InferenceSession.run without the I/O binding
obs2d = [o[None] for o in obs]
steps = {{name: eval("lambda i: " + code) for name, code in {steps!r}.items()}}
RESULT = timed(steps, {calls}, {rounds})
RESULT["imports_torch"] = "torch" in sys.modules
RESULT["agents"] = [a.name for a in fused.bundle.agents]
"""


def main(calls: int = 20_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bundle"
        # torch is ~5-20x slower per call: fewer calls keep its process under a minute
        torch_side = measure(TIMING + BUILD.format(path=path, calls=max(500, calls // 5),
                                                   rounds=ROUNDS))
        onnx_side = measure(TIMING + ACT.format(path=path, steps=ACT_STEPS, calls=calls,
                                                rounds=ROUNDS))
    results: dict[str, object] = {
        "features": 150, "obs_size": 151, "agents": onnx_side.pop("agents"),
        "calls_per_round": {"onnx": calls, "torch": max(500, calls // 5)}, "rounds": ROUNDS,
        "target": {"p50_us": 50, "p99_us": 100, "includes": "5 agents + the vote"},
        "onnx_process": onnx_side, "torch_process": torch_side,
    }
    record("bundle", results)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
