from __future__ import annotations

import numpy as np
import pytest
import torch

from mia.envs.trading_env import TradingEnv
from mia.envs.vec_env import TradingVecEnv
from mia.errors import ConfigError, OperationalError
from tests.unit.envs._market import env_config, make_market

SEGMENTS = [slice(10, 300), slice(350, 600)]


@pytest.mark.parametrize("discrete", [False, True])
def test_vec_env_matches_single_envs_step_by_step_across_episode_ends(discrete):
    market, cfg, n = make_market(600), env_config(episode_bars=40), 3
    vec = TradingVecEnv(market, SEGMENTS, cfg, n, discrete=discrete, seed=11)
    singles = [TradingEnv(market, SEGMENTS, cfg, discrete=discrete) for _ in range(n)]
    obs = vec.reset()
    for i, env in enumerate(singles):  # window i is seeded seed + i, as SB3 seeds DummyVecEnv
        np.testing.assert_array_equal(obs[i], env.reset(seed=11 + i)[0])
    rng = np.random.default_rng(0)
    for _ in range(130):  # > 3 episodes of 40 steps
        if discrete:
            actions = rng.integers(0, 3, n)
        else:
            actions = rng.uniform(-1.2, 1.2, (n, 1)).astype(np.float32)
        obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, _, truncated, info = env.step(actions[i])
            assert dones[i] == truncated
            assert infos[i]["pnl"] == info["pnl"]  # the same IEEE operations: exactly equal
            for key in ("cost", "fees", "position", "equity"):
                assert infos[i][key] == pytest.approx(info[key], rel=1e-12, abs=1e-12)
            assert rewards[i] == np.float32(r)
            if truncated:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                o, _ = env.reset()
            np.testing.assert_array_equal(obs[i], o)


def test_episode_end_reports_time_limit_terminal_observation_and_episode_stats():
    cfg = env_config(episode_bars=5, reward_scale=1e-3)
    vec = TradingVecEnv(make_market(300), [slice(0, 300)], cfg, 2, seed=0)
    vec.reset()
    total = np.zeros(2)
    for k in range(5):
        obs, rewards, dones, infos = vec.step(np.full((2, 1), 0.6, dtype=np.float32))
        total += rewards
        assert dones.tolist() == [k == 4] * 2
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True
        assert infos[i]["terminal_observation"][-1] == pytest.approx(0.6)  # 3 of 5 contracts
        assert infos[i]["episode"]["l"] == 5
        assert infos[i]["episode"]["r"] == pytest.approx(total[i], rel=1e-6)
        assert obs[i][-1] == 0.0  # the next window starts flat
        assert vec.reset_infos[i]["position"] == 0


def test_vec_env_rejects_bad_actions_and_bad_sizes():
    vec = TradingVecEnv(make_market(200), [slice(0, 200)], env_config(), 2, seed=0)
    with pytest.raises(OperationalError, match="call reset"):
        vec.step(np.zeros((2, 1), dtype=np.float32))
    vec.reset()
    with pytest.raises(OperationalError, match="NaN"):
        vec.step(np.array([[0.1], [np.nan]], dtype=np.float32))
    with pytest.raises(OperationalError, match="3 actions for 2"):
        vec.step(np.zeros((3, 1), dtype=np.float32))
    disc = TradingVecEnv(make_market(200), [slice(0, 200)], env_config(), 2, discrete=True)
    disc.reset()
    with pytest.raises(OperationalError, match="0 \\(short\\)"):
        disc.step(np.array([1, 3]))
    with pytest.raises(ConfigError, match="n_envs"):
        TradingVecEnv(make_market(200), [slice(0, 200)], env_config(), 0)


def test_vec_env_seed_makes_windows_reproducible():
    market = make_market(600)

    def firsts(seed: int) -> list[int]:
        vec = TradingVecEnv(market, SEGMENTS, env_config(episode_bars=40), 4)
        vec.seed(seed)
        vec.reset()
        return [info["row"] for info in vec.reset_infos]

    assert firsts(3) == firsts(3)
    assert firsts(3) != firsts(4)


@pytest.mark.parametrize("algo", ["ppo", "sac", "qrdqn"])
def test_sb3_algorithms_learn_64_steps_on_the_vec_env(algo):
    from sb3_contrib import QRDQN
    from stable_baselines3 import PPO, SAC

    torch.set_num_threads(1)
    market, cfg = make_market(600), env_config(episode_bars=40)
    vec = TradingVecEnv(market, SEGMENTS, cfg, 2, discrete=algo == "qrdqn")
    if algo == "ppo":
        model = PPO("MlpPolicy", vec, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    elif algo == "sac":
        model = SAC("MlpPolicy", vec, learning_starts=32, batch_size=32, seed=0)
    else:
        model = QRDQN("MlpPolicy", vec, learning_starts=32, batch_size=32, seed=0)
    model.learn(64)
    assert model.num_timesteps == 64
    action, _ = model.predict(vec.reset(), deterministic=True)
    assert vec.action_space.contains(action[0])
