"""``mia backup [--dry-run]`` and ``mia restore [--at TIME] [--what mlflow,executor,data]``.

``mia backup`` does now what the ``mia_backup`` DAG does daily: every component to
``s3://<backup.bucket>/<backup.prefix>/`` at ``$AWS_ENDPOINT_URL`` (mia.pipelines.backup), then
retention. ``--dry-run`` hashes everything and says what it would upload and delete, and writes
nothing.

``mia restore`` prints which backup it would bring back (the newest, or the newest at or before
``--at``) and, per part, what is local now. It refuses when local state differs from the
backup (restoring over it would mix two states: a journal with another journal's snapshots, a
database with a stale WAL); ``--force`` moves that state aside to
``<path>.before-restore-<UTC time>`` first, then restores. A running executor (it holds its
journal's writer lock) is never restored over: stop it first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mia.commands import load

if TYPE_CHECKING:
    from mia.pipelines.backup_store import ObjectStore

# what an operator names -> the backup's components (mia.pipelines.backup.COMPONENTS)
PARTS: dict[str, tuple[str, ...]] = {"mlflow": ("mlflow_db", "mlflow_artifacts"),
                                     "executor": ("executor",), "data": ("data", "live")}


class DryRun:
    """An object store that reads through to ``real`` and keeps every write and delete to
    itself, so a backup and its retention run in full and change nothing.

    :param real: the store a real run would write to.
    """

    def __init__(self, real: ObjectStore) -> None:
        self.real = real
        self.uploads: dict[str, int] = {}  # object key -> bytes
        self.blobs: dict[str, bytes] = {}
        self.deleted: set[str] = set()

    @property
    def where(self) -> str:
        """The real store's address."""
        return self.real.where

    def exists(self, key: str) -> bool:
        """:return: whether the object would exist."""
        return key not in self.deleted and (key in self.uploads or key in self.blobs
                                            or self.real.exists(key))

    def put_file(self, key: str, path: Path) -> None:
        """Record the upload."""
        self.uploads[key] = path.stat().st_size
        self.deleted.discard(key)

    def get_file(self, key: str, path: Path) -> None:
        """Read from the real store."""
        self.real.get_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Keep the object in memory."""
        self.blobs[key] = data
        self.deleted.discard(key)

    def get_bytes(self, key: str) -> bytes:
        """:return: the object as a real run would leave it."""
        return self.blobs[key] if key in self.blobs else self.real.get_bytes(key)

    def list(self, prefix: str) -> list[str]:
        """:return: the keys a real run would leave under ``prefix``."""
        mine = {k for k in (*self.uploads, *self.blobs) if k.startswith(prefix)}
        return sorted((set(self.real.list(prefix)) | mine) - self.deleted)

    def delete(self, keys: Sequence[str]) -> None:
        """Record the deletes."""
        self.deleted.update(keys)
        for k in keys:
            self.uploads.pop(k, None)
            self.blobs.pop(k, None)


def cmd_backup(args: argparse.Namespace) -> int:
    """Back up every component now (as the mia_backup DAG does), then apply retention."""
    from mia.clock import SystemClock
    from mia.pipelines import backup

    cfg = load(args)
    real = backup.store_for(cfg)
    store: ObjectStore = DryRun(real) if args.dry_run else real
    now = SystemClock().now().astimezone(UTC)
    r = backup.run(cfg, key=now.strftime("%Y-%m-%dT%H%M%SZ"), as_of=now, store=store)
    kept = backup.apply_retention(cfg, store=store)
    size = sum(f.size for f in r.files) / 1e6
    verb = ("would upload", "would delete") if args.dry_run else ("uploaded", "deleted")
    if args.dry_run:
        print("dry run: nothing is uploaded or deleted")
    print(f"backup {r.key}: {len(r.files)} files ({size:.1f} MB); {verb[0]} {r.uploaded} new "
          f"objects ({r.uploaded_bytes / 1e6:.1f} MB) and the manifest {r.manifest} to "
          f"{real.where}")
    for name, why in r.skipped.items():
        print(f"  skipped {name}: {why}")
    print(f"retention (backup.retention_days {cfg.params.backup.retention_days}): "
          f"{len(kept.kept)} backups kept; {verb[1]} {list(kept.deleted) or 'no backups'} and "
          f"{kept.deleted_objects} objects")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Say what would be restored; refuse over differing local state unless ``--force``."""
    from mia.clock import SystemClock
    from mia.errors import OperationalError
    from mia.pipelines import backup
    from mia.pipelines.backup_restore import executor_running

    cfg = load(args)
    state = cfg.endpoints.mia_home / "executor"
    pid = executor_running(state) if "executor" in args.what else None
    if pid is not None:  # first: no plan or --force helps while it writes
        raise OperationalError(f"an executor (pid {pid}) is writing {state}; stop it first "
                               "(sudo systemctl stop mia-executor), then restore")
    store = backup.store_for(cfg)
    plan = backup.plan_restore(cfg, at=args.at, store=store, components=args.what)
    print("\n".join(plan.lines()))
    if not plan.parts:
        raise OperationalError(f"backup {plan.key} holds none of {', '.join(args.what)}")
    if plan.occupied and not args.force:
        parts = ", ".join(f"{p.component} ({p.target}, {p.local_files} files)"
                          for p in plan.occupied)
        raise OperationalError(f"local state is not empty and differs from backup {plan.key}: "
                               f"{parts}; stop what writes it, then pass --force to move it "
                               "aside (<path>.before-restore-<time>) and restore")
    here = [p for p in plan.parts if p.target is not None]
    if here and all(p.local == "same" for p in here):
        print(f"nothing to restore: local state already is backup {plan.key}")
        return 0
    stamp = SystemClock().now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    r = backup.restore(cfg, key=plan.key, store=store, components=args.what,
                       set_aside=f"before-restore-{stamp}" if args.force else None)
    for path in r.moved:
        print(f"  moved aside: {path}")
    print(f"restored {r.key}: {len(r.written)} files written, {r.unchanged} unchanged")
    for name, why in r.skipped.items():
        print(f"  skipped {name}: {why}")
    return 0


def parse_what(text: str) -> tuple[str, ...]:
    """``mlflow,executor`` -> the backup components they name.

    :raises argparse.ArgumentTypeError: an unknown or empty name.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: use a comma list of {', '.join(PARTS)}")
    return tuple(c for n in PARTS if n in names for c in PARTS[n])


def parse_at(text: str) -> datetime:
    """An ISO 8601 time with its zone (``2024-01-26T14:05:00Z``), or a date, meaning the end of
    that UTC day.

    :raises argparse.ArgumentTypeError: not a time, or a time without a zone.
    """
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            return datetime.combine(day + timedelta(days=1), time(), UTC) - timedelta(
                microseconds=1)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 2024-01-26T14:05:00Z "
                                         "or a date like 2024-01-26") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone; add Z (UTC) or an offset")
    return at


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``backup`` and ``restore`` to the ``mia`` parser.

    :param top: the top-level subparsers.
    :param common: parent parser with ``--params`` and ``--home``.
    """
    b = top.add_parser(
        "backup", parents=[common],
        help="back up MLflow, the executor's state and the data to S3 now, then retention",
        description="Content-addressed backup to s3://<backup.bucket>/<backup.prefix>/ at "
        "$AWS_ENDPOINT_URL (credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), keyed by "
        "the UTC time; then backups older than backup.retention_days are deleted.")
    b.add_argument("--dry-run", action="store_true",
                   help="say what would be uploaded and deleted; write nothing")
    b.set_defaults(func=cmd_backup)
    r = top.add_parser(
        "restore", parents=[common],
        help="bring a backup back from S3 (refuses over differing local state without --force)",
        description="Prints the backup it restores and, per part, what is local now; refuses "
        "when local state differs from it unless --force, which moves that state aside to "
        "<path>.before-restore-<UTC time> first. Stop the executor before restoring its state.")
    r.add_argument("--at", type=parse_at, default=None, metavar="TIMESTAMP",
                   help="the newest backup at or before this time (ISO 8601 with a zone, or a "
                        "date: its end, UTC); default: the newest")
    r.add_argument("--what", type=parse_what, default=tuple(c for v in PARTS.values() for c in v),
                   metavar="PARTS", help=f"comma list of {', '.join(PARTS)} (default: all)")
    r.add_argument("--force", action="store_true",
                   help="move differing local state aside and restore")
    r.set_defaults(func=cmd_restore)
