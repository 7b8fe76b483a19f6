"""The policy bundle: ``bundle.json`` plus ONNX graphs, written atomically, read with checks.

What the executor loads is exactly what the evaluation scored (design.md section 4). A bundle is
a directory::

    bundle.json        the manifest (format version, FeatureSpec, normaliser, agents, ensemble,
                       HMM, drift reference, risk defaults, metrics, lineage, content hash)
    policy.onnx        one fused graph: input ``obs``, outputs ``<agent>/action`` (and
                       ``qrdqn/quantiles``), so one ``InferenceSession.run`` serves every agent
    <agent>.onnx       each agent's own graph (input ``obs``; outputs ``action``, ``quantiles``)

**Hashes.** Every file is listed with its sha256 and size; the manifest's ``sha256`` is the
sha256 of its canonical JSON (sorted keys, no whitespace, no ``sha256`` field), so the file
hashes are covered too. This detects an incomplete copy or an edited file; it is not a signature
(anyone can recompute it), access control belongs to the registry.

**Reading** (:func:`read_bundle`) checks, in order, and refuses with an :class:`OperationalError`
naming what is wrong: the manifest exists and is strict JSON; the format version is known; its
keys are complete; the content hash; each listed file is present with its size and sha256, and
no unlisted file is there; the FeatureSpec is buildable by these kernels
(:class:`~mia.features.spec.SpecError`); the normaliser matches the spec. Only JSON and ONNX are
read: no pickle, no torch, no SB3 (``docs/bundle.md``; import-linter holds the imports).

**Writing** is :func:`mia.registry.bundle_writer.write_bundle` (training side); **acting** is
:class:`mia.registry.policy.Policy`: raw feature row -> normaliser -> observation with the
current position -> the fused graph -> one :class:`AgentOutput` per agent. The vote belongs to
:mod:`mia.ensemble`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import numpy as np

from mia.errors import OperationalError
from mia.features.normalize import Normalizer
from mia.features.spec import FeatureSpec, SpecError

if TYPE_CHECKING:
    pass

FORMAT_VERSION: Final[int] = 1
MANIFEST: Final[str] = "bundle.json"
FUSED_FILE: Final[str] = "policy.onnx"
OBS_INPUT: Final[str] = "obs"
ACTION: Final[str] = "action"
QUANTILES: Final[str] = "quantiles"

ActionKind = Literal["continuous", "discrete"]
# The env's action mappings (mia.envs.trading_env), the only ones this engine acts on.
CONTINUOUS_ACTION: Final[dict[str, Any]] = {
    "kind": "continuous", "low": -1.0, "high": 1.0, "unit": "fraction of max_contracts",
    "rounding": "half_even"}
DISCRETE_ACTION: Final[dict[str, Any]] = {
    "kind": "discrete", "levels": {"0": "short", "1": "flat", "2": "long"},
    "fractions": {"0": -1.0, "1": 0.0, "2": 1.0}}
_MAPPINGS: Final[dict[str, dict[str, Any]]] = {"continuous": CONTINUOUS_ACTION,
                                               "discrete": DISCRETE_ACTION}
_FRACTIONS: Final[tuple[float, ...]] = (-1.0, 0.0, 1.0)  # discrete index -> target fraction
_KEYS: Final[frozenset[str]] = frozenset({
    "format_version", "symbol", "created_at", "git_sha", "data_hash", "feature_spec",
    "normalizer", "observation", "agents", "graph", "ensemble", "hmm", "drift", "risk",
    "risk_spec", "metrics", "sha256"})


class AgentGraph(NamedTuple):
    """One agent's exported deterministic policy (:func:`mia.registry.onnx_export.export_agent`).

    :param name: the agent (``params.yaml: agents`` key).
    :param algorithm: the algorithm's name, e.g. ``SAC``.
    :param kind: ``continuous`` (output ``action`` (B, 1) float32 in [-1, 1]) or ``discrete``
        (``action`` (B,) int64 in {0, 1, 2} and ``quantiles`` (B, n_quantiles, 3) float32).
    :param obs_size: observation length F + 1.
    :param n_quantiles: QR-DQN's quantiles per action, ``None`` for continuous agents.
    :param onnx: the serialised ONNX model.
    """

    name: str
    algorithm: str
    kind: ActionKind
    obs_size: int
    n_quantiles: int | None
    onnx: bytes


class FileRef(NamedTuple):
    """A file of the bundle: name inside the bundle directory, sha256 (hex), size in bytes."""

    file: str
    sha256: str
    bytes: int


class AgentEntry(NamedTuple):
    """One agent as the manifest lists it.

    :param name: the agent. :param algorithm: its algorithm. :param kind: its action kind.
    :param onnx: its own graph. :param n_quantiles: QR-DQN's quantiles, else ``None``.
    :param outputs: its outputs' names in the fused graph (``<name>/action`` first).
    """

    name: str
    algorithm: str
    kind: ActionKind
    onnx: FileRef
    n_quantiles: int | None
    outputs: tuple[str, ...]


class AgentOutput(NamedTuple):
    """One agent's decision on one observation.

    :param name: the agent.
    :param fraction: target position as a share of ``max_contracts`` in [-1, 1]: the
        continuous action itself, or -1 / 0 / 1 for short / flat / long.
    :param target: target contracts as the training env maps the action (continuous:
        ``round(fraction * max_contracts)`` half to even; discrete: ``fraction * max_contracts``).
    :param action: the discrete action (0 short, 1 flat, 2 long); ``None`` when continuous.
    :param quantiles: QR-DQN's (n_quantiles, 3) return quantiles per action, else ``None``.
    """

    name: str
    fraction: float
    target: int
    action: int | None
    quantiles: np.ndarray | None


class AgentBatch(NamedTuple):
    """One agent's decisions on many observations (fields as :class:`AgentOutput`, per row):
    ``fraction`` (T,) float64, ``target`` (T,) int64, ``action`` (T,) int64 or ``None``,
    ``quantiles`` (T, n_quantiles, 3) float32 or ``None``."""

    name: str
    fraction: np.ndarray
    target: np.ndarray
    action: np.ndarray | None
    quantiles: np.ndarray | None


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A verified bundle (:func:`read_bundle`); the manifest's blocks, typed where MIA reads them.

    :param path: the bundle directory. :param sha256: the manifest's content hash.
    :param symbol: the contract traded. :param created_at: when it was written (UTC).
    :param git_sha: code version. :param data_hash: hash of the training data.
    :param spec: the FeatureSpec. :param normalizer: its normaliser.
    :param max_contracts: the env's position limit the observation and actions are scaled by.
    :param agents: the agents, in manifest order. :param graph: the fused graph file.
    :param ensemble: the ensemble block, as written (:mod:`mia.ensemble` reads it).
    :param hmm: ``HMMParams.to_dict()`` or ``None`` (``HMMParams.from_dict`` rebuilds it).
    :param drift: drift reference (opaque to the bundle) or ``None``.
    :param risk: ``{"risk": params.risk, "env": params.env}`` as dicts.
    :param risk_spec: the raw features the risk gate reads (:data:`mia.risk.RISK_FEATURES` that
        the data could build), built beside the model's features by the same kernels.
    :param metrics: flat metrics. :param files: the verified bytes of every listed file.
    """

    path: Path
    sha256: str
    symbol: str
    created_at: datetime
    git_sha: str
    data_hash: str
    spec: FeatureSpec
    normalizer: Normalizer
    max_contracts: int
    agents: tuple[AgentEntry, ...]
    graph: FileRef
    ensemble: Mapping[str, Any]
    hmm: Mapping[str, Any] | None
    drift: Mapping[str, Any] | None
    risk: Mapping[str, Any]
    risk_spec: FeatureSpec
    metrics: Mapping[str, float]
    files: Mapping[str, bytes] = field(repr=False)

    @property
    def obs_size(self) -> int:
        """:return: observation length F + 1."""
        return len(self.spec.names) + 1


def _outputs(kind: ActionKind) -> tuple[str, ...]:
    return (ACTION,) if kind == "continuous" else (ACTION, QUANTILES)


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """:param doc: JSON data. :return: its canonical bytes (sorted keys, no spaces, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def content_hash(doc: Mapping[str, Any]) -> str:
    """:param doc: a manifest. :return: sha256 of its canonical JSON without ``sha256``."""
    return hashlib.sha256(canonical_json({k: v for k, v in doc.items() if k != "sha256"})
                          ).hexdigest()


def read_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle (the checks are listed in the module docstring).

    :param path: the bundle directory.
    :return: the verified bundle, with the bytes of its graphs.
    :raises OperationalError: an incomplete, tampered or unknown-format bundle, naming what.
    :raises SpecError: the FeatureSpec cannot be built by these kernels.
    """
    root = Path(path)
    where = f"bundle {root}"
    if not (root / MANIFEST).is_file():
        raise OperationalError(f"{where}: no {MANIFEST}; not a bundle, or an incomplete copy")
    doc = _parse((root / MANIFEST).read_bytes(), where)
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise OperationalError(f"{where}: format version {version!r} is unknown to this MIA "
                               f"(it reads {FORMAT_VERSION}); use the MIA version that wrote it")
    if set(doc) != _KEYS:
        raise OperationalError(f"{where}: {MANIFEST} lacks {sorted(_KEYS - set(doc))} and has "
                               f"unknown {sorted(set(doc) - _KEYS)}; rebuild the bundle")
    if doc["sha256"] != content_hash(doc):
        raise OperationalError(f"{where}: {MANIFEST} was altered after it was written (content "
                               f"hash {content_hash(doc)[:12]}... != recorded "
                               f"{str(doc['sha256'])[:12]}...); re-download or rebuild it")
    try:
        agents = _agents(doc["agents"], root)
        graph = FileRef(**doc["graph"])
        files = _verified_files(root, (graph, *(a.onnx for a in agents)))
        spec = FeatureSpec.from_json(json.dumps(doc["feature_spec"]))
        risk_spec = FeatureSpec.from_json(json.dumps(doc["risk_spec"]))
        normalizer = Normalizer.from_dict(doc["normalizer"])
        obs = doc["observation"]
        created = datetime.fromisoformat(doc["created_at"])
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise OperationalError(f"{where}: malformed {MANIFEST} ({exc!r}); rebuild it") from None
    limit = obs.get("max_contracts") if isinstance(obs, dict) else None
    if normalizer.names != spec.names or obs != {"input": OBS_INPUT, "size": len(spec.names) + 1,
                                                 "max_contracts": limit} \
            or not isinstance(limit, int) or limit < 1:
        raise OperationalError(f"{where}: the normaliser or observation block ({obs}) does not "
                               "match the FeatureSpec; rebuild the bundle")
    return Bundle(path=root, sha256=doc["sha256"], symbol=doc["symbol"], created_at=created,
                  git_sha=doc["git_sha"], data_hash=doc["data_hash"], spec=spec,
                  normalizer=normalizer, max_contracts=int(obs["max_contracts"]), agents=agents,
                  graph=graph, ensemble=doc["ensemble"], hmm=doc["hmm"], drift=doc["drift"],
                  risk=doc["risk"], risk_spec=risk_spec, metrics=doc["metrics"], files=files)


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            raise ValueError("a key is repeated")
        return out

    def constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        doc = json.loads(raw, object_pairs_hook=pairs, parse_constant=constant)
    except ValueError as exc:
        raise OperationalError(f"{where}: {MANIFEST} is not valid JSON ({exc}); the file is "
                               "damaged, re-download or rebuild the bundle") from None
    if not isinstance(doc, dict):
        raise OperationalError(f"{where}: {MANIFEST} is not a JSON object")
    return doc


def _agents(entries: list[dict[str, Any]], root: Path) -> tuple[AgentEntry, ...]:
    out = []
    for e in entries:
        kind = e["action"].get("kind")
        if kind not in _MAPPINGS or e["action"] != _MAPPINGS[kind]:
            raise OperationalError(f"bundle {root}: agent {e['name']!r} has an action mapping "
                                   f"this MIA does not implement: {e['action']}")
        outputs = tuple(f"{e['name']}/{o}" for o in _outputs(kind))
        if tuple(e["outputs"]) != outputs:
            raise OperationalError(f"bundle {root}: agent {e['name']!r} lists outputs "
                                   f"{e['outputs']}, expected {list(outputs)}")
        out.append(AgentEntry(name=e["name"], algorithm=e["algorithm"], kind=kind,
                              onnx=FileRef(**e["onnx"]), n_quantiles=e["n_quantiles"],
                              outputs=outputs))
    return tuple(out)


def _verified_files(root: Path, refs: Sequence[FileRef]) -> dict[str, bytes]:
    present = {p.name for p in root.iterdir()} - {MANIFEST}
    listed = {r.file for r in refs}
    if present - listed:
        raise OperationalError(f"bundle {root}: unlisted files {sorted(present - listed)}; a "
                               "bundle holds only bundle.json and its listed ONNX graphs")
    files = {}
    for ref in refs:
        if ref.file not in present:
            raise OperationalError(f"bundle {root}: listed file {ref.file!r} is missing "
                                   "(incomplete bundle); re-download or rebuild it")
        data = (root / ref.file).read_bytes()  # hashed and later parsed from the same bytes
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != ref.bytes or digest != ref.sha256:
            raise OperationalError(f"bundle {root}: {ref.file!r} does not match its recorded "
                                   f"sha256 ({digest[:12]}... != {ref.sha256[:12]}..., "
                                   f"{len(data)} vs {ref.bytes} bytes); the file was altered")
        files[ref.file] = data
    return files
