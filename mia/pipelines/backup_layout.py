"""What a backup is made of, shared by :mod:`mia.pipelines.backup` and ``backup_restore``.

The bucket's layout (content-addressed objects, one manifest per backup), the components and
where each lives locally, and the file rules: which files are state, how a file is hashed, and
how an SQLite database is copied consistently while its writer runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines.backup_store import ObjectStore, S3Store

FORMAT = 1
COMPONENTS = ("mlflow_db", "mlflow_artifacts", "executor", "data", "live")
SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's files beside a database
_CHUNK = 1 << 20
_SQLITE = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def store_for(cfg: Config) -> S3Store:
    """:return: the S3 bucket ``backup.bucket`` at ``AWS_ENDPOINT_URL`` (AWS when unset)."""
    return S3Store.from_config(cfg)


def prefix(cfg: Config) -> str:
    """:return: ``backup.prefix`` without surrounding slashes."""
    return cfg.params.backup.prefix.strip("/")


def object_key(cfg: Config, sha: str) -> str:
    """:return: the key of the object holding content ``sha``."""
    return f"{prefix(cfg)}/objects/{sha[:2]}/{sha}"


def manifest_key(cfg: Config, key: str) -> str:
    """:return: the key of backup ``key``'s manifest."""
    return f"{prefix(cfg)}/manifests/{key}.json"


def sqlite_path(uri: str) -> Path | None:
    """:return: the database file of a ``sqlite:///`` tracking URI, else ``None``."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def sha256(path: Path) -> str:
    """:return: the hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_sqlite(path: Path) -> bool:
    """:return: whether ``path`` is an SQLite database file (by its header)."""
    with path.open("rb") as f:
        return f.read(len(_SQLITE)) == _SQLITE


def sidecar(path: Path) -> bool:
    """:return: whether ``path`` is SQLite's ``-wal`` / ``-shm`` / ``-journal`` of a database
    beside it (an online copy of the database holds their data)."""
    for suffix in SIDECARS:
        base = path.with_name(path.name.removesuffix(suffix))
        if path.name.endswith(suffix) and base.is_file() and is_sqlite(base):
            return True
    return False


def consistent_copy(path: Path, dst: Path) -> None:
    """Copy a file to ``dst``; an SQLite database with SQLite's online backup, which gives a
    consistent copy, WAL content included, while its writer (the executor, MLflow) runs.

    :param path: the file. :param dst: the copy (replaced).
    """
    dst.unlink(missing_ok=True)
    if not is_sqlite(path):
        shutil.copyfile(path, dst)
        return
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as src, \
            closing(sqlite3.connect(dst)) as out:
        src.backup(out)


def content_sha256(path: Path) -> str:
    """:return: the hash a backup of ``path`` records: of the file, or, for an SQLite database,
    of its consistent copy (the live file's bytes differ from it while holding the same data)."""
    if not is_sqlite(path):
        return sha256(path)
    with tempfile.TemporaryDirectory(prefix="mia-hash-") as tmp:
        copy = Path(tmp) / "copy"
        consistent_copy(path, copy)
        return sha256(copy)


def state_files(root: Path) -> Iterator[Path]:
    """:return: the files under ``root`` that are state, sorted (temporary files of atomic
    writes, ``.name.tmp-<pid>`` and hidden files, are not)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and ".tmp" not in path.suffixes:
            yield path


def manifests(cfg: Config, store: ObjectStore) -> dict[str, dict[str, Any]]:
    """:return: manifest key -> manifest of every backup in ``store``.
    :raises OperationalError: a manifest of another format."""
    out = {}
    for obj in store.list(f"{prefix(cfg)}/manifests/"):
        doc = json.loads(store.get_bytes(obj))
        if doc.get("format") != FORMAT:
            raise OperationalError(f"backup manifest {obj} has format {doc.get('format')!r}; "
                                   f"this MIA reads format {FORMAT}")
        out[obj] = doc
    return out


def local_root(cfg: Config, component: str) -> tuple[Path | None, str]:
    """:return: where a component lives on this machine, or ``None`` and why it cannot be
    restored here (a server tracking store, a remote artifact root)."""
    if component == "mlflow_db":
        db = sqlite_path(cfg.endpoints.mlflow_tracking_uri)
        return (None, "the tracking store is not SQLite") if db is None else (db.parent, "")
    if component == "mlflow_artifacts":
        root = cfg.endpoints.mlflow_artifact_root
        if "://" in root and not root.startswith("file://"):
            return None, f"artifact root {root} is remote"
        return Path(root.removeprefix("file://")), ""
    return cfg.endpoints.mia_home / component, ""


def local_path(cfg: Config, component: str, root: Path, rel: str) -> Path:
    """:return: where a backed-up file goes: ``root / rel``; the MLflow database (stored as
    ``mlflow.db``) goes to the tracking URI's own file name."""
    db = sqlite_path(cfg.endpoints.mlflow_tracking_uri)
    if component == "mlflow_db" and db is not None and rel == "mlflow.db":
        return db
    return root / rel
