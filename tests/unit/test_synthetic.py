"""Synthetic market: schema, determinism, calendar, realism and the planted / random-walk modes."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from mia.data.calendar import EXCHANGE_TZ, trade_dates
from mia.data.synthetic import COLUMNS, SyntheticMarket, generate_market
from mia.errors import ConfigError
from mia.types import OPTIONAL_GROUPS, REQUIRED_COLUMNS

START, END = date(2024, 1, 2), date(2024, 3, 15)  # 52 trade dates, about 72k bars per symbol
SEED = 7


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return generate_market(["ES", "MNQ"], START, END, SEED)


@pytest.fixture(scope="module")
def planted() -> SyntheticMarket:
    return generate_market(["ES"], START, END, SEED, planted_alpha=0.1)


@pytest.fixture(scope="module")
def walk() -> SyntheticMarket:
    return generate_market(["ES"], START, END, SEED, random_walk=True)


def _log_returns(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Close-to-close log returns and a mask of bars that follow a session gap."""
    ret = np.log(frame["close"]).diff()
    after_gap = frame["ts"].diff() != pd.Timedelta(minutes=1)
    return ret, after_gap


def _imbalance_vs_next_return(frame: pd.DataFrame) -> float:
    ret, after_gap = _log_returns(frame)
    imbalance = (frame["bid_volume"] - frame["ask_volume"]) / frame["volume"]
    nxt = ret.shift(-1)
    keep = ~after_gap.shift(-1, fill_value=True)  # drop pairs spanning the daily break
    return float(imbalance[keep].corr(nxt[keep], method="spearman"))


def test_same_seed_gives_identical_frames() -> None:
    a = generate_market(["ES", "MNQ"], date(2024, 3, 4), date(2024, 3, 8), 3)
    b = generate_market(["ES", "MNQ"], date(2024, 3, 4), date(2024, 3, 8), 3)
    for sym in ("ES", "MNQ"):
        pd.testing.assert_frame_equal(a.bars[sym], b.bars[sym])
    pd.testing.assert_series_equal(a.regimes, b.regimes)


def test_different_seed_gives_different_prices() -> None:
    a = generate_market(["ES"], date(2024, 3, 4), date(2024, 3, 8), 3)
    b = generate_market(["ES"], date(2024, 3, 4), date(2024, 3, 8), 4)
    assert not np.array_equal(a.bars["ES"]["close"].to_numpy(), b.bars["ES"]["close"].to_numpy())


def test_symbol_frame_does_not_depend_on_other_symbols_requested(market: SyntheticMarket) -> None:
    alone = generate_market(["MNQ"], START, END, SEED)
    pd.testing.assert_frame_equal(alone.bars["MNQ"], market.bars["MNQ"])


def test_frames_have_exact_columns_and_dtypes(market: SyntheticMarket) -> None:
    expected = list(REQUIRED_COLUMNS) + [c for cols in OPTIONAL_GROUPS.values() for c in cols]
    assert list(COLUMNS) == expected
    for sym, frame in market.bars.items():
        assert list(frame.columns) == expected
        assert isinstance(frame.index, pd.RangeIndex)
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
        assert (frame["symbol"] == sym).all()
        assert all(frame[c].dtype == np.float64 for c in expected[2:])
        assert frame["ts"].is_monotonic_increasing
        assert frame["ts"].is_unique
        assert np.isfinite(frame[expected[2:]].to_numpy()).all()
    assert market.planted == "none"


def test_ohlc_is_consistent_and_on_the_tick(market: SyntheticMarket) -> None:
    for frame in market.bars.values():
        o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
        assert (lo > 0).all()
        assert (lo <= np.minimum(o, c)).all()
        assert (np.maximum(o, c) <= h).all()
        for col in ("open", "high", "low", "close"):
            ticks = frame[col].to_numpy() / 0.25
            assert np.array_equal(ticks, np.round(ticks)), col
        within = frame["ts"].diff() == pd.Timedelta(minutes=1)
        assert (frame["open"][within] == frame["close"].shift(1)[within]).all()
    assert 4000 < market.bars["ES"]["close"].iloc[0] < 5600
    assert 14000 < market.bars["MNQ"]["close"].iloc[0] < 20000


def test_order_flow_columns_are_consistent(market: SyntheticMarket) -> None:
    for frame in market.bars.values():
        vol = frame["volume"]
        assert (vol >= 0).all()
        assert (vol == np.round(vol)).all()
        assert (frame["bid_volume"] + frame["ask_volume"] == vol).all()
        assert ((frame["bid_volume"] >= 0) & (frame["ask_volume"] >= 0)).all()
        assert (frame["taker_volume"] <= vol).all()
        assert (frame["order_volume"] > 0).all()
        spread_ticks = frame["bid_ask_spread"] / 0.25
        assert spread_ticks.between(1, 4).all()
        assert (spread_ticks == 1).mean() > 0.8


def test_no_bars_in_daily_break_holiday_or_saturday(market: SyntheticMarket) -> None:
    ts = market.bars["ES"]["ts"]
    local = ts.dt.tz_convert(EXCHANGE_TZ)
    minutes = local.dt.hour * 60 + local.dt.minute
    assert not ((minutes > 17 * 60) & (minutes <= 18 * 60)).any()  # closes 17:01..18:00
    days = set(trade_dates(ts))
    assert date(2024, 1, 15) not in days  # Martin Luther King Jr. Day
    assert not (local.dt.dayofweek == 5).any()
    july = generate_market(["ES"], date(2024, 7, 1), date(2024, 7, 8), SEED).bars["ES"]["ts"]
    july_days = set(trade_dates(july))
    assert date(2024, 7, 4) not in july_days
    assert date(2024, 7, 5) in july_days


def test_defensive_regime_is_more_volatile_than_range(market: SyntheticMarket) -> None:
    ret, after_gap = _log_returns(market.bars["ES"])
    labels = market.regimes.to_numpy()
    assert set(labels) == {"trend", "range", "defensive"}
    vol = {g: ret[(labels == g) & ~after_gap.to_numpy()].std() for g in ("range", "defensive")}
    assert vol["defensive"] > 2.0 * vol["range"]
    assert market.regimes.index.equals(pd.DatetimeIndex(market.bars["ES"]["ts"]))


def test_es_and_mnq_returns_are_correlated(market: SyntheticMarket) -> None:
    es, gap = _log_returns(market.bars["ES"])
    mnq, _ = _log_returns(market.bars["MNQ"])
    corr = es[~gap].corr(mnq[~gap])
    assert 0.8 <= corr <= 0.95
    assert mnq[~gap].std() > es[~gap].std()


def test_imbalance_tracks_same_bar_return(market: SyntheticMarket) -> None:
    frame = market.bars["ES"]
    ret, gap = _log_returns(frame)
    imbalance = (frame["bid_volume"] - frame["ask_volume"]) / frame["volume"]
    assert imbalance[~gap].corr(ret[~gap], method="spearman") > 0.3


def test_unplanted_imbalance_does_not_predict_next_return(market: SyntheticMarket) -> None:
    assert abs(_imbalance_vs_next_return(market.bars["ES"])) < 0.02


def test_planted_alpha_sets_rank_correlation_with_next_return(planted: SyntheticMarket) -> None:
    assert _imbalance_vs_next_return(planted.bars["ES"]) == pytest.approx(0.1, abs=0.02)
    assert "0.100" in planted.planted


def test_random_walk_returns_are_unpredictable(walk: SyntheticMarket) -> None:
    ret, gap = _log_returns(walk.bars["ES"])
    ret = ret[~gap]
    assert abs(ret.autocorr(1)) < 0.02
    assert abs((ret**2).autocorr(1)) < 0.02
    assert (walk.regimes == "range").all()
    assert (walk.bars["ES"]["news_impact"] == 0).all()
    assert abs(_imbalance_vs_next_return(walk.bars["ES"])) < 0.02


def test_vix_is_positive_and_follows_realised_vol(market: SyntheticMarket) -> None:
    frame = market.bars["ES"]
    ret, _ = _log_returns(frame)
    daily = pd.DataFrame({"d": trade_dates(frame["ts"]), "r2": ret**2, "vix": frame["vix"]})
    daily = daily.groupby("d").agg(r2=("r2", "sum"), vix=("vix", "mean"))
    assert (frame["vix"] > 0).all()
    assert np.corrcoef(np.sqrt(daily["r2"]), daily["vix"])[0, 1] > 0.5
    assert 10 < frame["vix"].median() < 25


def test_options_and_gamma_levels_are_ordered(market: SyntheticMarket) -> None:
    for frame in market.bars.values():
        assert (frame["iv_put"] > frame["iv_call"]).all()
        assert (frame["iv_1m"] > 0).all()
        assert ((frame["strike"] - frame["close"]).abs() <= 12.5).all()
        day = trade_dates(frame["ts"])
        per_day = frame.groupby(day)[["max_pain", "zero_gamma", "call_wall", "net_gamma"]]
        assert (per_day.max() == per_day.min()).all().all()  # set once per trade date
        first = frame.groupby(day).head(1)
        assert (first["zero_gamma"] < first["open"]).all()
        assert (first["call_wall"] > first["open"]).all()


def test_news_shocks_are_sparse_and_move_price_their_way(market: SyntheticMarket) -> None:
    frame = market.bars["ES"]
    news = frame["news_impact"]
    shocks = news != 0
    weeks = len(set(trade_dates(frame["ts"]))) / 5
    assert 0.5 <= shocks.sum() / weeks <= 10
    assert news.between(-1, 1).all()
    move = np.sign(frame["close"] - frame["open"])[shocks]
    assert (move == np.sign(news[shocks])).mean() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": ["CL"]}, "unknown symbol"),
        ({"symbols": []}, "non-empty"),
        ({"symbols": ["ES", "ES"]}, "once"),
        ({"start": date(2024, 3, 8), "end": date(2024, 3, 4)}, "after end"),
        ({"planted_alpha": 1.0}, "(-1, 1)"),
        ({"planted_alpha": 0.1, "random_walk": True}, "random_walk"),
        ({"start": date(2024, 7, 4), "end": date(2024, 7, 4)}, "no trading day"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "symbols": ["ES"], "start": date(2024, 3, 4), "end": date(2024, 3, 8), "seed": 1,
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=re.escape(message)):
        generate_market(**args)  # type: ignore[arg-type]


def test_progress_bar_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    generate_market(["ES"], date(2024, 3, 4), date(2024, 3, 4), 1, progress=True)
    assert "synthetic market" in capsys.readouterr().err
