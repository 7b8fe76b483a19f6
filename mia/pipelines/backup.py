"""Stage ``backup``: MLflow's store, the executor's state and the data partitions to S3; restore.

Content-addressed, so a daily backup uploads only what changed and a rerun uploads nothing::

    <prefix>/objects/<sha256[:2]>/<sha256>    one object per distinct file content
    <prefix>/manifests/<key>.json             one per backup: every file's component, path, hash

A backup copies each file to a scratch folder first (the executor may rotate a snapshot while it
is read), hashes the copy, uploads it unless its object exists, and writes its manifest last: a
manifest only names objects already stored, so a backup is either complete or invisible. An
SQLite file (the executor's journal and paper broker, in WAL mode while the executor writes) is
copied with SQLite's online backup, which includes what its ``-wal`` holds; the ``-wal`` /
``-shm`` / ``-journal`` files beside it are not copied (a file copy of a database and of its WAL
taken at two moments can lose committed records). Components, each relative to its root:

- ``mlflow_db``: a SQLite tracking store, copied with SQLite's online backup (a consistent copy
  while MLflow writes); a server store (Postgres, an http server) is skipped with the reason —
  back it up with the database's own tools;
- ``mlflow_artifacts``: a local artifact root (an ``s3://`` one already lives in S3: skipped);
- ``executor``, ``data``, ``live``: ``<MIA_HOME>/executor`` (journal, snapshots, checkpoints),
  ``<MIA_HOME>/data`` (raw and feature partitions), ``<MIA_HOME>/live`` (live feature log).

Retention (``backup.retention_days``) deletes manifests older than that before the newest
backup's ``as_of`` (recorded times, never the clock), then every object no remaining manifest
names. :func:`restore` and :func:`plan_restore` (:mod:`mia.pipelines.backup_restore`) bring a
backup back, verifying every hash. One backup at a time per prefix (the DAG's
``max_active_runs=1``): retention must not collect a concurrent backup's objects.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines.backup_layout import (
    COMPONENTS,
    FORMAT,
    consistent_copy,
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
from mia.pipelines.backup_restore import RestorePlan, RestoreResult, plan_restore, restore
from mia.pipelines.backup_store import DirectoryStore, ObjectStore

__all__ = ["COMPONENTS", "FORMAT", "BackupResult", "FileEntry", "RestorePlan", "RestoreResult",
           "RetentionResult", "apply_retention", "main", "plan_restore", "restore", "run",
           "store_for"]


class _Source(Protocol):
    def __call__(self, cfg: Config, scratch: Path) -> tuple[Path | None, str]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class FileEntry:
    """One backed-up file: ``component``/``path`` (POSIX, relative), content hash, bytes."""

    component: str
    path: str
    sha256: str
    size: int
    mode: int = 0o600  # permission bits, restored with the file


@dataclass(frozen=True, kw_only=True)
class BackupResult:
    """What :func:`run` stored.

    :param key: the backup's key. :param manifest: its manifest's object key.
    :param files: every file in the backup. :param uploaded: objects uploaded now (the rest
        were stored already). :param uploaded_bytes: their size.
    :param skipped: component -> why it is not in the backup.
    """

    key: str
    manifest: str
    files: tuple[FileEntry, ...]
    uploaded: int
    uploaded_bytes: int
    skipped: dict[str, str] = field(default_factory=dict)

    def to_xcom(self, where: str) -> dict[str, Any]:
        """:param where: the store's address. :return: the task's XCom value."""
        return {"key": self.key, "manifest": f"{where}/{self.manifest}", "files": len(self.files),
                "bytes": sum(f.size for f in self.files), "uploaded": self.uploaded,
                "uploaded_bytes": self.uploaded_bytes, "skipped": self.skipped}


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionResult:
    """Backups kept and deleted, objects deleted."""

    kept: tuple[str, ...]
    deleted: tuple[str, ...]
    deleted_objects: int


def _mlflow_db(cfg: Config, scratch: Path) -> tuple[Path | None, str]:
    uri = cfg.endpoints.mlflow_tracking_uri
    db = sqlite_path(uri)
    if db is None:
        server = uri.split("@")[-1] if "@" in uri else uri  # never write a password down
        return None, f"tracking store {server} is a server: back it up with its own tools"
    if not db.is_file():
        return None, f"no MLflow database at {db} yet"
    copy = scratch / "mlflow_db" / "mlflow.db"
    copy.parent.mkdir(parents=True)
    consistent_copy(db, copy)  # SQLite's online backup, even while MLflow writes
    return copy.parent, ""


def _artifacts(cfg: Config, scratch: Path) -> tuple[Path | None, str]:
    root = cfg.endpoints.mlflow_artifact_root
    if "://" in root and not root.startswith("file://"):
        return None, f"artifact root {root} is remote storage already"
    path = Path(root.removeprefix("file://"))
    return (path, "") if path.is_dir() else (None, f"no artifact folder at {path} yet")


def _home(name: str) -> _Source:
    def source(cfg: Config, scratch: Path) -> tuple[Path | None, str]:
        path = cfg.endpoints.mia_home / name
        return (path, "") if path.is_dir() else (None, f"no {path} yet")

    return source


_SOURCES: dict[str, _Source] = {"mlflow_db": _mlflow_db, "mlflow_artifacts": _artifacts,
                                "executor": _home("executor"), "data": _home("data"),
                                "live": _home("live")}


def run(cfg: Config, *, key: str, as_of: datetime, store: ObjectStore | None = None,
        components: Sequence[str] = COMPONENTS) -> BackupResult:
    """Back up the components (module docstring) as backup ``key``.

    :param cfg: configuration (``backup``; endpoints from the environment).
    :param key: the backup's key, e.g. the DAG partition ``2024-01-26``; a rerun with the same
        key replaces that backup's manifest.
    :param as_of: the time the backup stands for (tz-aware): retention counts from it.
    :param store: where to; default :func:`store_for` (S3).
    :param components: a subset of :data:`COMPONENTS`.
    :raises OperationalError: an unknown component, a naive ``as_of``, or the store refuses.
    :raises TemporaryError: the store is unreachable.
    """
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown or as_of.tzinfo is None or not key or "/" in key:
        raise OperationalError(f"backup: components {unknown} unknown (use {COMPONENTS}), or "
                               f"as_of {as_of} naive, or key {key!r} empty or with '/'")
    target = store or store_for(cfg)
    entries: list[FileEntry] = []
    skipped: dict[str, str] = {}
    uploaded = uploaded_bytes = 0
    with tempfile.TemporaryDirectory(prefix="mia-backup-") as tmp:
        scratch = Path(tmp)
        for name in components:
            root, why = _SOURCES[name](cfg, scratch)
            if root is None:
                skipped[name] = why
                continue
            for path in state_files(root):
                copy = scratch / "copy"
                try:
                    if sidecar(path):
                        continue
                    mode = path.stat().st_mode & 0o777
                    consistent_copy(path, copy)
                except FileNotFoundError:  # rotated away while we read the folder
                    continue
                sha, size = sha256(copy), copy.stat().st_size
                obj = object_key(cfg, sha)
                if not target.exists(obj):
                    target.put_file(obj, copy)
                    uploaded, uploaded_bytes = uploaded + 1, uploaded_bytes + size
                entries.append(FileEntry(component=name, path=path.relative_to(root).as_posix(),
                                         sha256=sha, size=size, mode=mode))
    manifest = {"format": FORMAT, "key": key, "as_of": as_of.isoformat(),
                "mia_home": str(cfg.endpoints.mia_home), "skipped": skipped,
                "files": [{"component": e.component, "path": e.path, "sha256": e.sha256,
                           "size": e.size, "mode": f"{e.mode:04o}"} for e in entries]}
    mkey = manifest_key(cfg, key)
    target.put_bytes(mkey, (json.dumps(manifest, indent=1) + "\n").encode())
    return BackupResult(key=key, manifest=mkey, files=tuple(entries), uploaded=uploaded,
                        uploaded_bytes=uploaded_bytes, skipped=skipped)


def apply_retention(cfg: Config, *, store: ObjectStore | None = None) -> RetentionResult:
    """Delete backups older than ``backup.retention_days`` before the newest one, then every
    object no remaining backup names. The newest backup is always kept.

    :param cfg: configuration. :param store: default :func:`store_for`.
    """
    target = store or store_for(cfg)
    docs = manifests(cfg, target)
    if not docs:
        return RetentionResult(kept=(), deleted=(), deleted_objects=0)
    newest = max(datetime.fromisoformat(d["as_of"]) for d in docs.values())
    cutoff = newest - timedelta(days=cfg.params.backup.retention_days)
    old = sorted(k for k, d in docs.items() if datetime.fromisoformat(d["as_of"]) < cutoff)
    target.delete(old)
    kept = {k: d for k, d in docs.items() if k not in old}
    named = {object_key(cfg, f["sha256"]) for d in kept.values() for f in d["files"]}
    orphans = [o for o in target.list(f"{prefix(cfg)}/objects/") if o not in named]
    target.delete(orphans)
    return RetentionResult(kept=tuple(sorted(d["key"] for d in kept.values())),
                           deleted=tuple(docs[k]["key"] for k in old),
                           deleted_objects=len(orphans))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.backup {backup,restore,prune} [--key K] [--to DIR] …``."""
    from datetime import UTC

    from mia.clock import SystemClock
    from mia.pipelines._stage import stage_config

    def add(parser: Any) -> None:
        parser.add_argument("action", choices=["backup", "restore", "prune"])
        parser.add_argument("--key", default=None, help="backup key (default: today, UTC)")
        parser.add_argument("--to", type=Path, default=None,
                            help="a folder instead of the S3 bucket (e.g. a mounted volume)")
        parser.add_argument("--overwrite", action="store_true", help="restore over files")

    cfg, args = stage_config("backup", __doc__, argv, add)
    store: ObjectStore = DirectoryStore(args.to) if args.to else store_for(cfg)
    if args.action == "backup":
        now = SystemClock().now().astimezone(UTC)
        r = run(cfg, key=args.key or now.date().isoformat(), as_of=now, store=store)
        print(f"backup {r.key}: {len(r.files)} files, {r.uploaded} new objects "
              f"({r.uploaded_bytes / 1e6:.1f} MB) -> {store.where}/{r.manifest}")
        for name, why in r.skipped.items():
            print(f"  skipped {name}: {why}")
    elif args.action == "prune":
        k = apply_retention(cfg, store=store)
        print(f"kept {len(k.kept)} backups, deleted {list(k.deleted)} and {k.deleted_objects} "
              "objects")
    else:
        rr = restore(cfg, key=args.key, store=store, overwrite=args.overwrite)
        print(f"restored {rr.key}: {len(rr.written)} files written, {rr.unchanged} unchanged")
        for name, why in rr.skipped.items():
            print(f"  skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
