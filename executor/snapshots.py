"""Snapshot files: the executor's state at a journal position, written atomically, the newest kept.

A snapshot is the state (:meth:`executor.state.LiveState.to_dict`) after journal record ``seq``,
so recovery loads it and replays only the records after ``seq`` instead of the whole journal.
It names the journal it belongs to (``journal_id``): a journal replaced by another one (deleted,
or restored from an older backup) never replays onto a foreign snapshot.

Writing is atomic (a temp file in the same folder, fsync, ``os.replace``, fsync of the folder:
the classic recipe that ext4's and XFS's documentation give for crash-safe replacement): a crash
mid-write leaves the previous snapshots untouched and at most a stale temp file, which the next
write removes. Files are ``0600`` in a ``0700`` folder. A file that fails to parse, whose
checksum does not match or that lacks a field is skipped with a warning, and the one before it
is used (design.md section 8: corrupt state is worse than old state, since the journal replays
the difference).

File name: ``snapshot-<seq:016d>-<taken_ns:019d>.json``, so names sort oldest to newest.
Content: ``{"format": 1, "sha256": <hex of the canonical body>, "snapshot": <body>}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from executor.journal import private_dir
from mia.errors import ConfigError, OperationalError

FORMAT: Final[int] = 1
_NAME: Final = re.compile(r"^snapshot-(\d{16})-(\d{19})\.json$")
_TMP_PREFIX: Final[str] = ".snapshot-"
log = logging.getLogger(__name__)


class SnapshotError(OperationalError):
    """A snapshot file cannot be read (recovery skips it and uses the one before)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """The executor's state at one journal position.

    :param journal_id: the id of the journal the state was built from (``Journal.journal_id``).
    :param seq: the last journal record the state includes.
    :param taken_ns: when it was taken, ns since the epoch (UTC).
    :param state: the state as plain JSON-able data (``LiveState.to_dict``).
    """

    journal_id: str
    seq: int
    taken_ns: int
    state: Mapping[str, Any]


class Loaded(NamedTuple):
    """The snapshot recovery starts from.

    :param path: its file, ``None`` when there was none (clean start).
    :param snapshot: the snapshot, ``None`` for a clean start.
    :param skipped: one line per newer file that was not usable, and why.
    """

    path: Path | None
    snapshot: Snapshot | None
    skipped: tuple[str, ...]


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()


class SnapshotStore:
    """The folder of snapshot files (module doc).

    :param directory: e.g. ``<MIA_HOME>/executor/snapshots`` (created ``0700``).
    :param keep: how many snapshots to keep (``executor.snapshots_kept``).
    :raises ConfigError: ``keep`` < 1.
    """

    def __init__(self, directory: Path, *, keep: int) -> None:
        if keep < 1:
            raise ConfigError(f"snapshots_kept={keep}: keep at least 1 snapshot (params.yaml "
                              "executor.snapshots_kept)")
        self.directory = private_dir(Path(directory))
        self.keep = keep

    def write(self, snap: Snapshot) -> Path:
        """Write a snapshot atomically, then delete all but the newest ``keep``.

        :param snap: the snapshot.
        :return: its file.
        :raises SnapshotError: the state is not JSON-able or the write failed (the earlier
            snapshots are untouched).
        """
        body = {"journal_id": snap.journal_id, "seq": snap.seq, "taken_ns": snap.taken_ns,
                "state": snap.state}
        try:
            canonical = _canonical(body)
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot at seq {snap.seq} is not JSON-able ({exc})") from exc
        doc = {"format": FORMAT, "sha256": hashlib.sha256(canonical).hexdigest(),
               "snapshot": body}
        final = self.directory / f"snapshot-{snap.seq:016d}-{snap.taken_ns:019d}.json"
        tmp = self.directory / f"{_TMP_PREFIX}{os.getpid()}-{snap.seq}.tmp"
        self._remove_stale_temps()
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(doc, sort_keys=True).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            self._fsync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SnapshotError(f"writing snapshot {final} failed ({exc}); the earlier "
                                "snapshots are intact: free disk space") from exc
        for old in self.paths()[self.keep:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return final

    def paths(self) -> list[Path]:
        """:return: snapshot files, newest first."""
        return sorted((p for p in self.directory.iterdir() if _NAME.match(p.name)),
                      key=lambda p: p.name, reverse=True)

    def load(self, path: Path) -> Snapshot:
        """Read and check one snapshot file.

        :param path: the file.
        :return: the snapshot.
        :raises SnapshotError: unreadable, truncated, another format, a checksum mismatch, or a
            missing field.
        """
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("format") != FORMAT:
                raise SnapshotError(f"{path.name}: format {doc.get('format')!r}, this executor "
                                    f"reads format {FORMAT}")
            body = doc["snapshot"]
            if hashlib.sha256(_canonical(body)).hexdigest() != doc["sha256"]:
                raise SnapshotError(f"{path.name}: checksum mismatch (the file was altered or "
                                    "damaged)")
            return Snapshot(journal_id=str(body["journal_id"]), seq=int(body["seq"]),
                            taken_ns=int(body["taken_ns"]), state=dict(body["state"]))
        except SnapshotError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"{path.name}: unreadable or truncated ({exc!r})") from exc

    def latest(self, *, journal_id: str | None = None, max_seq: int | None = None) -> Loaded:
        """The newest usable snapshot, skipping (with a warning) each newer one that is not.

        :param journal_id: only snapshots of this journal; ``None`` accepts any.
        :param max_seq: only snapshots at or before this journal position (a snapshot ahead of
            the journal means the journal was restored from an older backup); ``None``: any.
        :return: the snapshot and what was skipped; ``Loaded(None, None, skipped)`` if none.
        """
        skipped: list[str] = []
        for path in self.paths():
            try:
                snap = self.load(path)
            except SnapshotError as exc:
                skipped.append(str(exc))
            else:
                if journal_id is not None and snap.journal_id != journal_id:
                    skipped.append(f"{path.name}: belongs to journal {snap.journal_id}, not "
                                   f"{journal_id}")
                elif max_seq is not None and snap.seq > max_seq:
                    skipped.append(f"{path.name}: at seq {snap.seq}, after the journal's last "
                                   f"record {max_seq}")
                else:
                    self._warn(skipped)
                    return Loaded(path, snap, tuple(skipped))
        self._warn(skipped)
        return Loaded(None, None, tuple(skipped))

    @staticmethod
    def _warn(skipped: list[str]) -> None:
        for line in skipped:
            log.warning("snapshot skipped, falling back to an older one: %s", line)

    def _remove_stale_temps(self) -> None:
        # one writer per folder: any temp file here is left over from a crash mid-write
        for p in self.directory.glob(f"{_TMP_PREFIX}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable only once the folder is synced
        finally:
            os.close(fd)
