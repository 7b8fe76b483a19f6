"""Picking the risk features out of feature rows, and mia.risk's import budget."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np

from mia.risk import RISK_FEATURES, FeatureTap, RiskFeatures


def test_tap_reads_named_columns_and_marks_absent_ones_nan():
    names = ["ret_1", "adx_14", "atr_14", "rsi_14", "iv_skew"]
    tap = FeatureTap(names)
    assert set(tap.absent) == set(RISK_FEATURES) - {"adx_14", "atr_14", "iv_skew"}
    f = tap.read(np.array([0.1, 31.0, 4.25, 55.0, 0.03], dtype=np.float32), cvar_loss=0.05)
    assert (f.adx_14, f.atr_14, f.cvar_loss) == (31.0, 4.25, 0.05)
    assert f.iv_skew == np.float32(0.03)
    assert all(math.isnan(getattr(f, n)) for n in tap.absent)
    assert type(f.atr_14) is float  # plain floats: the rules never touch numpy scalars


def test_tap_on_a_full_spec_order_and_a_mapping_agree():
    names = [f"x{i}" for i in range(100)] + list(RISK_FEATURES)[::-1]
    row = np.arange(len(names), dtype=np.float64)
    f = FeatureTap(names).read(row)
    mapped = RiskFeatures.from_mapping(dict(zip(names, row.tolist(), strict=True)))
    assert f[:-1] == mapped[:-1]
    assert math.isnan(f.cvar_loss)
    assert math.isnan(mapped.cvar_loss)
    assert f.atr_14 == float(names.index("atr_14"))


def test_importing_mia_risk_loads_no_heavy_stack():
    code = ("import sys, mia.risk; print([m for m in ('pandas', 'torch', 'mlflow', 'gymnasium', "
            "'stable_baselines3', 'sklearn', 'numba') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
