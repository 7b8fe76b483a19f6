from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mia.features.batch import build_features
from mia.features.registry import registry
from mia.features.spec import ENGINE_VERSION, FeatureSpec, SpecError, make_spec
from mia.types import REQUIRED_COLUMNS


def test_ohlcv_only_bars_get_every_ohlcv_feature_and_a_report_of_the_rest(market):
    bars = market["ES"][list(REQUIRED_COLUMNS)].iloc[:3000]
    ff = build_features(bars)
    ohlcv = [n for n, d in registry().items() if not d.groups]
    assert list(ff.spec.names) == ohlcv
    groups = {g for d in registry().values() for g in d.groups}
    assert set(ff.report.skipped) == groups
    lines = "\n".join(ff.report.lines())
    assert "19 orderflow features (columns bid_volume" in lines or "orderflow features" in lines


def test_naming_a_feature_whose_group_is_missing_is_refused(market):
    bars = market["ES"][list(REQUIRED_COLUMNS)].iloc[:500]
    with pytest.raises(SpecError, match="needs input group 'orderflow'"):
        build_features(bars, names=["rsi_14", "bid_ask_imbalance"])


def test_cross_features_need_the_other_symbol_at_every_bar(market):
    es, mnq = market["ES"].iloc[:3000], market["MNQ"].iloc[:3000]
    assert "cross_corr_60" in build_features(es, cross=mnq).spec.names
    holed = mnq.drop(index=[100, 101])
    ff = build_features(es, cross=holed)
    assert "cross_corr_60" not in ff.spec.names
    assert "no bar at 2 of 3000" in ff.report.skipped["cross"][0]


def test_kernels_do_not_fill_a_session_gap(market):
    # 30 minutes of bars vanish mid-session: nothing is fabricated, returns span the gap and
    # gap_minutes says so (the rule in docs/features.md)
    bars = market["ES"].iloc[:3000]
    holed = bars.drop(index=range(2000, 2030)).reset_index(drop=True)
    ff = build_features(holed, names=["ret_1", "gap_minutes", "rsi_14"])
    after = ff.to_frame().iloc[2000]
    assert after["gap_minutes"] == 30
    want = holed["close"].iat[2000] / holed["close"].iat[1999] - 1
    assert after["ret_1"] == pytest.approx(want, rel=1e-6)
    assert np.isfinite(ff.matrix[ff.spec.warmup :]).all()


def test_features_before_warmup_are_nan_and_after_are_finite(market):
    ff = build_features(market["ES"].iloc[:6000], names=["rsi_14", "ema_dist_50", "ret_60"])
    for j, w in enumerate(ff.spec.warmups):
        assert np.isnan(ff.matrix[:w, j]).all()
        assert np.isfinite(ff.matrix[w:, j]).all()
    assert ff.matrix.dtype == np.float32


def test_spec_round_trips_through_json_with_a_stable_hash():
    spec = make_spec(["rsi_14", "atr_14", "macd_12_26"])
    again = FeatureSpec.from_json(spec.to_json())
    assert again.names == spec.names
    assert again.warmups == spec.warmups
    assert again.sha256 == spec.sha256
    assert make_spec(["atr_14", "rsi_14", "macd_12_26"]).sha256 != spec.sha256  # order matters


def test_tampered_or_unbuildable_spec_is_refused():
    spec = make_spec(["rsi_14", "atr_14"])
    doc = spec.to_json()
    with pytest.raises(SpecError, match="hash mismatch"):
        FeatureSpec.from_json(doc.replace('"warmup": 374', '"warmup": 10', 1))
    with pytest.raises(SpecError, match="cannot be built"):
        FeatureSpec.from_json(doc.replace('"n": 14', '"n": 15', 1))
    with pytest.raises(SpecError, match="engine"):
        FeatureSpec.from_json(doc.replace(f'"engine": {ENGINE_VERSION}', '"engine": 99'))
    with pytest.raises(SpecError, match="unknown feature"):
        make_spec(["rsi_14", "rsi_15"])


def test_feature_frame_has_ts_symbol_and_named_columns(market):
    ff = build_features(market["ES"].iloc[:500], names=["ret_1", "rsi_14"])
    frame = ff.to_frame()
    assert list(frame.columns) == ["ts", "symbol", "ret_1", "rsi_14"]
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype)


def test_regime_features_are_mia_regime_forward_filter(market, regime):
    from mia.regime import forward_filter, regime_observations
    from mia.regime.filter import HMMParams

    bars = market["ES"].iloc[:6000]
    ff = build_features(
        bars,
        names=["regime_p_trend", "regime_p_range", "regime_p_defensive", "regime_hmm"],
        regime=regime,
    )
    want = forward_filter(
        HMMParams.from_dict(regime), regime_observations(bars["close"].to_numpy())
    )
    w = ff.spec.warmups[0]
    np.testing.assert_allclose(ff.matrix[w:, :3], want[w:], rtol=1e-6, atol=1e-7)  # float32
    np.testing.assert_array_equal(ff.matrix[w:, 3], want[w:].argmax(axis=1))


def test_regime_features_without_fitted_parameters_are_refused(market):
    with pytest.raises(SpecError, match="HMM parameters"):
        make_spec(["regime_p_trend"])
    ff = build_features(market["ES"].iloc[:500], names=None)
    assert "regime" in ff.report.skipped
