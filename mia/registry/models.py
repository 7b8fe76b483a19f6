"""The MLflow model ``mia-<SYMBOL>``: register a logged bundle, store the gate's verdict, status.

A model version is whatever MLflow model a run logged (``mia.registry.pyfunc`` logs the policy
bundle); its tags carry what the gate and a post-mortem need: namespaced metrics (``wf/sharpe``,
``holdout/deflated_sharpe`` …), lineage (data hash, git sha, run, model name) and the gate's
verdict. Metric and lineage tags describe what was evaluated and never change once written;
the verdict may be re-applied. Alias moves live in :mod:`mia.registry.aliases`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from mia.clock import Clock, SystemClock
from mia.config import Config
from mia.errors import OperationalError
from mia.registry import audit
from mia.registry.aliases import set_canary
from mia.registry.audit import ALIASES, AuditEntry, Plan
from mia.registry.gate import GATE_NAMESPACE, GateMetrics, GateVerdict
from mia.registry.handle import ModelHandle, MoveResult, model_name
from mia.registry.tracking import mlflow_errors
from mia.types import Symbol

if TYPE_CHECKING:
    from mlflow import MlflowClient

LINEAGE = ("lineage/data_hash", "lineage/git_sha", "lineage/run_id", "lineage/model")
GATE_TAGS = ("gate/passed", "gate/reference", "gate/reasons", "gate/checks")
_RESERVED = ("audit/", "gate/", "lineage/", "mia/", audit.TAG_SHARE, audit.TAG_ISOLATED)
_SUMMARY = ("sharpe", "deflated_sharpe", "max_drawdown", "cvar_95")


def register(cfg: Config, run_id: str, artifact_path: str, symbol: str, *,
             metrics: Mapping[str, float], data_hash: str | None = None,
             git_sha: str | None = None,
             gate_verdict: GateVerdict | None = None, tags: Mapping[str, str] | None = None,
             client: MlflowClient | None = None) -> str:
    """Register the model a run logged as a version of ``mia-<SYMBOL>`` (idempotent per run).

    :param cfg: the configuration.
    :param run_id: the MLflow run that logged the model.
    :param artifact_path: the logged model's name in that run (``log_model(name=…)``).
    :param symbol: ``ES`` or ``MNQ``.
    :param metrics: namespaced metrics, ``{"wf/sharpe": 1.3, "holdout/deflated_sharpe": 0.97}``;
        NaN is stored as ``nan``.
    :param data_hash: content hash of the data the bundle was trained and scored on; default
        the run's ``mia.data_hash`` tag (``mia.training.tracking.lineage_tags``).
    :param git_sha: code version; default the run's ``mia.git_sha`` or
        ``mlflow.source.git.commit`` tag.
    :param gate_verdict: the gate's verdict, if already evaluated (see :func:`apply_gate`).
    :param tags: extra version tags (not in the reserved namespaces).
    :param client: an ``MlflowClient``; default :func:`~mia.registry.tracking.configure`'s.
    :return: the version number; the existing one when this run's model is already registered.
    :raises OperationalError: bad inputs, unknown run, no such logged model, no lineage, or a
        re-register whose metrics or lineage differ from the stored ones.
    """
    if symbol not in get_args(Symbol):
        raise OperationalError(f"symbol {symbol!r}: use one of {', '.join(get_args(Symbol))}")
    wanted = {**_metric_tags(metrics), **_extra_tags(tags or {})}
    m = ModelHandle(cfg, symbol, client)
    c, name = m.client, m.name
    with mlflow_errors(m.uri, f"registering run {run_id}",
                       missing=f"no MLflow run {run_id} at {m.uri}; check the run id"):
        run = c.get_run(run_id)
        model_id = _logged_model(c, run, artifact_path)
    rt = run.data.tags
    data = data_hash or rt.get("mia.data_hash")
    sha = git_sha or rt.get("mia.git_sha") or rt.get("mlflow.source.git.commit")
    if not data or not sha:
        raise OperationalError(f"run {run_id} has no {'mia.data_hash' if not data else 'git sha'}"
                               " tag; pass data_hash= and git_sha= (the bundle's lineage)")
    wanted |= dict(zip(LINEAGE, (data, sha, run_id, artifact_path), strict=True))
    fixed = set(wanted)
    if gate_verdict is not None:
        wanted |= verdict_tags(gate_verdict)
    with mlflow_errors(m.uri, f"registering run {run_id} as {name}"):
        # by source: the SQL store does not return ModelVersion.model_id (MLflow 3.17)
        existing = [v for v in c.search_model_versions(f"name='{name}' AND run_id='{run_id}'")
                    if v.source == f"models:/{model_id}"]
        if not existing:
            try:
                m.read()
            except OperationalError:  # the first bundle of this symbol
                c.create_registered_model(name, tags={"mia/symbol": symbol}, description=(
                    f"MIA policy bundles for {symbol}; aliases production / canary / "
                    "previous-production are the source of truth (docs/registry.md)"))
            mv = c.create_model_version(name, source=f"models:/{model_id}", run_id=run_id,
                                        model_id=model_id, tags=wanted,
                                        description=f"run {run_id}, model {artifact_path}")
            return str(mv.version)
        version = str(min(int(v.version) for v in existing))
        stored = dict(c.get_model_version(name, version).tags)
        clash = [f"{k}={stored[k]} (now {v})" for k, v in wanted.items()
                 if k in fixed and k in stored and stored[k] != v]
        if clash:
            raise OperationalError(f"{name} v{version} is run {run_id} already, with "
                                   f"{', '.join(clash)}; a new evaluation needs a new run")
        for k, v in wanted.items():  # finishes a registration interrupted before its tags
            if stored.get(k) != v:
                c.set_model_version_tag(name, version, k, v)
        return version


def _metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metrics.items():
        ns, _, leaf = key.partition("/")
        if not ns or not leaf or key.startswith(_RESERVED):
            raise OperationalError(f"metric {key!r}: use a namespaced key like 'wf/sharpe' or "
                                   "'holdout/sharpe' outside audit/, gate/, lineage/, mia/")
        try:
            out[key] = repr(float(value))
        except (TypeError, ValueError):
            raise OperationalError(f"metric {key}={value!r} is not a number") from None
    return out


def _extra_tags(tags: Mapping[str, str]) -> dict[str, str]:
    bad = [k for k in tags if k.startswith(_RESERVED)]
    if bad:
        raise OperationalError(f"tags {bad}: these keys are written by mia itself; rename them")
    return {str(k): str(v) for k, v in tags.items()}


def _logged_model(client: MlflowClient, run: object, name: str) -> str:
    outputs = getattr(run, "outputs", None)
    ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
    models = [client.get_logged_model(i) for i in ids]
    hits = [lm.model_id for lm in models if lm.name == name]
    run_id = getattr(getattr(run, "info", None), "run_id", "?")
    if len(hits) == 1:
        return str(hits[0])
    if not hits:
        found = ", ".join(sorted(lm.name for lm in models)) or "none"
        raise OperationalError(f"run {run_id} logged no model named {name!r} (its models: "
                               f"{found}); log the bundle with log_model(name={name!r})")
    raise OperationalError(f"run {run_id} logged {len(hits)} models named {name!r}; log one "
                           "per run so the version is unambiguous")


def verdict_tags(verdict: GateVerdict) -> dict[str, str]:
    """:param verdict: the gate's verdict. :return: the ``gate/*`` version tags."""
    return dict(zip(GATE_TAGS, (str(verdict.passed).lower(), verdict.reference,
                                json.dumps(list(verdict.reasons)),
                                json.dumps(list(verdict.checks))), strict=True))


def promoted_verdict(cfg: Config, symbol: str, version: str, *,
                     client: MlflowClient | None = None) -> GateVerdict | None:
    """The verdict stored on ``version`` if it holds ``production`` (it was promoted on it).

    A rerun of the register stage for a walk-forward whose version has since been promoted
    would compare the version with itself (production) and reject it; its recorded verdict
    stands instead.

    :return: the stored verdict; ``None`` when the version is not production or has none.
    """
    m = ModelHandle(cfg, symbol, client)
    aliases, _ = m.read()
    tags = m.tags(version)
    if aliases["production"] != version or GATE_TAGS[0] not in tags:
        return None
    passed, reference, reasons, checks = (tags.get(k, "") for k in GATE_TAGS)
    return GateVerdict(passed=passed == "true", reference=reference,
                       reasons=tuple(json.loads(reasons or "[]")),
                       checks=tuple(json.loads(checks or "[]")))


def apply_gate(cfg: Config, symbol: str, version: str, verdict: GateVerdict, *,
               client: MlflowClient | None = None, clock: Clock | None = None,
               user: str | None = None) -> MoveResult:
    """Store the verdict on the version; on a pass with ``gate.auto_canary``, make it the canary.

    A rejection records the reasons and moves nothing: production stays. A pass never replaces
    a canary that is already under observation (a person steps its share and promotes it or
    clears it); it says how to replace it by hand.

    :param cfg: the configuration (``gate.auto_canary``, ``executor.canary_share``).
    :param symbol: ``ES`` or ``MNQ``.
    :param version: the candidate's version number.
    :param verdict: from :func:`mia.registry.gate.evaluate_gate`.
    :param client: an ``MlflowClient``.
    :param clock: time source (``gate/at`` and the canary's audit entry).
    :param user: who (default ``$MIA_USER`` or the login name).
    :return: what happened.
    """
    clock = clock or SystemClock()
    m = ModelHandle(cfg, symbol, client)
    aliases, _ = m.read()
    stored = m.tags(version)
    wanted = verdict_tags(verdict)
    changed = any(stored.get(k) != v for k, v in wanted.items())
    if changed:
        with mlflow_errors(m.uri, f"storing the gate verdict on {m.name} v{version}"):
            for k, v in {**wanted, "gate/at": audit.stamp(clock)}.items():
                m.client.set_model_version_tag(m.name, version, k, v)
    head = f"{m.name} v{version}"
    if not verdict.passed:
        prod = f"v{aliases['production']}" if aliases["production"] else "unset"
        return MoveResult(model=m.name, action="gate", changed=changed, aliases=aliases,
                          message=f"{head} rejected by the gate: {'; '.join(verdict.reasons)}"
                                  f"\nproduction ({prod}) untouched")
    why = ""
    if aliases["production"] == version:
        why = "it already is production"
    elif aliases["canary"] == version:
        why = "it already is the canary"
    elif aliases["canary"] is not None:
        # the weekly retrain must not cut short a canary a person is stepping up (5 -> 100 %)
        why = (f"canary v{aliases['canary']} is still under observation; "
               f"`mia registry set-canary {version} --reason …` replaces it")
    elif not cfg.params.gate.auto_canary:
        why = (f"gate.auto_canary is off: `mia registry set-canary {version} --reason …` "
               "gives it the canary")
    if why:
        return MoveResult(model=m.name, action="gate", changed=changed, aliases=aliases,
                          message=f"{head} passed the gate against {verdict.reference}; {why}")
    moved = set_canary(cfg, symbol, version, client=m.client, clock=clock, user=user,
                       reason=f"v{version} passed the promotion gate against "
                              f"{verdict.reference} (gate.auto_canary)")
    return MoveResult(model=m.name, action="gate", changed=True, aliases=moved.aliases,
                      message=f"{head} passed the gate against {verdict.reference}\n"
                              f"{moved.message}")


def alias_metrics(cfg: Config, symbol: str, alias: str = "production", *,
                  namespace: str = GATE_NAMESPACE,
                  client: MlflowClient | None = None) -> GateMetrics | None:
    """The gate metrics on the version holding ``alias`` (the gate's ``production`` input).

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param alias: one of :data:`~mia.registry.audit.ALIASES`.
    :param namespace: metric namespace of the tags, default ``holdout``.
    :param client: an ``MlflowClient``.
    :return: the metrics (NaN where a tag is missing); ``None`` if the alias or model is absent.
    """
    if alias not in ALIASES:
        raise OperationalError(f"alias {alias!r}: use one of {', '.join(ALIASES)}")
    m = ModelHandle(cfg, symbol, client)
    try:
        aliases, _ = m.read()
    except OperationalError:  # not registered yet: nothing in production
        return None
    version = aliases[alias]
    return None if version is None else GateMetrics.from_metrics(m.tags(version), namespace)


@dataclass(frozen=True, kw_only=True, slots=True)
class AliasState:
    """One alias as ``status`` sees it.

    :param alias: the alias.
    :param version: the version it points at, or ``None``.
    :param share: capital share: the canary's ``canary_share`` tag, production ``1 - share``
        (``1`` without a canary), ``None`` for previous-production; NaN if the tag is missing.
    :param metrics: the version's ``wf/`` and ``holdout/`` summary tags and gate verdict.
    :param last: the newest audit entry on that version.
    :param note: why the alias looks moved outside mia, or an unfinished move; ``None`` if audited.
    :param isolated: the version was isolated by a rollback.
    """

    alias: str
    version: str | None
    share: float | None
    metrics: dict[str, str]
    last: AuditEntry | None
    note: str | None
    isolated: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryStatus:
    """The three aliases of one model.

    :param model: registered model name.
    :param uri: tracking URI.
    :param aliases: production, canary, previous-production in that order.
    :param pending: an unfinished move, described, or ``None``.
    """

    model: str
    uri: str
    aliases: tuple[AliasState, ...]
    pending: str | None

    def lines(self) -> list[str]:
        """:return: the status as text lines for the terminal."""
        out = [f"{self.model} at {self.uri}"]
        for a in self.aliases:
            if a.version is None:
                out.append(f"  {a.alias:<20} unset" + (f"  [{a.note}]" if a.note else ""))
                continue
            share = "" if a.share is None else \
                " share unset" if math.isnan(a.share) else f" share {a.share:g}"
            out.append(f"  {a.alias:<20} v{a.version}{share}{' ISOLATED' if a.isolated else ''}"
                       + (f"  [{a.note}]" if a.note else ""))
            if a.metrics:
                out.append(f"  {'':<20} {_summary(a.metrics)}")
            out.append(f"  {'':<20} last: {a.last.line() if a.last else 'no audit entry'}")
        if self.pending:
            out.append(f"  pending: {self.pending}")
        return out


def status(cfg: Config, symbol: str, *, client: MlflowClient | None = None) -> RegistryStatus:
    """Read the aliases themselves (not only the tags) and their audit trail.

    An alias that mia did not put where it is (set or deleted in the MLflow UI) is noted
    ``moved outside mia``: it differs from where mia's last move left it, or its version has no
    mia entry giving it that alias.

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param client: an ``MlflowClient``.
    :raises OperationalError: the model is not registered.
    :raises TemporaryError: MLflow unreachable.
    """
    m = ModelHandle(cfg, symbol, client)
    aliases, model_tags = m.read()
    pending = Plan.from_json(model_tags[audit.MODEL_PENDING], m.name) \
        if audit.MODEL_PENDING in model_tags else None
    touched = {w.alias for w in pending.writes if w.alias} if pending else set()
    last_move = audit.last_move(model_tags, m.name)
    left: dict[str, str | None] = last_move["aliases"] if last_move else {}
    tags = {v: m.tags(v) for v in {v for v in aliases.values() if v is not None}}
    canary = _share(tags[aliases["canary"]]) if aliases["canary"] else None
    states = []
    for alias in ALIASES:
        version = aliases[alias]
        vt = tags.get(version, {}) if version else {}
        entries = audit.history(vt, f"{m.name} v{version}") if version else []
        note = None
        if alias in touched and pending is not None:
            note = f"move in progress: {pending.action} started {pending.at} by {pending.by}"
        elif version != left.get(alias):
            where = f"v{left[alias]}" if left.get(alias) else "unset"
            note = f"moved outside mia (mia left it {where})"
        elif version is not None and audit.alias_entry(entries, alias) is None:
            note = "moved outside mia (no audit entry gives this version the alias)"
        share = {"canary": canary, "production": 1.0 - canary if canary is not None
                 else 1.0}.get(alias)
        summary = {f"{ns}/{leaf}": vt[f"{ns}/{leaf}"] for ns in (GATE_NAMESPACE, "wf")
                   for leaf in _SUMMARY if f"{ns}/{leaf}" in vt}
        if "gate/passed" in vt:
            summary["gate"] = "passed" if vt["gate/passed"] == "true" else "rejected"
        states.append(AliasState(alias=alias, version=version, share=share, metrics=summary,
                                 last=entries[-1] if entries else None, note=note,
                                 isolated=vt.get(audit.TAG_ISOLATED) == "true"))
    text = (f"{pending.action} started {pending.at} by {pending.by} ({pending.reason}): "
            f"{pending.message}; rerun it to finish") if pending else None
    return RegistryStatus(model=model_name(symbol), uri=m.uri, aliases=tuple(states),
                          pending=text)


def _share(tags: Mapping[str, str]) -> float:
    try:
        return float(tags[audit.TAG_SHARE])
    except (KeyError, ValueError):
        return math.nan


_SHORT = {"sharpe": "sharpe", "deflated_sharpe": "dsr", "max_drawdown": "mdd", "cvar_95": "cvar95"}


def _summary(metrics: Mapping[str, str]) -> str:
    """``holdout sharpe 1.4 dsr 0.97 mdd 0.05 cvar95 0.01 | wf sharpe 1.3 | gate passed``."""
    groups: dict[str, list[str]] = {}
    for key, value in metrics.items():
        ns, _, leaf = key.partition("/")
        if not leaf:
            groups.setdefault(key, []).append(value)
            continue
        try:
            value = f"{float(value):.4g}"
        except ValueError:
            pass
        groups.setdefault(ns, []).append(f"{_SHORT.get(leaf, leaf)} {value}")
    return " | ".join(f"{ns} {' '.join(parts)}" for ns, parts in groups.items())
