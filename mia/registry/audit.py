"""The audit trail of alias moves, kept in MLflow tags; pure code (no MLflow import).

The registry is the audit trail (docs/registry.md):

- every model version an alias move touches gets an entry appended to its ``audit/history`` tag
  (a JSON list, newest last, bounded) and a one-line ``audit/last`` summary for the MLflow UI;
- a move is first written as a :class:`Plan` to the registered model's ``mia/pending`` tag, its
  writes run in an order that leaves a valid state after each one, then the audit entries, then
  ``mia/last_move`` (the aliases as mia left them) replaces the plan. A rerun finds the plan and
  finishes it; every write is skipped when already done, so a resumed move never doubles an entry.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import Any, Literal

from mia.clock import Clock
from mia.errors import OperationalError

ALIASES = ("production", "canary", "previous-production")
TAG_HISTORY = "audit/history"
TAG_LAST = "audit/last"
TAG_SHARE = "canary_share"
TAG_ISOLATED = "isolated"
TAG_ISOLATED_REASON = "isolated_reason"
MODEL_PENDING = "mia/pending"
MODEL_LAST_MOVE = "mia/last_move"

MAX_REASON = 500
MAX_ENTRIES = 30
# Registry tag values are VARCHAR(5000) in MLflow's SQL schema (Postgres enforces it).
MAX_TAG_CHARS = 5000

WriteOp = Literal["set_alias", "delete_alias", "set_tag", "delete_tag"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One move as seen by one model version.

    :param id: the move's id (shared by every version it touched).
    :param at: UTC time, ISO 8601 with a ``Z`` suffix, from the injected clock.
    :param by: who moved it.
    :param action: ``promote``, ``rollback``, ``set_canary``, ``clear_canary``, ``set_share``.
    :param changes: what happened to this version: ``+production``, ``-canary``,
        ``share 0.05 -> 0.15``, ``isolated``.
    :param reason: why, as given by the operator.
    """

    id: str
    at: str
    by: str
    action: str
    changes: tuple[str, ...]
    reason: str

    def line(self) -> str:
        """:return: ``<at> <by> <action> <changes>: <reason>`` (the ``audit/last`` tag)."""
        return f"{self.at} {self.by} {self.action} {' '.join(self.changes)}: {self.reason}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Write:
    """One registry write of a plan; ``version`` names the version for tags and aliases.

    :param op: what to write.
    :param version: model version number, as text.
    :param alias: alias name (alias ops).
    :param key: tag key (tag ops).
    :param value: tag value (``set_tag``).
    """

    op: WriteOp
    version: str
    alias: str = ""
    key: str = ""
    value: str = ""

    def describe(self) -> str:
        """:return: the write in words, for error messages."""
        if self.op == "set_alias":
            return f"set {self.alias} -> v{self.version}"
        if self.op == "delete_alias":
            return f"delete {self.alias} (was v{self.version})"
        if self.op == "set_tag":
            return f"tag v{self.version} {self.key}={self.value}"
        return f"untag v{self.version} {self.key}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """A move: its writes in safe order, the audit entry per version, the aliases after.

    :param id: unique id of the move.
    :param action: the operation name.
    :param request: the arguments that identify the request (a rerun must match them).
    :param at: UTC ISO time the move was planned.
    :param by: who asked.
    :param reason: why.
    :param writes: registry writes, in the order that keeps every intermediate state valid.
    :param changes: version -> its audit changes.
    :param after: every alias -> version (or ``None``) once the move is done.
    :param message: what the move does, one line.
    """

    id: str
    action: str
    request: dict[str, str]
    at: str
    by: str
    reason: str
    writes: tuple[Write, ...]
    changes: dict[str, tuple[str, ...]]
    after: dict[str, str | None]
    message: str

    def entry(self, version: str) -> AuditEntry:
        """:param version: a version the move touches. :return: its audit entry."""
        return AuditEntry(id=self.id, at=self.at, by=self.by, action=self.action,
                          changes=self.changes[version], reason=self.reason)

    def to_json(self) -> str:
        """:return: compact JSON for the ``mia/pending`` tag."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str) -> Plan:
        """Decode a ``mia/pending`` tag.

        :param text: the tag value.
        :param where: model name, for the error message.
        :raises OperationalError: if the tag was edited into something that is not a plan.
        """
        try:
            raw: dict[str, Any] = json.loads(text)
            raw["writes"] = tuple(Write(**w) for w in raw["writes"])
            raw["changes"] = {v: tuple(c) for v, c in raw["changes"].items()}
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise OperationalError(
                f"{where}: tag {MODEL_PENDING} is not a move plan ({exc}); it records an "
                "interrupted move: fix it or delete the tag in the MLflow UI, then rerun") from exc


def who(user: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Who is moving an alias: ``user``, else ``$MIA_USER``, else the login name.

    :param user: an explicit name (the CLI's ``--user``).
    :param env: the environment; default :data:`os.environ`.
    :raises OperationalError: if no name can be found.
    """
    env = os.environ if env is None else env
    name = (user or env.get("MIA_USER") or "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (bare containers)
            name = ""
    if not name:
        raise OperationalError("cannot tell who is moving the alias; set MIA_USER or pass --user")
    return name


def stamp(clock: Clock) -> str:
    """:param clock: the injected clock. :return: its UTC time as ``2025-01-06T21:00:00Z``."""
    return clock.now().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_reason(reason: str) -> str:
    """:param reason: the operator's why. :return: it, stripped.
    :raises OperationalError: if empty or longer than :data:`MAX_REASON` characters."""
    text = " ".join(reason.split())
    if not text:
        raise OperationalError("a reason is required for every alias move; pass --reason TEXT")
    if len(text) > MAX_REASON:
        raise OperationalError(f"reason is {len(text)} characters; keep it under {MAX_REASON} "
                               "(link a document for the long story)")
    return text


def check_share(share: float, steps: Sequence[float]) -> float:
    """:param share: canary capital share. :param steps: ``executor.canary_steps``.
    :return: the share. :raises OperationalError: if not a fraction in (0, 1]."""
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise OperationalError(f"canary share {share!r} must be in (0, 1] (the schedule is "
                               f"{', '.join(f'{s:g}' for s in steps)})")
    return share


def history(tags: Mapping[str, str], where: str) -> list[AuditEntry]:
    """Decode a version's ``audit/history`` tag (oldest first).

    :param tags: the version's tags.
    :param where: ``mia-ES v3``, for the error message.
    :raises OperationalError: if the tag is not the list mia writes (edited by hand).
    """
    text = tags.get(TAG_HISTORY)
    if not text:
        return []
    try:
        return [AuditEntry(**{**e, "changes": tuple(e["changes"])}) for e in json.loads(text)]
    except (ValueError, TypeError, KeyError) as exc:
        raise OperationalError(
            f"{where}: tag {TAG_HISTORY} is not an audit list ({exc}); restore it from the "
            "MLflow UI's tag history or delete it, then rerun") from exc


def appended(entries: Sequence[AuditEntry], entry: AuditEntry) -> str | None:
    """:param entries: current history. :param entry: the new entry.
    :return: the new ``audit/history`` value, or ``None`` when the move is already recorded.
        Oldest entries are dropped to keep :data:`MAX_ENTRIES` and :data:`MAX_TAG_CHARS`."""
    if any(e.id == entry.id for e in entries):
        return None
    kept = [*entries, entry][-MAX_ENTRIES:]
    while True:
        text = json.dumps([asdict(e) for e in kept], separators=(",", ":"))
        if len(text) <= MAX_TAG_CHARS or len(kept) == 1:
            return text
        kept = kept[1:]


def alias_entry(entries: Sequence[AuditEntry], alias: str) -> AuditEntry | None:
    """:param entries: a version's history. :param alias: an alias it holds.
    :return: the entry by which mia gave it the alias, or ``None`` if mia never did or the
        newest mia entry about the alias took it away (so the alias came back by hand)."""
    for e in reversed(entries):
        if f"+{alias}" in e.changes:
            return e
        if f"-{alias}" in e.changes:
            return None
    return None


def last_move(tags: Mapping[str, str], where: str) -> dict[str, Any] | None:
    """Decode the registered model's ``mia/last_move`` tag.

    :param tags: the registered model's tags.
    :param where: model name, for the error message.
    :return: ``{"id", "action", "at", "by", "reason", "aliases"}``, or ``None`` before any move.
    :raises OperationalError: if the tag was edited into something else.
    """
    text = tags.get(MODEL_LAST_MOVE)
    if not text:
        return None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw["aliases"], dict):
            raise TypeError("not an object with aliases")
        return {**raw, "aliases": {a: raw["aliases"].get(a) for a in ALIASES}}
    except (ValueError, TypeError, KeyError) as exc:
        raise OperationalError(
            f"{where}: tag {MODEL_LAST_MOVE} is not mia's record of its last move ({exc}); "
            "delete the tag in the MLflow UI (status then flags every alias as moved "
            "outside mia until the next move)") from exc
