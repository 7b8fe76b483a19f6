from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from mia.data.contracts import contract
from mia.envs.market import Market
from mia.envs.trading_env import TradingEnv
from mia.errors import OperationalError
from mia.features.normalize import observation
from mia.training.splits import walk_forward_splits
from tests.unit.envs._market import env_config, make_market

ES_UNIT_COST = 2.25 + (0.125 + 0.125) * 50.0  # commission + (half a 1-tick spread + slippage)


def _hand_market() -> Market:
    feats = np.arange(10, dtype=np.float32).reshape(5, 2) / 10
    return Market(features=feats, names=("a", "b"),
                  open=np.array([100.0, 101.0, 103.0, 102.0, 104.0]),
                  close=np.array([100.5, 102.0, 102.5, 103.0, 105.0]),
                  spread=None, spec=contract("ES"), bound=5.0)


@pytest.mark.parametrize(("discrete", "evaluate"), [(False, False), (True, False), (False, True)])
def test_env_passes_gymnasium_and_sb3_checkers_without_warnings(discrete, evaluate):
    market = make_market(400)
    env = TradingEnv(market, [slice(20, 200), slice(250, 400)], env_config(episode_bars=64),
                     discrete=discrete, evaluate=evaluate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(env, skip_render_check=True)
        sb3_check_env(env)


def test_env_fill_happens_at_next_bar_open_and_each_position_earns_its_interval():
    env = TradingEnv(_hand_market(), [slice(0, 5)], env_config(), evaluate=True)
    env.reset()
    pnls = [env.step(np.array([a], dtype=np.float32))[4]["pnl"] for a in (1.0, 0.4, -1.0)]
    # t=0 -> long 5 filled at open[1]=101, marked to close[1]=102; close[0] -> open[1] not earned
    assert pnls[0] == pytest.approx(5 * (102.0 - 101.0) * 50 - 5 * ES_UNIT_COST)
    # old 5 earn close[1] -> open[2] (+1), new 2 earn open[2] -> close[2] (-0.5), 3 traded
    assert pnls[1] == pytest.approx(5 * 1.0 * 50 + 2 * -0.5 * 50 - 3 * ES_UNIT_COST)
    # flip 2 -> -5: old 2 earn open[3] - close[2] = -0.5, new -5 earn close[3] - open[3] = +1
    assert pnls[2] == pytest.approx(2 * -0.5 * 50 + -5 * 1.0 * 50 - 7 * ES_UNIT_COST)


def test_reward_is_net_pnl_times_scale_and_info_reports_cost_signal_position_equity():
    cfg = env_config(reward_scale=1e-3, initial_equity=250_000.0)
    env = TradingEnv(_hand_market(), [slice(0, 5)], cfg, evaluate=True)
    _, info0 = env.reset()
    assert info0 == {"position": 0, "equity": 250_000.0, "row": 0}
    equity = 250_000.0
    for a, held in ((1.0, 5), (0.4, 2), (-1.0, -5), (0.0, 0)):
        _, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        equity += info["pnl"]
        assert reward == pytest.approx(info["pnl"] * 1e-3)
        assert info["position"] == held
        assert info["equity"] == pytest.approx(equity)
        assert info["fees"] == pytest.approx(abs(held - info0["position"]) * ES_UNIT_COST)
        # CVaR signal: the step's loss in percent of initial equity, 0 on a gain
        assert info["cost"] == pytest.approx(max(0.0, -info["pnl"]) / 250_000.0 * 100)
        assert not terminated
        info0 = info
    assert truncated
    assert info["cost"] > 0  # the last step lost money


def test_continuous_action_is_rounded_to_whole_contracts_and_clipped_to_the_limit():
    env = TradingEnv(make_market(300), [slice(0, 300)], env_config(max_contracts=5))
    env.reset(seed=0)
    cases = ((0.25, 1), (0.5, 2), (-0.5, -2), (0.75, 4), (-0.95, -5), (3.0, 5), (-7.0, -5))
    for a, held in cases:
        # +/-0.5 x 5 = +/-2.5 exactly: half to even gives +/-2, as np.rint in the vec env
        assert env.step(np.array([a], dtype=np.float32))[4]["position"] == held


def test_discrete_actions_are_short_flat_long_at_the_limit():
    env = TradingEnv(make_market(300), [slice(0, 300)], env_config(max_contracts=3),
                     discrete=True)
    env.reset(seed=0)
    assert [env.step(a)[4]["position"] for a in (2, 0, 1, np.int64(2), np.array(0))] == \
        [3, -3, 0, 3, -3]


@pytest.mark.parametrize(("discrete", "action", "message"), [
    (False, np.array([np.nan], dtype=np.float32), "NaN"),
    (False, np.array([0.1, 0.2], dtype=np.float32), r"\(1,\) float array"),
    (True, 3, "0 \\(short\\), 1 \\(flat\\) or 2 \\(long\\)"),
    (True, -1, "0 \\(short\\)"),
])
def test_invalid_action_raises_a_clear_error(discrete, action, message):
    env = TradingEnv(make_market(100), [slice(0, 100)], env_config(), discrete=discrete)
    env.reset(seed=0)
    with pytest.raises(OperationalError, match=message):
        env.step(action)


def test_step_before_reset_or_after_the_episode_end_raises():
    env = TradingEnv(_hand_market(), [slice(0, 5)], env_config(), evaluate=True)
    flat = np.zeros(1, dtype=np.float32)
    with pytest.raises(OperationalError, match="call reset"):
        env.step(flat)
    env.reset()
    for _ in range(4):
        truncated = env.step(flat)[3]
    assert truncated
    with pytest.raises(OperationalError, match="call reset"):
        env.step(flat)


def test_observation_is_current_bar_features_plus_position_as_the_executor_builds_it():
    market = make_market(200)
    cfg = env_config(max_contracts=4, episode_bars=60)
    env = TradingEnv(market, [slice(0, 200)], cfg)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(obs, observation(market.features[env.row], 0, 4))
    truncated = False
    while not truncated:
        obs, _, _, truncated, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        np.testing.assert_array_equal(obs, observation(market.features[env.row],
                                                       info["position"], 4))


def test_returned_observations_are_fresh_arrays_that_later_steps_do_not_change():
    env = TradingEnv(make_market(200), [slice(0, 200)], env_config())
    first, _ = env.reset(seed=1)
    kept = first.copy()
    first[:] = 99.0  # the caller scribbles on it: the env's data must not change
    again, _ = env.reset(seed=1)
    np.testing.assert_array_equal(again, kept)
    a, *_ = env.step(np.array([1.0], dtype=np.float32))
    b, *_ = env.step(np.array([-1.0], dtype=np.float32))
    assert not np.shares_memory(a, b)


def test_training_windows_stay_inside_one_segment_and_follow_the_seed():
    segments = [slice(10, 200), slice(300, 320)]
    env = TradingEnv(make_market(400), segments, env_config(episode_bars=50))

    def windows(seed: int) -> list[tuple[int, int]]:
        env.reset(seed=seed)
        out = [env.window]
        for _ in range(199):
            env.reset()
            out.append(env.window)
        return out

    seen = windows(5)
    assert seen == windows(5)
    assert seen != windows(6)
    for first, last in seen:
        seg = next(s for s in segments if s.start <= first < s.stop)
        assert last < seg.stop
        assert last - first == min(50, seg.stop - seg.start - 1)
    assert {first < 300 for first, _ in seen} == {True, False}  # both segments are drawn


def test_an_episode_runs_its_window_and_never_leaves_the_allowed_rows():
    n = 3000
    fold = walk_forward_splits(n, folds=3, scheme="expanding", train_rows=None,
                               validation_rows=500, purge=15, embargo=60)[2]
    assert fold.embargoed  # the case that matters: holes inside the train envelope
    allowed = set(fold.train_indices().tolist())
    env = TradingEnv(make_market(n), fold.train_segments(), env_config(episode_bars=100))
    visited: set[int] = set()
    env.reset(seed=0)
    for _ in range(30):
        steps, truncated = 0, False
        visited.add(env.row)
        while not truncated:
            truncated = env.step(env.action_space.sample())[3]
            visited.add(env.row)
            steps += 1
        first, last = env.window
        assert steps == last - first
        env.reset()
    assert visited <= allowed


def test_evaluation_mode_runs_each_segment_whole_and_in_order():
    segments = [slice(50, 90), slice(120, 125)]
    env = TradingEnv(make_market(200), segments, env_config(episode_bars=8), evaluate=True)
    assert env.reset(seed=0)[1]["row"] == 50
    assert env.window == (50, 89)
    assert env.reset()[1]["row"] == 120
    assert env.window == (120, 124)
    assert env.reset()[1]["row"] == 50  # cycles
    env.reset()
    assert env.reset(seed=1)[1]["row"] == 50  # a seed restarts at the first segment


@pytest.mark.parametrize(("segments", "message"), [
    ([], "empty fold"),
    ([slice(10, 11)], "has 1 bar"),
    ([slice(0, 100), slice(90, 150)], "overlap"),
    ([slice(150, 260)], "outside"),
    ([slice(0, 100, 2)], "slice\\(start, stop\\)"),
])
def test_bad_segments_are_rejected_at_construction(segments, message):
    with pytest.raises(OperationalError, match=message):
        TradingEnv(make_market(200), segments, env_config())


def test_nan_feature_inside_a_segment_names_feature_and_row_but_warm_up_rows_are_fine():
    market = make_market(200)
    market.features[:20, 1] = np.nan  # warm-up, outside the segment
    TradingEnv(market, [slice(20, 200)], env_config())
    market.features[150, 2] = np.nan
    with pytest.raises(OperationalError, match="feature 'f2' is nan at row 150"):
        TradingEnv(market, [slice(20, 200)], env_config())


def test_feature_count_mismatch_or_unnormalised_features_are_rejected():
    market = make_market(100)
    with pytest.raises(OperationalError, match="3 columns but the spec names 4"):
        Market(features=market.features[:, :3].copy(), names=market.names, open=market.open,
               close=market.close, spread=None, spec=market.spec, bound=market.bound)
    with pytest.raises(OperationalError, match="float32"):
        Market(features=market.features.astype(np.float64), names=market.names,
               open=market.open, close=market.close, spread=None, spec=market.spec,
               bound=market.bound)
    raw = Market(features=market.features * 10, names=market.names, open=market.open,
                 close=market.close, spread=None, spec=market.spec, bound=market.bound)
    with pytest.raises(OperationalError, match="beyond the normaliser's bound"):
        TradingEnv(raw, [slice(0, 100)], env_config())
