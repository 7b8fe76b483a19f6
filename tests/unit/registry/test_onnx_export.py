"""ONNX export: every agent's graph equals SB3's deterministic predict; the fused graph equals
the agents' own graphs; bad models are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mia.config import ConfigError
from mia.errors import OperationalError
from mia.registry.onnx_export import OPSET, export_agent, fuse
from tests.unit.registry.test_bundle import AGENT_NAMES, agents, exported, make_env

N_OBS = 10_000


def session(onnx_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def observations(name: str, n: int = N_OBS) -> np.ndarray:
    """``n`` draws from the env's observation space (features in +/-clip, position in +/-1)."""
    space = make_env(name).observation_space
    space.seed(7)
    return np.stack([space.sample() for _ in range(n)])


def assert_parity(model: Any, onnx_bytes: bytes, obs: np.ndarray) -> np.ndarray:
    """Assert the graph's outputs equal SB3's on ``obs``. :return: SB3's actions."""
    got = session(onnx_bytes).run(None, {"obs": obs})
    want = model.predict(obs, deterministic=True)[0]
    if len(got) == 1:  # a continuous action
        assert got[0].shape == want.shape == (len(obs), 1)
        assert got[0].dtype == np.float32
        np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-5)
        return want
    action, quantiles = got
    with torch.no_grad():
        ref = model.policy.quantile_net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(quantiles, ref, rtol=0, atol=1e-5)
    assert action.shape == want.shape == (len(obs),)
    assert action.dtype == np.int64
    # the greedy action may differ only where two actions' mean quantiles tie within 1e-5
    means = np.sort(ref.mean(axis=1), axis=1)
    differ = action != want
    assert np.all(means[differ, -1] - means[differ, -2] <= 1e-5)
    assert differ.sum() <= 2
    return want


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_onnx_graph_equals_sb3_deterministic_predict_on_10k_observations(name: str) -> None:
    graph = next(a for a in exported().agents if a.name == name)
    want = assert_parity(agents()[name], graph.onnx, observations(name))
    if name == "qrdqn":
        assert set(np.unique(want)) == {0, 1, 2}  # every level of the argmax is covered
        return
    assert want.min() < -0.5
    assert want.max() > 0.5
    if name.startswith("ppo"):  # SB3 clips the Gaussian mean to the Box: both sides covered
        assert 0.05 < np.mean(np.abs(want) == 1.0) < 0.95


@pytest.mark.parametrize("name", ["sac", "ppo_lagrangian", "qrdqn"])
def test_onnx_graph_equals_sb3_predict_after_a_tiny_training_run(name: str) -> None:
    from mia.agents import build
    from tests.unit.agents.conftest import small
    from tests.unit.registry.test_bundle import params

    cfg = small(getattr(params().agents, name))
    model = build(name, cfg, make_env(name), seed=3)
    model.learn(cfg.total_timesteps)  # SB3-sized budget: the weights have taken Adam steps
    assert_parity(model, export_agent(name, model).onnx, observations(name, 2_000))


def test_models_saved_and_loaded_back_export_the_same_policy(tmp_path: Any) -> None:
    # the walk-forward saves each fold's agents (SB3 zip) and the bundle step loads them
    from mia.agents import load

    for name, model in agents().items():
        model.save(tmp_path / f"{name}.zip")
        loaded = load(name, tmp_path / f"{name}.zip")
        assert_parity(loaded, export_agent(name, loaded).onnx, observations(name, 2_000))


def test_exported_graph_is_opset_17_with_a_dynamic_batch_of_observations() -> None:
    graph = next(a for a in exported().agents if a.name == "qrdqn")
    model = onnx.load_from_string(graph.onnx)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "obs"
    assert dims[0].dim_param == "batch"
    assert dims[1].dim_value == 13
    assert [o.name for o in model.graph.output] == ["action", "quantiles"]
    assert graph.n_quantiles == 51
    assert graph.kind == "discrete"
    assert graph.obs_size == 13


def test_fused_graph_serves_every_agent_from_one_input_like_their_own_graphs() -> None:
    exp = exported()
    obs = observations("sac", 500)
    fused = session(exp.graph)
    assert [i.name for i in fused.get_inputs()] == ["obs"]
    names = [o.name for o in fused.get_outputs()]
    assert names == [*(f"{n}/action" for n in AGENT_NAMES), "qrdqn/quantiles"]
    outputs = dict(zip(names, fused.run(None, {"obs": obs}), strict=True))
    for agent in exp.agents:
        own = session(agent.onnx).run(None, {"obs": obs})
        for label, value in zip(("action", "quantiles"), own, strict=False):
            np.testing.assert_allclose(outputs[f"{agent.name}/{label}"], value, rtol=0, atol=1e-6)


def test_export_refuses_a_model_of_another_algorithm() -> None:
    models = agents()
    with pytest.raises(OperationalError, match="agent 'ppo' must be a PPO, got PPOLagrangian"):
        export_agent("ppo", models["ppo_lagrangian"])
    with pytest.raises(OperationalError, match="agent 'sac' must be a SAC"):
        export_agent("sac", models["ddpg"])
    with pytest.raises(ConfigError, match="unknown agent 'td3'"):
        export_agent("td3", models["ddpg"])


def test_export_refuses_an_opset_below_17() -> None:
    with pytest.raises(OperationalError, match="opset 16 < 17"):
        export_agent("sac", agents()["sac"], opset=16)


def test_export_refuses_an_action_box_other_than_the_target_fraction() -> None:
    from gymnasium import spaces

    from mia.agents import build
    from tests.unit.agents.conftest import small
    from tests.unit.registry.test_bundle import params

    env: Any = make_env("sac")
    env.action_space = spaces.Box(-2.0, 2.0, (1,), dtype=np.float32)
    model = build("sac", small(params().agents.sac), env, seed=0)
    with pytest.raises(OperationalError, match=r"is not Box\(-1, 1, \(1,\)\)"):
        export_agent("sac", model)


def test_fuse_refuses_repeated_agents() -> None:
    sac = exported().agents[0]
    with pytest.raises(OperationalError, match="need distinct agents"):
        fuse([sac, sac])
