"""Audited alias moves on ``mia-<SYMBOL>``: promote, rollback, set / clear the canary, its share.

Aliases are the source of truth (MLflow's replacement for the deprecated stages):
``production`` trades, ``canary`` trades a capital share (its version's ``canary_share`` tag, so
every executor reads the same value), ``previous-production`` is where ``rollback`` returns.

Every move is a :class:`~mia.registry.audit.Plan`: recorded as pending on the registered model,
its writes run in an order that leaves a valid state after each one (every alias on a real
version; production never emptied; the canary's version always carries a share), then audited
on every version it touches. An interrupted move is finished by rerunning the same command; a
repeat of a finished one is a "nothing to do" that writes nothing. docs/registry.md has the model.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mia.clock import Clock, SystemClock
from mia.config import Config
from mia.errors import OperationalError
from mia.registry import audit
from mia.registry.audit import TAG_ISOLATED, TAG_SHARE, Plan, Write
from mia.registry.handle import ModelHandle, MoveResult

if TYPE_CHECKING:
    from mlflow import MlflowClient


Builder = Callable[[ModelHandle, dict[str, str | None], dict[str, Any] | None, Plan], Plan | str]


def _move(cfg: Config, symbol: str, action: str, request: dict[str, str], reason: str,
          build: Builder, *, client: MlflowClient | None, clock: Clock | None,
          user: str | None) -> MoveResult:
    """Check the inputs, finish an interrupted move or plan a new one, execute it."""
    by, why = audit.who(user), audit.check_reason(reason)
    m = ModelHandle(cfg, symbol, client)
    aliases, model_tags = m.read()
    if pending_text := model_tags.get(audit.MODEL_PENDING):
        pending = Plan.from_json(pending_text, m.name)
        if pending.action != action or pending.request != request:
            raise OperationalError(
                f"{m.name}: an interrupted {pending.action} (started {pending.at} by "
                f"{pending.by}: {pending.reason}) must finish first; run "
                f"`{_command(pending, symbol)} --reason …` to finish it")
        m.execute(pending, model_tags)
        return MoveResult(model=m.name, action=action, changed=True, aliases=pending.after,
                          message=f"{m.name}: finished the interrupted {action} started "
                                  f"{pending.at} by {pending.by}: {pending.message}")
    last = audit.last_move(model_tags, m.name)
    blank = Plan(id=uuid.uuid4().hex[:12], action=action, request=request,
                 at=audit.stamp(clock or SystemClock()), by=by, reason=why, writes=(),
                 changes={}, after=dict(aliases), message="")
    plan = build(m, aliases, last, blank)
    if isinstance(plan, str):
        return MoveResult(model=m.name, action=action, changed=False, aliases=aliases,
                          message=f"{m.name}: nothing to do: {plan}")
    m.execute(plan, model_tags)
    return MoveResult(model=m.name, action=action, changed=True, aliases=plan.after,
                      message=f"{m.name}: {plan.message}")


def _command(plan: Plan, symbol: str) -> str:
    r = plan.request
    args = {"set_canary": f" {r.get('version')} --share {r.get('share')}",
            "set_share": f" {r.get('share')}"}.get(plan.action, "")
    return f"mia registry {plan.action.replace('_', '-')}{args} --symbol {symbol}"


def _plan(blank: Plan, writes: list[Write], changes: dict[str, list[str]],
          after: Mapping[str, str | None], message: str) -> Plan:
    return Plan(id=blank.id, action=blank.action, request=blank.request, at=blank.at,
                by=blank.by, reason=blank.reason, writes=tuple(writes),
                changes={v: tuple(c) for v, c in changes.items()},
                after={**blank.after, **after}, message=message)


def _repeat(last: dict[str, Any] | None, action: str, aliases: Mapping[str, str | None]) -> bool:
    # the previous move was this one and nothing moved since: a repeat is a no-op, not an error
    return last is not None and last["action"] == action and last["aliases"] == dict(aliases)


def _usable(m: ModelHandle, version: str) -> dict[str, str]:
    tags = m.tags(version)
    if tags.get(TAG_ISOLATED) == "true":
        raise OperationalError(f"{m.name} v{version} was isolated by a rollback "
                               f"({tags.get(audit.TAG_ISOLATED_REASON, 'no reason recorded')}); "
                               "register a fixed version instead")
    return tags


def promote(cfg: Config, symbol: str, *, reason: str, client: MlflowClient | None = None,
            clock: Clock | None = None, user: str | None = None) -> MoveResult:
    """Canary -> production, production -> previous-production, canary cleared.

    Write order: previous-production, production, delete canary, drop the share tag; after any
    single write every alias points at a real version and production is never empty.

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param reason: why (required, recorded on every version touched).
    :param client: an ``MlflowClient``; default :func:`~mia.registry.tracking.configure`'s.
    :param clock: time source of the audit entries; default the system clock.
    :param user: who; default ``$MIA_USER`` or the login name.
    :raises OperationalError: no canary (unless this repeats the last promote), canary isolated.
    :raises TemporaryError: MLflow unreachable (an interrupted move finishes on rerun).
    """
    def build(m: ModelHandle, al: dict[str, str | None], last: dict[str, Any] | None,
              blank: Plan) -> Plan | str:
        c, p, pp = al["canary"], al["production"], al["previous-production"]
        if c is None:
            if _repeat(last, "promote", al) and last is not None:
                return f"v{p} is production since {last['at']} (promoted by {last['by']})"
            raise OperationalError(f"{m.name} has no canary alias: nothing to promote; give a "
                                   "version the canary first (mia registry set-canary VERSION)")
        _usable(m, c)
        done = [Write(op="delete_alias", version=c, alias="canary"),
                Write(op="delete_tag", version=c, key=TAG_SHARE)]
        if c == p:
            return _plan(blank, done, {c: ["-canary"]}, {"canary": None},
                         f"canary v{c} already is production; cleared the canary alias")
        writes, changes = [], {c: ["-canary", "+production"]}
        if p is not None and p != pp:
            writes.append(Write(op="set_alias", version=p, alias="previous-production"))
            changes[p] = ["-production", "+previous-production"]
            if pp is not None:
                changes[pp] = ["-previous-production"]
        elif p is not None:
            changes[p] = ["-production"]
        writes += [Write(op="set_alias", version=c, alias="production"), *done]
        after = {"production": c, "canary": None, "previous-production": p or pp}
        return _plan(blank, writes, changes, after,
                     f"promoted v{c} to production"
                     + (f"; v{p} is previous-production" if p else "") + "; canary cleared")

    return _move(cfg, symbol, "promote", {}, reason, build, client=client, clock=clock, user=user)


def rollback(cfg: Config, symbol: str, *, reason: str, client: MlflowClient | None = None,
             clock: Clock | None = None, user: str | None = None) -> MoveResult:
    """Previous-production -> production; the faulty version is tagged ``isolated=true``.

    Write order: isolate the faulty version (tags), production -> previous, delete
    previous-production (it would name the version now in production). The canary is untouched.

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param reason: why (required; also the ``isolated_reason`` tag for the post-mortem).
    :param client: an ``MlflowClient``; default :func:`~mia.registry.tracking.configure`'s.
    :param clock: time source of the audit entries.
    :param user: who.
    :raises OperationalError: no previous-production alias (unless repeating the last rollback).
    :raises TemporaryError: MLflow unreachable.
    """
    def build(m: ModelHandle, al: dict[str, str | None], last: dict[str, Any] | None,
              blank: Plan) -> Plan | str:
        p, q = al["production"], al["previous-production"]
        if q is None:
            if _repeat(last, "rollback", al) and last is not None:
                return f"rolled back to v{p} at {last['at']} by {last['by']}"
            raise OperationalError(f"{m.name} has no previous-production alias: nothing to roll "
                                   "back to (`mia registry status` shows the aliases)")
        _usable(m, q)
        unset = Write(op="delete_alias", version=q, alias="previous-production")
        if p == q:
            return _plan(blank, [unset], {q: ["-previous-production"]},
                         {"previous-production": None},
                         f"v{q} already is production; cleared previous-production")
        writes, changes = [], {q: ["-previous-production", "+production"]}
        if p is not None:
            m.tags(p)
            writes += [Write(op="set_tag", version=p, key=TAG_ISOLATED, value="true"),
                       Write(op="set_tag", version=p, key=audit.TAG_ISOLATED_REASON,
                             value=blank.reason)]
            changes[p] = ["-production", "isolated"]
        writes += [Write(op="set_alias", version=q, alias="production"), unset]
        kept = f"; canary v{al['canary']} kept" if al["canary"] else ""
        return _plan(blank, writes, changes, {"production": q, "previous-production": None},
                     f"rolled back production to v{q}"
                     + (f"; v{p} isolated for the post-mortem" if p else "") + kept)

    return _move(cfg, symbol, "rollback", {}, reason, build, client=client, clock=clock,
                 user=user)


def set_canary(cfg: Config, symbol: str, version: str, *, reason: str,
               share: float | None = None, client: MlflowClient | None = None,
               clock: Clock | None = None, user: str | None = None) -> MoveResult:
    """Give ``version`` the canary alias at a capital share (the share tag is written first).

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param version: model version number.
    :param reason: why.
    :param share: capital share in (0, 1]; default ``executor.canary_share``. On the current
        canary, only the share changes.
    :param client: an ``MlflowClient``.
    :param clock: time source of the audit entries.
    :param user: who.
    :raises OperationalError: unknown, isolated or production version; share out of range.
    :raises TemporaryError: MLflow unreachable.
    """
    ex = cfg.params.executor
    s = audit.check_share(ex.canary_share if share is None else share, ex.canary_steps)
    version = str(version).strip()

    def build(m: ModelHandle, al: dict[str, str | None], last: dict[str, Any] | None,
              blank: Plan) -> Plan | str:
        tags = _usable(m, version)
        if al["production"] == version:
            raise OperationalError(f"{m.name} v{version} is production; a canary must be "
                                   "another version")
        old = al["canary"]
        if old == version:
            return _share_plan(blank, version, tags, s)
        writes = [Write(op="set_tag", version=version, key=TAG_SHARE, value=f"{s:g}"),
                  Write(op="set_alias", version=version, alias="canary")]
        changes = {version: ["+canary", f"share {s:g}"]}
        if old is not None:
            writes.append(Write(op="delete_tag", version=old, key=TAG_SHARE))
            changes[old] = ["-canary"]
        override = ("" if tags.get("gate/passed") != "false" else
                    f"\nnote: the promotion gate rejected v{version}; this canary is a "
                    "person's override (the reason is on record)")
        return _plan(blank, writes, changes, {"canary": version},
                     f"canary -> v{version} at share {s:g}"
                     + (f" (replaces v{old})" if old else "") + override)

    return _move(cfg, symbol, "set_canary", {"version": version, "share": f"{s:g}"}, reason,
                 build, client=client, clock=clock, user=user)


def set_share(cfg: Config, symbol: str, share: float, *, reason: str,
              client: MlflowClient | None = None, clock: Clock | None = None,
              user: str | None = None) -> MoveResult:
    """Change the canary's capital share (a step of ``executor.canary_steps``, or any (0, 1]).

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param share: the new share in (0, 1].
    :param reason: why.
    :param client: an ``MlflowClient``.
    :param clock: time source of the audit entries.
    :param user: who.
    :raises OperationalError: no canary alias; share out of range.
    """
    s = audit.check_share(share, cfg.params.executor.canary_steps)

    def build(m: ModelHandle, al: dict[str, str | None], last: dict[str, Any] | None,
              blank: Plan) -> Plan | str:
        if (c := al["canary"]) is None:
            raise OperationalError(f"{m.name} has no canary alias: no share to change; "
                                   "set one with `mia registry set-canary VERSION`")
        return _share_plan(blank, c, m.tags(c), s)

    return _move(cfg, symbol, "set_share", {"share": f"{s:g}"}, reason, build, client=client,
                 clock=clock, user=user)


def _share_plan(blank: Plan, version: str, tags: Mapping[str, str], share: float) -> Plan | str:
    old = tags.get(TAG_SHARE)
    if old is not None and _float(old) == share:
        return f"canary v{version} already has share {share:g}"
    return _plan(blank, [Write(op="set_tag", version=version, key=TAG_SHARE, value=f"{share:g}")],
                 {version: [f"share {old or 'unset'} -> {share:g}"]}, {},
                 f"canary v{version} share {old or 'unset'} -> {share:g}")


def clear_canary(cfg: Config, symbol: str, *, reason: str, client: MlflowClient | None = None,
                 clock: Clock | None = None, user: str | None = None) -> MoveResult:
    """Remove the canary alias (then its share tag); production keeps all the capital.

    :param cfg: the configuration.
    :param symbol: ``ES`` or ``MNQ``.
    :param reason: why.
    :param client: an ``MlflowClient``.
    :param clock: time source of the audit entries.
    :param user: who.
    """
    def build(m: ModelHandle, al: dict[str, str | None], last: dict[str, Any] | None,
              blank: Plan) -> Plan | str:
        if (c := al["canary"]) is None:
            return "no canary alias"
        return _plan(blank, [Write(op="delete_alias", version=c, alias="canary"),
                             Write(op="delete_tag", version=c, key=TAG_SHARE)],
                     {c: ["-canary"]}, {"canary": None}, f"cleared canary (was v{c})")

    return _move(cfg, symbol, "clear_canary", {}, reason, build, client=client, clock=clock,
                 user=user)


def _float(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan
