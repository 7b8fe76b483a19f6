"""Batch path: the feature machine over a symbol's history (the same kernels as online)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mia.features.inputs import build_inputs
from mia.features.machine import run_columns
from mia.features.ops import N_INPUTS
from mia.features.registry import registry
from mia.features.spec import FeatureSpec, SpecError, make_spec

# Bars per block of the column driver: the registers of a block (n_regs x 250 x 8 bytes, ~1.6 MB
# for the full set) stay in cache while each op streams over its few columns. Loads and stores
# a multiple of 4 KiB apart alias in the CPU's store buffer and stall each other ("4K aliasing"):
# register rows are padded off a 4 KiB stride, and 250 bars (2000 bytes) rather than 256 (2048)
# keeps an input row and the block from meeting at the same offset every other block (measured:
# ATR over 1M bars took 3.6 or 6.2 ms depending on where the process's arrays landed).
_BLOCK = 250
_PAD = 8
_CHUNK = 65_536  # rows per compiled call with a progress bar; state carries over, nothing changes
_PARALLEL_ROWS = 50_000  # below this, a second thread costs more than it saves


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """What a build did and did not do.

    :param built: number of features built.
    :param skipped: group -> (reason, feature names not built).
    :param rows: bars processed.
    :param seconds: wall time of the compiled loop.
    """

    built: int
    skipped: dict[str, tuple[str, tuple[str, ...]]]
    rows: int
    seconds: float

    def lines(self) -> list[str]:
        """:return: a human summary, one line per skipped group."""
        out = [f"built {self.built} features over {self.rows} bars in {self.seconds:.2f} s"]
        for group, (why, names) in self.skipped.items():
            out.append(f"not built: {len(names)} {group} features ({why})")
        return out


@dataclass(frozen=True, kw_only=True)
class FeatureFrame:
    """Features of one symbol: float32 values, NaN before each feature's warm-up.

    :param symbol: the symbol.
    :param ts: bar-close timestamps.
    :param matrix: (T, F) float32.
    :param spec: the spec that built them.
    :param report: the build report.
    """

    symbol: str
    ts: pd.DatetimeIndex
    matrix: np.ndarray
    spec: FeatureSpec
    report: BuildReport

    def to_frame(self) -> pd.DataFrame:
        """:return: ``ts``, ``symbol`` and one float32 column per feature."""
        frame = pd.DataFrame(self.matrix, columns=list(self.spec.names))
        frame.insert(0, "symbol", self.symbol)
        frame.insert(0, "ts", self.ts)
        return frame


def _run_group(
    spec: FeatureSpec, inputs_t: np.ndarray, out: np.ndarray, cols: np.ndarray, bar: Any
) -> None:
    p = spec.program()
    state = p.new_state()
    block = np.empty((p.n_regs - N_INPUTS, _BLOCK + _PAD), dtype=np.float64)
    n_bars = inputs_t.shape[1]
    step = _CHUNK if bar is not None else max(n_bars, 1)
    for s in range(0, n_bars, step):
        e = min(s + step, n_bars)
        # releases the GIL: the two feature groups run on two cores
        run_columns(p.ops, p.fp, state, block, inputs_t, s, e, p.out_regs, out, cols, _BLOCK)
        if bar is not None:
            bar.update(e - s)


def run_program(
    spec: FeatureSpec,
    inputs: np.ndarray,
    progress: bool = False,
    dtype: type = np.float64,
    workers: int | None = None,
) -> np.ndarray:
    """Run a spec's program over an input matrix from a fresh state.

    :param dtype: output dtype; values are computed in float64 either way.
    :param workers: threads; long inputs are split by feature into this many programs run in
        parallel (default: up to 2 cores). Each feature goes through the same kernels whichever
        group it lands in, so the values do not depend on the split.
    :return: (T, F), raw (no warm-up masking): what the online path emits bar by bar.
    """
    # ops read each input as one contiguous row: the transpose of the column-major matrix
    # build_inputs makes (no copy then)
    inputs_t = np.asfortranarray(inputs, dtype=np.float64).T
    out: np.ndarray = np.empty((inputs.shape[0], len(spec.names)), dtype=dtype)
    n = min(workers or min(os.cpu_count() or 1, 2), len(spec.names))
    if workers is None and inputs.shape[0] < _PARALLEL_ROWS:
        n = 1
    groups = [np.arange(k, len(spec.names), n) for k in range(n)]
    specs = (
        [spec]
        if n == 1
        else [make_spec([spec.names[c] for c in cols], regime=spec.regime) for cols in groups]
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=inputs.shape[0] * n, desc="features", unit="bar", leave=False)
    if n == 1:
        _run_group(spec, inputs_t, out, groups[0], bar)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=n) as pool:
            for f in [
                pool.submit(_run_group, sp, inputs_t, out, cols, bar)
                for sp, cols in zip(specs, groups, strict=True)
            ]:
                f.result()
    if bar is not None:
        bar.close()
    return out


def build_features(
    bars: pd.DataFrame,
    *,
    names: Sequence[str] | None = None,
    cross: pd.DataFrame | None = None,
    regime: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> FeatureFrame:
    """Build features for one symbol's bars.

    :param bars: canonical bars of one symbol, ts increasing.
    :param names: features to build (default: every registered feature whose inputs exist).
    :param cross: the other symbol's bars, for cross features.
    :param regime: fitted HMM parameters, for regime features.
    :param progress: show a progress bar.
    :raises SpecError: when a named feature's input group is unavailable.
    """
    inputs = build_inputs(bars, cross)
    groups = set(inputs.groups) | ({"regime"} if regime is not None else set())
    missing = dict(inputs.missing)
    if regime is None:
        missing["regime"] = "no fitted HMM parameters given"
    reg = registry()
    chosen = list(reg) if names is None else list(names)
    skipped: dict[str, tuple[str, tuple[str, ...]]] = {}
    if names is None:
        for g, why in missing.items():
            lost = tuple(n for n in chosen if g in reg[n].groups)
            if lost:
                skipped[g] = (why, lost)
        chosen = [n for n in chosen if set(reg[n].groups) <= groups]
    else:
        bad = [(n, g) for n in chosen if n in reg for g in reg[n].groups if g not in groups]
        if bad:
            n, g = bad[0]
            raise SpecError(
                f"feature {n} needs input group '{g}' ({missing.get(g, 'absent')}); "
                f"{len(bad)} requested feature(s) cannot be built from these bars"
            )
    spec = make_spec(chosen, regime=regime)
    t0 = time.perf_counter()
    values = run_program(spec, inputs.matrix, progress, dtype=np.float32)
    seconds = time.perf_counter() - t0
    for j, w in enumerate(spec.warmups):
        values[:w, j] = np.nan  # not ready: training never sees a feature before its warm-up
    report = BuildReport(built=len(chosen), skipped=skipped, rows=len(values), seconds=seconds)
    return FeatureFrame(
        symbol=str(bars["symbol"].iat[0]),
        ts=inputs.ts,
        matrix=values,
        spec=spec,
        report=report,
    )
