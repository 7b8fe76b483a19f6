"""Write a policy bundle (training side): check every block, probe the graphs, write atomically.

The format and the checks a reader applies are in :mod:`mia.registry.bundle`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mia.config import AGENT_NAMES, EnvConfig, RiskConfig, to_dict
from mia.errors import OperationalError
from mia.features.normalize import Normalizer
from mia.features.spec import FeatureSpec, SpecError
from mia.registry.bundle import (
    _MAPPINGS,
    FORMAT_VERSION,
    FUSED_FILE,
    MANIFEST,
    OBS_INPUT,
    AgentGraph,
    Bundle,
    _agents,
    _outputs,
    content_hash,
    read_bundle,
)
from mia.registry.policy import _Runner
from mia.types import SYMBOLS

if TYPE_CHECKING:
    from mia.regime.filter import HMMParams


def write_bundle(path: str | Path, *, symbol: str, spec: FeatureSpec, normalizer: Normalizer,
                 agents: Sequence[AgentGraph], graph: bytes, ensemble: Mapping[str, Any],
                 hmm: HMMParams | None, drift: Mapping[str, Any] | None, risk: RiskConfig,
                 env: EnvConfig, metrics: Mapping[str, float], data_hash: str, git_sha: str,
                 created_at: datetime, risk_spec: FeatureSpec | None = None,
                 overwrite: bool = False) -> Bundle:
    """Check everything, write the bundle into a temporary directory, then rename it in place.

    :param path: the bundle directory to create.
    :param symbol: the contract traded (:data:`mia.types.SYMBOLS`).
    :param spec: the FeatureSpec the agents were trained on.
    :param normalizer: the fold's normaliser (names = the spec's names).
    :param agents: the exported agents (:func:`mia.registry.onnx_export.export_policy`).
    :param graph: their fused graph (same export), run by the executor.
    :param ensemble: weights, threshold and vote parameters as JSON data (:mod:`mia.ensemble`).
    :param hmm: the regime HMM, or ``None``; must equal the spec's own when both exist.
    :param drift: drift reference quantiles as JSON data, or ``None``.
    :param risk: ``params.risk``. :param env: ``params.env`` (its ``max_contracts`` scales the
        observation's position and the actions).
    :param metrics: flat ``name -> finite float``. :param data_hash: training data hash.
    :param git_sha: code version. :param created_at: tz-aware time of writing (injected).
    :param risk_spec: the raw features the risk gate reads (default: none — the gate then takes
        no new exposure, it needs atr_14); must be buildable by these kernels.
    :param overwrite: replace an existing bundle at ``path`` (else refuse).
    :return: the bundle as :func:`read_bundle` reads it back.
    :raises OperationalError: bad input (named), or graphs that disagree with the manifest.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OperationalError(f"bundle {target} exists; pass overwrite=True to replace it")
    doc, files = _manifest(symbol=symbol, spec=spec, normalizer=normalizer, agents=agents,
                           graph=graph, ensemble=ensemble, hmm=hmm, drift=drift, risk=risk,
                           env=env, metrics=metrics, data_hash=data_hash, git_sha=git_sha,
                           created_at=created_at, risk_spec=risk_spec)
    _check_fused(doc, files)
    _atomic_write(target, json.dumps(doc, indent=1, sort_keys=True).encode(), files, overwrite)
    return read_bundle(target)


def _manifest(*, symbol: str, spec: FeatureSpec, normalizer: Normalizer,
              agents: Sequence[AgentGraph], graph: bytes, ensemble: Mapping[str, Any],
              hmm: HMMParams | None, drift: Mapping[str, Any] | None, risk: RiskConfig,
              env: EnvConfig, metrics: Mapping[str, float], data_hash: str, git_sha: str,
              created_at: datetime,
              risk_spec: FeatureSpec | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    problems = []
    if symbol not in SYMBOLS:
        problems.append(f"symbol {symbol!r} is not one of {', '.join(SYMBOLS)}")
    for label, value in (("data_hash", data_hash), ("git_sha", git_sha)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{label} must be a non-empty string, got {value!r}")
    if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
        problems.append(f"created_at must be a tz-aware datetime, got {created_at!r}")
    if normalizer.names != spec.names:
        problems.append("the normaliser's feature names differ from the spec's; fit it on "
                        "the spec's own matrix")
    names = [a.name for a in agents]
    if not agents or len(set(names)) != len(names) or set(names) - set(AGENT_NAMES):
        problems.append(f"agents {names}: need distinct names from {', '.join(AGENT_NAMES)}")
    obs_size = len(spec.names) + 1
    problems += [f"agent {a.name!r}: observation size {a.obs_size}, the spec makes {obs_size}"
                 for a in agents if a.obs_size != obs_size]
    spec_regime = None if spec.regime is None else _json_data(spec.regime, "spec.regime")
    hmm_doc = None if hmm is None else hmm.to_dict()
    if hmm_doc is not None and spec_regime is not None and hmm_doc != spec_regime:
        problems.append("hmm differs from the HMM the FeatureSpec's regime features use; pass "
                        "the spec's (HMMParams.from_dict(spec.regime))")
    if problems:
        raise OperationalError("bundle: " + "; ".join(problems))
    risk_spec = risk_spec if risk_spec is not None else FeatureSpec(names=(), warmups=(),
                                                                    groups=())
    try:  # what the reader will do: refuse a spec these kernels cannot rebuild
        FeatureSpec.from_json(spec.to_json())
        FeatureSpec.from_json(risk_spec.to_json())
    except SpecError as exc:
        raise SpecError(f"bundle: {exc}") from exc
    files = {FUSED_FILE: bytes(graph), **{f"{a.name}.onnx": bytes(a.onnx) for a in agents}}
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "symbol": symbol,
        "created_at": created_at.astimezone(UTC).isoformat(),
        "git_sha": git_sha,
        "data_hash": data_hash,
        "feature_spec": json.loads(spec.to_json()),
        "normalizer": normalizer.to_dict(),
        "observation": {"input": OBS_INPUT, "size": obs_size,
                        "max_contracts": int(env.max_contracts)},
        "agents": [{"name": a.name, "algorithm": a.algorithm, "action": _MAPPINGS[a.kind],
                    "onnx": _ref(f"{a.name}.onnx", files), "n_quantiles": a.n_quantiles,
                    "outputs": [f"{a.name}/{o}" for o in _outputs(a.kind)]} for a in agents],
        "graph": _ref(FUSED_FILE, files),
        "ensemble": _json_data(ensemble, "ensemble"),
        "hmm": hmm_doc,
        "drift": None if drift is None else _json_data(drift, "drift"),
        "risk": {"risk": to_dict(risk), "env": to_dict(env)},
        "risk_spec": json.loads(risk_spec.to_json()),
        "metrics": _metrics(metrics),
    }
    doc = _json_data(doc, "manifest")
    doc["sha256"] = content_hash(doc)
    return doc, files


def _ref(name: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    return {"file": name, "sha256": hashlib.sha256(files[name]).hexdigest(),
            "bytes": len(files[name])}


def _json_data(value: Any, where: str) -> Any:
    # JSON has no NaN/inf and only string keys; round-tripping here makes the hash written equal
    # the hash the reader recomputes from the parsed file
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OperationalError(f"bundle: {where} is not JSON data ({exc}); pass dicts, lists, "
                               "str, bool, None and finite Python numbers (encode inf/NaN "
                               "yourself, e.g. as null)") from None


def _metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    bad = [k for k, v in metrics.items() if not isinstance(k, str) or isinstance(v, bool)
           or not isinstance(v, int | float) or not np.isfinite(v)]
    if bad:
        raise OperationalError(f"bundle: metrics {bad[:5]} are not 'name: finite number'; "
                               "drop undefined metrics instead of writing NaN")
    return {k: float(v) for k, v in metrics.items()}


def _check_fused(doc: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
    """Probe: the fused graph and each agent's own graph agree on random observations."""
    size = int(doc["observation"]["size"])
    rng = np.random.default_rng(0)
    clip = float(doc["normalizer"]["clip"])
    obs = np.hstack([rng.uniform(-clip, clip, (64, size - 1)),
                     rng.uniform(-1.0, 1.0, (64, 1))]).astype(np.float32)
    entries = _agents(doc["agents"], Path("<new bundle>"))
    fused = _run_all(_Runner(files, entries, size, fused=FUSED_FILE), obs)
    alone = _run_all(_Runner(files, entries, size, fused=None), obs)
    for a in entries:
        n = a.n_quantiles
        want = ({a.outputs[0]: ((64, 1), "float32")} if a.kind == "continuous" else
                {a.outputs[0]: ((64,), "int64"), a.outputs[1]: ((64, n, 3), "float32")})
        got = {k: (alone[k].shape, alone[k].dtype.name) for k in want}
        if got != want or (n is not None) != (a.kind == "discrete"):
            raise OperationalError(f"bundle: agent {a.name!r} outputs {got}, expected {want} "
                                   f"({a.kind} action); export it with onnx_export")
    for key, value in fused.items():
        if value.dtype.kind == "f" and not np.allclose(value, alone[key], rtol=0, atol=1e-6) \
                or value.dtype.kind != "f" and not np.array_equal(value, alone[key]):
            raise OperationalError(f"bundle: the fused graph's {key!r} differs from the agent's "
                                   "own graph; fuse the same exported agents")


def _run_all(runner: _Runner, obs: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(runner.keys, runner.run(obs), strict=True))


def _atomic_write(target: Path, manifest: bytes, files: Mapping[str, bytes],
                  overwrite: bool) -> None:
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        for name, data in {**files, MANIFEST: manifest}.items():  # the manifest last
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        # mkdtemp makes it 0700; the executor and the MLflow server read it as other users
        os.chmod(tmp, 0o755)  # noqa: S103 - read-only for others, as a plain mkdir would be
        if target.exists():
            if not overwrite:
                raise OperationalError(f"bundle {target} appeared while writing; not replaced")
            # directories cannot be replaced in one rename: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.rename(target, old / target.name)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
