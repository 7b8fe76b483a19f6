"""Act with a verified bundle: ONNX Runtime over the fused graph, no torch, no pickle.

Raw feature row -> :class:`~mia.features.normalize.Normalizer` ->
:func:`~mia.features.normalize.observation` with the current position -> the fused graph ->
one :class:`~mia.registry.bundle.AgentOutput` per agent. The vote belongs to :mod:`mia.ensemble`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from mia.errors import OperationalError
from mia.features.normalize import first_non_finite, position_value
from mia.registry.bundle import (
    _FRACTIONS,
    OBS_INPUT,
    AgentBatch,
    AgentEntry,
    AgentOutput,
    Bundle,
    _outputs,
    read_bundle,
)


class _Runner:
    """ONNX Runtime sessions of a bundle's agents: the fused graph (``fused`` names its file), or
    one session per agent (``fused=None``).

    :meth:`step` (one observation) runs through I/O bindings to buffers allocated once: ORT
    writes into them in place, which saves the per-call conversion and allocation of
    ``InferenceSession.run`` (p50 27 us instead of 32 us, tests/benchmarks/bench_bundle.py).
    The p99 (~2x the p50) is the 250 Hz kernel tick landing in ~1% of back-to-back calls, not
    ORT: a fixed numpy loop of the same length shows the same ratio, and no session option
    (spinning, arena, memory pattern, a second thread) moves it beyond run-to-run noise.
    """

    def __init__(self, files: Mapping[str, bytes], agents: Sequence[AgentEntry], size: int, *,
                 fused: str | None, threads: int = 1) -> None:
        import onnxruntime as ort  # imported when acting only: reading a manifest needs none

        opts = ort.SessionOptions()
        # one thread: 5 small MLPs take ~30 us; a thread pool's wake-up would cost more
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        groups = ([(fused, [o for a in agents for o in a.outputs])] if fused else
                  [(a.onnx.file, list(_outputs(a.kind))) for a in agents])
        self.keys = tuple(o for a in agents for o in a.outputs)
        self._runs: list[tuple[Any, list[str]]] = []
        self._bound: list[tuple[Any, Any]] = []
        self._obs = np.zeros((1, size), dtype=np.float32)  # step()'s input, bound once
        self._outs: list[np.ndarray] = []  # step()'s outputs, in keys order
        self._values: list[Any] = []  # ORT views of _outs, kept alive with them
        for file, outputs in groups:
            try:
                session = ort.InferenceSession(files[file], opts,
                                               providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
                raise OperationalError(f"bundle: ONNX Runtime cannot load {file} ({exc})") from None
            meta = {o.name: o for o in session.get_outputs()}
            inputs = [(i.name, i.shape[1:]) for i in session.get_inputs()]
            if inputs != [(OBS_INPUT, [size])] or set(outputs) - set(meta):
                raise OperationalError(f"bundle: {file} maps {inputs} -> {sorted(meta)}; "
                                       f"expected {OBS_INPUT!r} of size {size} -> {outputs}")
            binding = session.io_binding()
            binding.bind_cpu_input(OBS_INPUT, self._obs)
            for name in outputs:
                out = np.empty([1, *meta[name].shape[1:]], dtype=_DTYPES[meta[name].type])
                value = ort.OrtValue.ortvalue_from_numpy(out)
                binding.bind_ortvalue_output(name, value)
                self._outs.append(out)
                self._values.append(value)
            self._runs.append((session.run, outputs))
            self._bound.append((session.run_with_iobinding, binding))

    def run(self, obs: np.ndarray) -> list[np.ndarray]:
        """:param obs: (B, F + 1) float32. :return: new output arrays, in :attr:`keys` order."""
        return [v for run, names in self._runs for v in run(names, {OBS_INPUT: obs})]

    @property
    def input(self) -> np.ndarray:
        """The bound (F + 1,) input row: write an observation here, then :meth:`run_bound`."""
        row: np.ndarray = self._obs[0]
        return row

    def step(self, obs: np.ndarray) -> list[np.ndarray]:
        """:param obs: one (F + 1,) observation.
        :return: (1, ...) outputs in :attr:`keys` order, overwritten by the next call."""
        self._obs[0] = obs
        return self.run_bound()

    def run_bound(self) -> list[np.ndarray]:
        """Run on what :attr:`input` holds. :return: as :meth:`step`."""
        for run, binding in self._bound:
            run(binding)
        return self._outs


_DTYPES: Final[dict[str, type[np.generic]]] = {"tensor(float)": np.float32,
                                               "tensor(int64)": np.int64}


class Policy:
    """A bundle's agents acting on raw feature rows.

    :param bundle: a verified bundle (:func:`read_bundle`).
    :param fused: run the fused graph (one session run for every agent); ``False`` runs each
        agent's own graph (debugging, parity; same outputs).
    :param threads: ONNX Runtime intra-op threads.

    :meth:`act` reuses bound buffers: use one ``Policy`` per thread.

    :raises OperationalError: a graph ONNX Runtime cannot load or whose inputs/outputs differ
        from the manifest.
    """

    def __init__(self, bundle: Bundle, *, fused: bool = True, threads: int = 1) -> None:
        self.bundle = bundle
        self._norm = bundle.normalizer
        self._max = bundle.max_contracts
        self._runner = _Runner(bundle.files, bundle.agents, bundle.obs_size,
                               fused=bundle.graph.file if fused else None, threads=threads)
        self._agents = bundle.agents
        self._levels = tuple(int(f * self._max) for f in _FRACTIONS)
        # per agent: name, index of its first output in the runner's outputs, continuous?
        starts = np.cumsum([0, *(len(a.outputs) for a in bundle.agents)])
        self._plan = tuple((a.name, int(k), a.kind == "continuous")
                           for a, k in zip(bundle.agents, starts, strict=False))

    @classmethod
    def load(cls, path: str | Path, *, fused: bool = True, threads: int = 1) -> Policy:
        """:param path: a bundle directory. :param fused: see the class.
        :param threads: see the class.
        :return: the policy of the bundle read and verified by :func:`read_bundle`."""
        return cls(read_bundle(path), fused=fused, threads=threads)

    def run(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on ready observations.

        :param obs: (B, F + 1) float32 observations.
        :return: ``"<agent>/action"`` -> (B, 1) float32 or (B,) int64, ``"qrdqn/quantiles"`` ->
            (B, n_quantiles, 3) float32.
        """
        return dict(zip(self._runner.keys, self._runner.run(obs), strict=True))

    def act(self, row: np.ndarray, position: float) -> dict[str, AgentOutput]:
        """Every agent's decision on one bar.

        :param row: (F,) raw features in spec order.
        :param position: signed contracts held now (``|position| <= max_contracts``).
        :return: agent name -> :class:`AgentOutput`, in manifest order.
        :raises OperationalError: wrong length, a NaN/inf feature, a position beyond the limit.
        """
        # normalise straight into the graph's bound input: no intermediate arrays
        obs = self._runner.input
        self._norm.transform_into(row, obs)
        obs[-1] = position_value(position, self._max)
        values = self._runner.run_bound()
        out = {}
        m = self._max
        for name, k, continuous in self._plan:  # ~4 us for five agents, after the run
            if continuous:
                a = values[k].item()  # the float32 action, exactly, as a Python float
                out[name] = AgentOutput(name, a, round(a * m), None, None)
            else:
                i = values[k].item()
                out[name] = AgentOutput(name, _FRACTIONS[i], self._levels[i], i,
                                        values[k + 1][0].copy())  # the buffer is reused
        return out

    def act_batch(self, rows: np.ndarray, positions: np.ndarray) -> dict[str, AgentBatch]:
        """Every agent's decisions on many bars, each with its own position (the backtest).

        :param rows: (T, F) raw features in spec order.
        :param positions: (T,) signed contracts held at each row.
        :return: agent name -> :class:`AgentBatch`; row ``t`` equals ``act(rows[t], positions[t])``.
        :raises OperationalError: as :meth:`act`, naming the first bad row.
        """
        z = self._norm.transform(np.atleast_2d(rows))
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != z.shape[:1]:
            raise OperationalError(f"policy: {z.shape[0]} rows but positions of shape "
                                   f"{pos.shape}; pass one position per row")
        where = first_non_finite(z, self._norm.names)
        if where is not None:
            raise OperationalError(f"policy: {where}; observations must be finite")
        if np.any(np.abs(pos) > self._max):
            t = int(np.argmax(np.abs(pos) > self._max))
            raise OperationalError(f"policy: position {pos[t]} at row {t} is outside the limit "
                                   f"+/-{self._max}")
        obs = np.empty((z.shape[0], z.shape[1] + 1), dtype=np.float32)
        obs[:, :-1] = z
        obs[:, -1] = pos / self._max  # observation(): position / max_contracts
        values = iter(self._runner.run(obs))
        out = {}
        for agent in self._agents:
            action = next(values)
            if agent.kind == "continuous":
                a = action[:, 0].astype(np.float64)
                out[agent.name] = AgentBatch(agent.name, a, np.rint(a * self._max).astype(
                    np.int64), None, None)
            else:
                frac = np.asarray(_FRACTIONS)[action]
                out[agent.name] = AgentBatch(agent.name, frac, np.asarray(self._levels)[action],
                                             action, next(values))
        return out
