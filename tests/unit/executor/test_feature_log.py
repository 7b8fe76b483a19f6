from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import executor.feature_log as feature_log
from executor.feature_log import FeatureLog
from mia.drift.live_log import day_dir, read_live_features, symbol_dir
from mia.errors import OperationalError, StoreError

REPO = Path(__file__).resolve().parents[3]
NAMES = ("rsi_14", "atr_14", "momentum_10")
MIDNIGHT = int(pd.Timestamp("2024-01-03", tz="UTC").value)
MINUTE = 60 * 10**9


def rows(n: int, start_ns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return start_ns + np.arange(n, dtype=np.int64) * MINUTE, rng.normal(size=(n, len(NAMES)))


def test_rows_round_trip_through_the_reader_in_ts_order(tmp_path):
    ts, values = rows(250, MIDNIGHT - 100 * MINUTE)  # spans midnight: two date folders
    with FeatureLog(tmp_path, flush_rows=64) as log:
        chan = log.channel("ES", "7", NAMES)
        for t, v in zip(ts, values, strict=True):
            chan.append(int(t), v)
    got = read_live_features(tmp_path, "ES")
    assert list(got.columns) == ["ts", "symbol", "model_version", *NAMES]
    assert got["ts"].dt.tz is not None
    assert got["ts"].astype("int64").tolist() == ts.tolist()
    np.testing.assert_array_equal(got[list(NAMES)].to_numpy(), values)
    assert set(got["symbol"]) == {"ES"}
    assert set(got["model_version"]) == {"7"}
    days = sorted(p.name for p in symbol_dir(tmp_path, "ES").iterdir())
    assert days == ["date=2024-01-02", "date=2024-01-03"]
    assert log.rows_written == 250
    assert log.rows_dropped == 0


def test_reader_filters_a_time_range_inclusively(tmp_path):
    ts, values = rows(100, MIDNIGHT)
    with FeatureLog(tmp_path, flush_rows=30) as log:
        chan = log.channel("ES", "7", NAMES)
        for t, v in zip(ts, values, strict=True):
            chan.append(int(t), v)
    start = pd.Timestamp(int(ts[10]), tz="UTC").to_pydatetime()
    end = pd.Timestamp(int(ts[19]), tz="UTC").to_pydatetime()
    got = read_live_features(tmp_path, "ES", start, end)
    assert got["ts"].astype("int64").tolist() == ts[10:20].tolist()


def test_reader_of_an_empty_log_returns_an_empty_frame_with_the_base_columns(tmp_path):
    got = read_live_features(tmp_path, "MNQ")
    assert got.empty
    assert list(got.columns) == ["ts", "symbol", "model_version"]


def test_reader_refuses_naive_or_inverted_ranges(tmp_path):
    with pytest.raises(OperationalError, match="naive"):
        read_live_features(tmp_path, "ES", start=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(OperationalError, match="after end"):
        read_live_features(tmp_path, "ES", start=datetime(2024, 1, 2, tzinfo=UTC),
                           end=datetime(2024, 1, 1, tzinfo=UTC))


def test_a_bundle_swap_changes_the_columns_and_the_reader_aligns_them(tmp_path):
    with FeatureLog(tmp_path, flush_rows=8) as log:
        old = log.channel("ES", "7", NAMES)
        old.append(MIDNIGHT, np.array([1.0, 2.0, 3.0]))
        log.flush()
        new = log.channel("ES", "8", ("rsi_14", "vix_es_correlation"))
        new.append(MIDNIGHT + MINUTE, np.array([4.0, 0.5]))
    got = read_live_features(tmp_path, "ES")
    assert got["model_version"].tolist() == ["7", "8"]
    assert got["rsi_14"].tolist() == [1.0, 4.0]
    assert np.isnan(got["vix_es_correlation"].iloc[0])
    assert np.isnan(got["atr_14"].iloc[1])


def test_partial_blocks_are_written_by_the_time_based_flush(tmp_path):
    log = FeatureLog(tmp_path, flush_rows=1000, flush_seconds=0.05)
    try:
        log.channel("ES", "7", NAMES).append(MIDNIGHT, np.zeros(3))
        deadline = time.monotonic() + 10
        while log.files_written == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.files_written == 1
    finally:
        log.close()


def test_memory_is_bounded_when_the_disk_fails_and_blocks_are_dropped_with_a_count(
        tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(feature_log.os, "replace", disk_full)
    log = FeatureLog(tmp_path, flush_rows=10, flush_seconds=3600, max_pending_rows=30)
    chan = log.channel("ES", "7", NAMES)
    ts, values = rows(100, MIDNIGHT)
    for t, v in zip(ts, values, strict=True):
        chan.append(int(t), v)
    log.flush()
    assert log._pending_rows <= 30
    assert log.rows_dropped >= 70 - 10
    assert log.write_errors >= 1
    assert read_live_features(tmp_path, "ES").empty
    assert not list(symbol_dir(tmp_path, "ES").rglob("*.tmp"))  # a failed write cleans up
    monkeypatch.undo()  # the disk recovers: the kept blocks are written at the next flush
    log.close()
    assert log.rows_written == 30
    assert len(read_live_features(tmp_path, "ES")) == 30


def test_a_row_of_the_wrong_width_is_refused(tmp_path):
    with FeatureLog(tmp_path) as log:
        chan = log.channel("ES", "7", NAMES)
        with pytest.raises(OperationalError, match="3 features"):
            chan.append(MIDNIGHT, np.zeros(4))
        with pytest.raises(OperationalError, match="reserved"):
            log.channel("ES", "7", ("ts", "rsi_14"))


def test_reader_ignores_temp_files_and_a_new_writer_sweeps_those_of_dead_processes(tmp_path):
    folder = day_dir(tmp_path, "ES", pd.Timestamp(MIDNIGHT, tz="UTC").date())
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = folder / f".part-{MIDNIGHT:019d}-{dead.stdout.strip()}-000001.parquet.tmp"
    stale.write_bytes(b"PAR1 half a file")
    assert read_live_features(tmp_path, "ES").empty
    with FeatureLog(tmp_path) as log:
        log.channel("ES", "7", NAMES)
    assert not stale.exists()


def test_a_corrupt_part_file_is_named_in_the_error(tmp_path):
    folder = day_dir(tmp_path, "ES", pd.Timestamp(MIDNIGHT, tz="UTC").date())
    folder.mkdir(parents=True)
    (folder / "part-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreError, match="part-x.parquet"):
        read_live_features(tmp_path, "ES")


WRITER = """
import sys, numpy as np
from executor.feature_log import FeatureLog
log = FeatureLog(sys.argv[1], flush_rows=37, flush_seconds=0.01)
chan = log.channel("ES", "7", ("a", "b", "c"))
i = 0
while True:
    chan.append(1_704_240_000_000_000_000 + i * 60_000_000_000, np.full(3, float(i)))
    i += 1
"""


@pytest.mark.slow
def test_kill_9_mid_flush_leaves_only_complete_files(tmp_path):
    rng = np.random.default_rng(7)
    home = tmp_path / "home"
    for _ in range(3):  # three kills at random points, all into the same log
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(home)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        want = len(list(home.rglob("part-*.parquet"))) + 5
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(home.rglob("part-*.parquet"))) < want:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    parts = sorted(home.rglob("part-*.parquet"))
    assert len(parts) >= 15
    for part in parts:  # every visible file is whole: a torn one would not parse
        table = pq.read_table(part)
        assert table.num_rows > 0
        assert table.column_names == ["ts", "symbol", "model_version", "a", "b", "c"]
    got = read_live_features(home, "ES")
    # each run restarts at i = 0 with the same rows: the reader keeps one copy of each
    i = (got["ts"].astype("int64") - 1_704_240_000_000_000_000) // 60_000_000_000
    assert (got["a"] == i.astype(float)).all()
    assert got["ts"].is_monotonic_increasing
    assert got["ts"].is_unique


# --- the loop's view: one channel per production bundle ----------------------------------------

def _slot(version: str, names: tuple[str, ...], drift: object = None) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(version=version, bundle=SimpleNamespace(
        spec=SimpleNamespace(names=names), drift=drift))


def test_a_production_swap_opens_the_new_bundles_channel_and_keeps_the_old_rows(tmp_path):
    from executor.feature_log import SlotFeatures

    slots = {"production": _slot("7", NAMES)}
    opened = []
    with FeatureLog(tmp_path, flush_rows=100, flush_seconds=3600) as log:
        feats = SlotFeatures(log, "ES", lambda: slots["production"],
                             on_bundle=lambda *a: opened.append(a))
        feats.append(MIDNIGHT, np.array([1.0, 2.0, 3.0]))
        feats.append(MIDNIGHT + MINUTE, np.array([1.5, 2.5, 3.5]))
        slots["production"] = _slot("8", ("rsi_14", "vix_es_correlation"), drift={"x": 1})
        feats.append(MIDNIGHT + 2 * MINUTE, np.array([4.0, 0.5]))  # another width: no error
        assert len(log._channels) == 1  # the old channel handed its rows over and left
    got = read_live_features(tmp_path, "ES")
    assert got["model_version"].tolist() == ["7", "7", "8"]
    assert got["rsi_14"].tolist() == [1.0, 1.5, 4.0]
    assert [(v, n) for v, n, _ in opened] == [("7", NAMES),
                                              ("8", ("rsi_14", "vix_es_correlation"))]
    assert opened[1][2] == {"x": 1}


def test_each_written_block_goes_to_the_rows_listener_and_its_failure_is_only_logged(
        tmp_path, caplog):
    seen = []

    def listener(symbol, version, names, ts, values):
        seen.append((symbol, version, names, ts.tolist(), values.shape))
        raise RuntimeError("listener bug")

    with caplog.at_level("WARNING", logger="executor.feature_log"):
        with FeatureLog(tmp_path, flush_rows=2, on_rows=listener) as log:
            chan = log.channel("ES", "7", NAMES)
            ts, values = rows(3, MIDNIGHT)
            for t, v in zip(ts, values, strict=True):
                chan.append(int(t), v)
    assert seen == [("ES", "7", NAMES, ts[:2].tolist(), (2, 3)),
                    ("ES", "7", NAMES, ts[2:].tolist(), (1, 3))]
    assert log.rows_written == 3  # the listener's error did not stop the writer
    assert "rows listener failed" in caplog.text


# --- the online PSI of the logged rows ---------------------------------------------------------

def _reference(values: np.ndarray, names: tuple[str, ...]) -> dict:
    from mia.drift.psi import bin_proportions, reference_quantiles

    edges = reference_quantiles(values, 10)
    return {"features": list(names),
            "edges": [[float(e) if np.isfinite(e) else None for e in row] for row in edges],
            "expected": bin_proportions(values, edges).tolist(), "bars": len(values)}


def _psi(metrics) -> dict[str, float]:
    from tests.unit.executor.test_metrics import samples

    return {k[1][0][1]: v for k, v in samples(metrics).items() if k[0] == "mia_psi"}


def test_psi_of_the_top_features_is_small_in_distribution_and_large_after_a_shift():
    from executor.feature_log import DriftGauges
    from executor.metrics import ExecutorMetrics

    rng = np.random.default_rng(5)
    ranked = ("momentum_10", "rsi_14")  # the reference's rank order; atr_14 is not in it
    m = ExecutorMetrics()
    gauges = DriftGauges(m, top=2, window=400, min_bars=200)
    assert gauges.use("7", NAMES, _reference(rng.normal(size=(5000, 2)), ranked))
    assert gauges.features == ranked
    same = rng.normal(size=(150, 3))
    gauges.observe("ES", "7", NAMES, np.arange(150), same)
    assert _psi(m) == {}  # 150 rows: below min_bars
    gauges.observe("ES", "7", NAMES, np.arange(150), rng.normal(size=(150, 3)))
    calm = _psi(m)
    assert set(calm) == set(ranked)
    assert max(calm.values()) < 0.1
    shifted = rng.normal(size=(400, 3))
    shifted[:, 2] += 1.5  # momentum_10 drifts, rsi_14 does not
    gauges.observe("ES", "7", NAMES, np.arange(400), shifted)
    drift = _psi(m)
    assert drift["momentum_10"] > 0.2 > drift["rsi_14"]


def test_psi_ignores_other_bundles_rows_and_a_swap_clears_the_old_gauges():
    from executor.feature_log import DriftGauges
    from executor.metrics import ExecutorMetrics

    rng = np.random.default_rng(6)
    m = ExecutorMetrics()
    gauges = DriftGauges(m, top=3, window=100, min_bars=50)
    gauges.use("7", NAMES, _reference(rng.normal(size=(2000, 3)), NAMES))
    gauges.observe("ES", "6", NAMES, np.arange(80), rng.normal(size=(80, 3)))  # late, old
    assert _psi(m) == {}
    gauges.observe("ES", "7", NAMES, np.arange(80), rng.normal(size=(80, 3)))
    assert set(_psi(m)) == set(NAMES)
    assert not gauges.use("8", NAMES, None)  # no reference in the new bundle
    assert _psi(m) == {}
    gauges.observe("ES", "8", NAMES, np.arange(80), rng.normal(size=(80, 3)))
    assert _psi(m) == {}


def test_an_unusable_drift_reference_leaves_psi_empty_with_a_warning(caplog):
    from executor.feature_log import DriftGauges
    from executor.metrics import ExecutorMetrics

    gauges = DriftGauges(ExecutorMetrics())
    with caplog.at_level("WARNING", logger="executor.feature_log"):
        assert not gauges.use("7", NAMES, {"features": ["not_built"], "edges": [[0.0]],
                                           "expected": [[0.5, 0.5, 0.0]]})
        assert not gauges.use("8", NAMES, {"features": list(NAMES)})  # no edges
    assert "none of its 1 features" in caplog.text
    assert "KeyError" in caplog.text
    with pytest.raises(OperationalError, match="min_bars"):
        DriftGauges(ExecutorMetrics(), window=10, min_bars=20)
