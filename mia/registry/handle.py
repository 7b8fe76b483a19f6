"""One registered model ``mia-<SYMBOL>`` on one MLflow client: reads, and running a plan.

:class:`ModelHandle` is the only place that writes aliases and audit tags. It runs a
:class:`~mia.registry.audit.Plan` as a write-ahead record: the plan goes to the registered
model's ``mia/pending`` tag first, then each write (skipped when the registry already shows
it), then the audit entries (skipped when the move's id is already in a version's history), then
``mia/last_move`` replaces the plan. Whatever write fails, a rerun of the same plan ends in the
same state as an uninterrupted run, with each audit entry once. Which writes a move needs, and
in which order, is :mod:`mia.registry.aliases`' business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mia.config import Config
from mia.errors import OperationalError
from mia.registry import audit
from mia.registry.audit import ALIASES, Plan, Write
from mia.registry.tracking import configure, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient


def model_name(symbol: str) -> str:
    """:param symbol: ``ES`` or ``MNQ``. :return: the registered model name, ``mia-ES``."""
    return f"mia-{symbol}"


@dataclass(frozen=True, kw_only=True, slots=True)
class MoveResult:
    """What an operation did.

    :param model: registered model name.
    :param action: the operation.
    :param changed: ``False`` for an idempotent no-op.
    :param message: one or two lines for the operator.
    :param aliases: every alias -> version (``None`` = unset) afterwards.
    """

    model: str
    action: str
    changed: bool
    message: str
    aliases: dict[str, str | None]


class ModelHandle:
    """One registered model on one client; every MLflow call goes through :func:`mlflow_errors`.

    :param cfg: the configuration (the tracking URI names the store in messages).
    :param symbol: ``ES`` or ``MNQ``.
    :param client: an ``MlflowClient``; default :func:`~mia.registry.tracking.configure`'s.
    """

    def __init__(self, cfg: Config, symbol: str, client: MlflowClient | None) -> None:
        self.uri = cfg.endpoints.mlflow_tracking_uri
        self.client = client if client is not None else configure(cfg).client
        self.name = model_name(symbol)

    def read(self) -> tuple[dict[str, str | None], dict[str, str]]:
        """:return: (every alias -> version or ``None``, the registered model's tags).
        :raises OperationalError: if the model is not registered."""
        with mlflow_errors(self.uri, f"reading {self.name}",
                           missing=f"no registered model {self.name} in MLflow at {self.uri}; "
                                   "register a bundle first (mia.registry.models.register)"):
            rm = self.client.get_registered_model(self.name)
        found = {str(a): str(v) for a, v in rm.aliases.items()}
        return {a: found.get(a) for a in ALIASES}, dict(rm.tags)

    def tags(self, version: str) -> dict[str, str]:
        """:param version: a version number. :return: its tags.
        :raises OperationalError: for an unknown version."""
        if not version.isdigit():
            raise OperationalError(f"version {version!r} is not a version number like 3")
        with mlflow_errors(self.uri, f"reading {self.name} v{version}",
                           missing=f"{self.name} has no version {version}; `mia registry status` "
                                   "shows the aliases, the MLflow UI every version"):
            return dict(self.client.get_model_version(self.name, version).tags)

    def _write(self, w: Write) -> None:
        c, n = self.client, self.name
        if w.op == "set_alias":
            c.set_registered_model_alias(n, w.alias, w.version)
        elif w.op == "delete_alias":
            c.delete_registered_model_alias(n, w.alias)
        elif w.op == "set_tag":
            c.set_model_version_tag(n, w.version, w.key, w.value)
        else:
            c.delete_model_version_tag(n, w.version, w.key)

    def execute(self, plan: Plan, model_tags: Mapping[str, str]) -> None:
        """Run or finish ``plan``; a write already done is skipped, so a rerun never doubles.

        :param plan: the move.
        :param model_tags: the registered model's tags as read before planning.
        :raises TemporaryError: MLflow failed; the plan stays pending and a rerun finishes it.
        """
        c, n = self.client, self.name
        resume = f"the move is recorded in tag {audit.MODEL_PENDING} of {n}: rerun it to finish"
        with mlflow_errors(self.uri, f"{plan.action} of {n} (recording the plan)",
                           then="nothing was moved; rerun"):
            if model_tags.get(audit.MODEL_PENDING) != plan.to_json():
                c.set_registered_model_tag(n, audit.MODEL_PENDING, plan.to_json())
        aliases, _ = self.read()
        tags: dict[str, dict[str, str]] = {}
        for i, w in enumerate(plan.writes, 1):
            with mlflow_errors(self.uri, f"{plan.action} of {n}, step {i}/{len(plan.writes)} "
                               f"({w.describe()})", then=resume):
                if w.op in ("set_alias", "delete_alias"):
                    target = w.version if w.op == "set_alias" else None
                    if aliases[w.alias] != target:
                        self._write(w)
                        aliases[w.alias] = target
                    continue
                vt = tags[w.version] if w.version in tags else self.tags(w.version)
                tags[w.version] = vt
                if w.op == "set_tag" and vt.get(w.key) != w.value:
                    self._write(w)
                    vt[w.key] = w.value
                elif w.op == "delete_tag" and w.key in vt:
                    self._write(w)
                    del vt[w.key]
        with mlflow_errors(self.uri, f"{plan.action} of {n} (writing the audit tags)", then=resume):
            for version in plan.changes:
                vt = self.tags(version)
                entry = plan.entry(version)
                text = audit.appended(audit.history(vt, f"{n} v{version}"), entry)
                if text is not None:
                    c.set_model_version_tag(n, version, audit.TAG_HISTORY, text)
                if vt.get(audit.TAG_LAST) != entry.line():
                    c.set_model_version_tag(n, version, audit.TAG_LAST, entry.line())
            last = {"id": plan.id, "action": plan.action, "at": plan.at, "by": plan.by,
                    "reason": plan.reason, "aliases": plan.after}
            c.set_registered_model_tag(n, audit.MODEL_LAST_MOVE, json.dumps(last))
            c.delete_registered_model_tag(n, audit.MODEL_PENDING)
