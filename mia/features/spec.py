"""FeatureSpec: the ordered feature list a model was trained on, and how to rebuild it.

Design.md section 4: ordered names + parameters + input groups + warm-up bars + content hash.
A spec is JSON; loading one checks every name against the registry with the same parameters, so
the executor refuses a bundle whose features its kernels cannot build.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mia.errors import OperationalError
from mia.features.dsl import DSL
from mia.features.program import Program, ProgramBuilder
from mia.features.registry import FeatureDef, registry

ENGINE_VERSION: Final[int] = 2  # bump when a kernel's arithmetic changes (2: EMA as one fma)


class SpecError(OperationalError):
    """A FeatureSpec cannot be built by this version of the kernels."""


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """An ordered, hashed list of features.

    :param names: feature names in model-input order.
    :param warmups: warm-up bars of each feature (same order).
    :param groups: input groups the features need.
    :param regime: fitted HMM parameters (``HMMParams.to_dict()``) when regime features are in.
    """

    names: tuple[str, ...]
    warmups: tuple[int, ...]
    groups: tuple[str, ...]
    regime: Mapping[str, Any] | None = None
    engine: int = ENGINE_VERSION
    _program: list[Program] = field(default_factory=list, repr=False, compare=False)

    @property
    def warmup(self) -> int:
        """:return: bars after which every feature is ready."""
        return max(self.warmups, default=0)

    @property
    def sha256(self) -> str:
        """:return: content hash over names, families, parameters, groups, regime and engine."""
        return _digest(self._payload())

    def _payload(self) -> dict[str, Any]:
        reg = registry()
        return {
            "engine": self.engine,
            "features": [
                {
                    "name": n,
                    "family": reg[n].family if n in reg else None,
                    "params": reg[n].params if n in reg else None,
                    "warmup": w,
                }
                for n, w in zip(self.names, self.warmups, strict=True)
            ],
            "groups": list(self.groups),
            "regime": dict(self.regime) if self.regime is not None else None,
        }

    def program(self) -> Program:
        """:return: the compiled program computing the features in order (built once)."""
        if not self._program:
            self._program.append(_compile([registry()[n] for n in self.names], self.regime)[0])
        return self._program[0]

    def to_json(self) -> str:
        """:return: the spec as JSON, with its hash."""
        return json.dumps({**self._payload(), "sha256": self.sha256}, indent=1)

    @staticmethod
    def from_json(text: str) -> FeatureSpec:
        """Load and check a spec.

        :raises SpecError: unknown feature, changed parameters, other engine version, bad hash.
        """
        try:
            doc = json.loads(text)
            feats = doc["features"]
            names = tuple(str(f["name"]) for f in feats)
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                f"feature spec is not valid JSON of the expected shape ({exc})"
            ) from exc
        if doc.get("engine") != ENGINE_VERSION:
            raise SpecError(
                f"feature spec was built by engine {doc.get('engine')}, these kernels "
                f"are engine {ENGINE_VERSION}; retrain or use a matching MIA version"
            )
        reg = registry()
        for f in feats:
            d = reg.get(f["name"])
            if d is None or d.family != f["family"] or d.params != f["params"]:
                raise SpecError(
                    f"feature {f['name']!r} cannot be built by these kernels "
                    "(unknown name or changed parameters); retrain the model"
                )
        payload = {k: v for k, v in doc.items() if k != "sha256"}
        if doc.get("sha256") != _digest(payload):
            raise SpecError("feature spec hash mismatch: the file was altered after it was written")
        spec = make_spec(names, regime=doc.get("regime"))
        if spec._payload() != payload:
            raise SpecError(
                "feature spec does not match what these kernels build (warm-ups or "
                "groups differ); retrain the model with this MIA version"
            )
        return spec


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _compile(
    defs: Sequence[FeatureDef], regime: Mapping[str, Any] | None
) -> tuple[Program, list[int]]:
    b = ProgramBuilder()
    d = DSL(b, regime=regime)
    outs = [fd.emit(d) for fd in defs]
    return b.compile(outs), [b.warmup(r) for r in outs]


def make_spec(names: Sequence[str], regime: Mapping[str, Any] | None = None) -> FeatureSpec:
    """A spec for ``names`` in that order.

    :param names: registered feature names.
    :param regime: HMM parameters, required when a regime feature is named.
    :raises SpecError: for an unknown or duplicated name, or regime features without parameters.
    """
    reg = registry()
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise SpecError(
            f"unknown feature(s) {', '.join(unknown[:10])}; 'mia features list' shows the registry"
        )
    if len(set(names)) != len(names):
        raise SpecError("a feature is named twice in the spec")
    defs = [reg[n] for n in names]
    groups = sorted({g for fd in defs for g in fd.groups})
    if "regime" in groups and regime is None:
        raise SpecError("regime features need fitted HMM parameters (fit_regimes first)")
    program, warmups = _compile(defs, regime)
    spec = FeatureSpec(
        names=tuple(names), warmups=tuple(warmups), groups=tuple(groups), regime=regime
    )
    spec._program.append(program)
    return spec
