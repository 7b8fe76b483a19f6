"""Restore a backup of :mod:`mia.pipelines.backup`: choose it, plan it, bring it back verified.

- **Which backup**: by key, the newest whose ``as_of`` is at or before a time, or the newest.
- **The plan** (:func:`plan_restore`): per component, the files and bytes it brings back, where
  to, and what is there now: ``empty``, ``same`` (exactly the backup's files) or ``differs``
  (other state: restoring over it would mix two states, e.g. a journal with snapshots of
  another journal, or a database with a stale ``-wal``).
- **The restore** (:func:`restore`): every object is checked against its hash before it
  replaces anything; a differing existing file is refused unless ``overwrite``; ``set_aside``
  first moves each differing component's local state to ``<path>.<suffix>`` (nothing local is
  destroyed). Executor state is refused while an executor holds its journal's writer lock.

The MLflow database keeps the artifact locations it was written with: restore onto the same
``MIA_HOME`` / ``MIA_ARTIFACT_ROOT`` paths (a rebuilt machine), not a different folder.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines.backup_layout import (
    COMPONENTS,
    SIDECARS,
    content_sha256,
    local_path,
    local_root,
    manifest_key,
    manifests,
    object_key,
    prefix,
    sha256,
    sidecar,
    sqlite_path,
    state_files,
    store_for,
)
from mia.pipelines.backup_store import ObjectStore

# the executor's writer lock (executor/journal.py): flock'ed while an executor writes the journal
EXECUTOR_LOCK = "journal.sqlite.lock"


@dataclass(frozen=True, kw_only=True, slots=True)
class RestoreResult:
    """What :func:`restore` wrote: files written, identical files left alone, skipped parts,
    local state moved aside first (``set_aside``)."""

    key: str
    written: tuple[Path, ...]
    unchanged: int
    skipped: dict[str, str]
    moved: tuple[Path, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class PartPlan:
    """One component of a restore.

    :param component: one of :data:`~mia.pipelines.backup_layout.COMPONENTS`.
    :param target: the local folder it restores to (``None``: skipped, see ``local``).
    :param files: files in the backup. :param size: their bytes.
    :param local: ``empty``, ``same``, ``differs`` (module doc), or why it is skipped.
    :param local_files: state files found locally.
    """

    component: str
    target: Path | None
    files: int
    size: int
    local: str
    local_files: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RestorePlan:
    """Which backup a restore would bring back, and what is in the way.

    :param key: the backup. :param as_of: the time it stands for. :param where: its store.
    :param parts: one per component present in the backup and asked for.
    """

    key: str
    as_of: datetime
    where: str
    parts: tuple[PartPlan, ...]

    @property
    def occupied(self) -> tuple[PartPlan, ...]:
        """The parts whose local state differs from the backup."""
        return tuple(p for p in self.parts if p.local == "differs")

    def lines(self) -> list[str]:
        """:return: the plan as text lines for the terminal."""
        out = [f"backup {self.key} (as of {self.as_of.isoformat()}) in {self.where}"]
        for p in self.parts:
            local = {"differs": f"local: {p.local_files} files that differ from the backup",
                     "same": "local: already this backup", "empty": "local: empty"}.get(
                p.local, f"skipped: {p.local}")
            out.append(f"  {p.component:<17} {p.files:>6} files {p.size / 1e6:>9.1f} MB -> "
                       f"{p.target or '-'}  [{local}]")
        return out


def choose(cfg: Config, store: ObjectStore, *, key: str | None = None,
           at: datetime | None = None) -> dict[str, Any]:
    """:return: the manifest of backup ``key``, else the newest at or before ``at``, else the
    newest. :raises OperationalError: none fits, both given, or a naive ``at``."""
    docs = manifests(cfg, store)
    if key is not None and at is not None:
        raise OperationalError("restore: give a backup key or a time (--at), not both")
    if key is not None:
        if manifest_key(cfg, key) in docs:
            return docs[manifest_key(cfg, key)]
        known = ", ".join(sorted(d["key"] for d in docs.values())[-5:]) or "none"
        raise OperationalError(f"no backup {key!r} in {store.where}; latest: {known}")
    if not docs:
        raise OperationalError(f"no backup under {store.where}/{prefix(cfg)}/manifests")
    if at is not None and at.tzinfo is None:
        raise OperationalError(f"restore: naive time {at.isoformat()}; add a zone (Z, +00:00)")
    fit = [d for d in docs.values() if at is None or datetime.fromisoformat(d["as_of"]) <= at]
    if not fit and at is not None:
        old = min(docs.values(), key=lambda d: datetime.fromisoformat(d["as_of"]))
        raise OperationalError(f"no backup at or before {at.isoformat()} in {store.where}; the "
                               f"oldest is {old['key']} (as of {old['as_of']})")
    return max(fit, key=lambda d: datetime.fromisoformat(d["as_of"]))


def _local_state(cfg: Config, component: str, root: Path) -> list[Path]:
    # the files a restore of the component lands among, SQLite's own files beside a database
    # included (a -wal from another database must never meet a restored one)
    if component == "mlflow_db":
        db = sqlite_path(cfg.endpoints.mlflow_tracking_uri)
        if db is None or not db.is_file():
            return []
        return [db, *(p for x in SIDECARS if (p := db.with_name(db.name + x)).is_file())]
    return list(state_files(root)) if root.is_dir() else []


def _status(cfg: Config, component: str, root: Path,
            entries: Sequence[dict[str, Any]]) -> tuple[str, int]:
    # a database's -wal / -shm are part of it: content_sha256 hashes its consistent copy
    local = [f for f in _local_state(cfg, component, root) if not sidecar(f)]
    if not local:
        return "empty", 0
    want = {local_path(cfg, component, root, e["path"]): e["sha256"] for e in entries}
    same = set(want) == set(local) and all(content_sha256(p) == sha
                                           for p, sha in want.items())
    return ("same" if same else "differs"), len(local)


def plan_restore(cfg: Config, *, key: str | None = None, at: datetime | None = None,
                 store: ObjectStore | None = None,
                 components: Sequence[str] = COMPONENTS) -> RestorePlan:
    """What :func:`restore` would bring back, and which local state is in its way.

    :param cfg: configuration (where MIA_HOME, the SQLite store and the artifact root are).
    :param key: a backup key; ``None``: by ``at``, else the newest.
    :param at: the newest backup whose ``as_of`` is at or before this (tz-aware).
    :param store: default :func:`~mia.pipelines.backup_layout.store_for`.
    :param components: which parts.
    :raises OperationalError: no such backup, both ``key`` and ``at``, a naive ``at``.
    """
    target = store or store_for(cfg)
    doc = choose(cfg, target, key=key, at=at)
    parts = []
    for name in COMPONENTS:
        entries = [e for e in doc["files"] if e["component"] == name]
        if name not in components or not entries:
            continue
        root, why = local_root(cfg, name)
        local, count = (why, 0) if root is None else _status(cfg, name, root, entries)
        parts.append(PartPlan(component=name, target=root, files=len(entries),
                              size=sum(int(e["size"]) for e in entries), local=local,
                              local_files=count))
    return RestorePlan(key=str(doc["key"]), as_of=datetime.fromisoformat(doc["as_of"]),
                       where=target.where, parts=tuple(parts))


def executor_running(state_dir: Path) -> str | None:
    """:param state_dir: an executor's state folder.
    :return: the pid holding its journal's writer lock (an executor writes there), or ``None``.
    """
    lock = state_dir / EXECUTOR_LOCK
    if not lock.is_file():
        return None
    with lock.open("r") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "unknown"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _set_aside(cfg: Config, plan: RestorePlan, suffix: str) -> list[Path]:
    moves = []
    for part in plan.occupied:
        if part.target is None:
            continue
        # a folder component moves whole; the MLflow database is a file (and SQLite's files)
        # in a folder that holds other state (MIA_HOME itself, by default)
        paths = _local_state(cfg, part.component, part.target) \
            if part.component == "mlflow_db" else [part.target]
        moves += [(p, p.with_name(f"{p.name}.{suffix}")) for p in paths]
    taken = [aside for _, aside in moves if aside.exists()]
    if taken:
        raise OperationalError(f"restore: {taken[0]} exists already; move it away or choose "
                               "another suffix")
    for path, aside in moves:
        os.replace(path, aside)
    return [aside for _, aside in moves]


def file_mode(entry: dict[str, Any]) -> int:
    """:return: a manifest entry's permission bits; a manifest from before they were recorded:
    0600 for the executor's state (what it creates), 0644 for the rest."""
    mode = entry.get("mode")
    if mode is None:
        return 0o600 if entry["component"] == "executor" else 0o644
    return int(str(mode), 8) & 0o777


def restore(cfg: Config, *, key: str | None = None, at: datetime | None = None,
            store: ObjectStore | None = None, components: Sequence[str] = COMPONENTS,
            overwrite: bool = False, set_aside: str | None = None) -> RestoreResult:
    """Bring a backup back to this configuration's paths (module doc).

    :param cfg: configuration: where MIA_HOME, the SQLite store and the artifact root are.
    :param key: the backup; ``None``: the newest at or before ``at`` (or the newest of all).
    :param at: a tz-aware time; see ``key``.
    :param store: default :func:`~mia.pipelines.backup_layout.store_for`.
    :param components: which parts to restore.
    :param overwrite: replace existing files whose content differs (default: refuse, before
        writing anything).
    :param set_aside: first move the local state of every component that differs from the
        backup to ``<path>.<set_aside>``, so the restore lands in clean places.
    :raises OperationalError: no such backup, a differing file without ``overwrite`` or
        ``set_aside``, a running executor, or an object whose content does not match its hash.
    """
    target = store or store_for(cfg)
    doc = choose(cfg, target, key=key, at=at)
    if "executor" in components:
        state = cfg.endpoints.mia_home / "executor"
        pid = executor_running(state)
        if pid is not None:
            raise OperationalError(f"an executor (pid {pid}) is writing {state}; stop it "
                                   "before restoring its state")
    moved: list[Path] = []
    if set_aside:
        plan = plan_restore(cfg, key=str(doc["key"]), store=target, components=components)
        moved = _set_aside(cfg, plan, set_aside)
    skipped: dict[str, str] = {}
    writes: list[tuple[Path, str]] = []
    modes: dict[Path, int] = {}
    private: set[Path] = set()  # the executor's state: its folders are the owner's only (0700)
    for entry in doc["files"]:
        name = entry["component"]
        if name not in components:
            continue
        root, why = local_root(cfg, name)
        if root is None:
            skipped[name] = why
            continue
        writes.append((local_path(cfg, name, root, entry["path"]), entry["sha256"]))
        modes[writes[-1][0]] = file_mode(entry)
        if name == "executor":
            private.add(root)
    clash = [p for p, sha in writes if p.is_file() and content_sha256(p) != sha]
    if clash and not overwrite:
        raise OperationalError(f"restore {doc['key']}: {len(clash)} existing files differ from "
                               f"the backup (e.g. {clash[0]}); restore into a fresh MIA_HOME or "
                               "pass overwrite=True (--overwrite)")
    written: list[Path] = []
    for path, sha in writes:
        if path.is_file() and path not in clash:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.restore-{os.getpid()}")
        target.get_file(object_key(cfg, sha), part)
        if sha256(part) != sha:
            part.unlink()
            raise OperationalError(f"backup object {sha} does not match its hash; the backup "
                                   f"{doc['key']} is damaged at {path.name}")
        os.chmod(part, modes[path])
        for suffix in SIDECARS:  # the replaced database's WAL would be replayed onto this one
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        os.replace(part, path)
        written.append(path)
    for root in private:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            folder.chmod(0o700)
    return RestoreResult(key=str(doc["key"]), written=tuple(written),
                         unchanged=len(writes) - len(written), skipped=skipped,
                         moved=tuple(moved))
