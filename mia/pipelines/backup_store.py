"""Where backups go: an S3 bucket (boto3) or a folder, behind one small protocol.

:class:`S3Store` talks to ``backup.bucket`` at ``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto…) or AWS
itself, with credentials from boto3's usual chain (``AWS_ACCESS_KEY_ID`` …). Its failures become
MIA errors that say what to do: unreachable or throttled -> :class:`~mia.errors.TemporaryError`
(the DAG retries), no credentials / no bucket / access denied -> a stop with the fix.
:class:`DirectoryStore` keeps the same layout in a folder (a mounted volume, a restore drill).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mia.errors import ConfigError, OperationalError, TemporaryError

if TYPE_CHECKING:
    from mia.config import Config

_RETRY_CODES = {"RequestTimeout", "SlowDown", "ServiceUnavailable", "InternalError",
                "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


class ObjectStore(Protocol):
    """A flat key -> bytes store (keys use ``/``)."""

    @property
    def where(self) -> str:
        """Its address for messages (``s3://bucket``, ``file:///mnt/backup``)."""
        ...

    def exists(self, key: str) -> bool:
        """:return: whether ``key`` holds an object."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the file ``path`` under ``key`` (replacing it)."""
        ...

    def get_file(self, key: str, path: Path) -> None:
        """Write the object ``key`` to ``path``. :raises OperationalError: no such object."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing it)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """:return: the object ``key``. :raises OperationalError: no such object."""
        ...

    def list(self, prefix: str) -> list[str]:
        """:return: every key starting with ``prefix``, sorted."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (absent ones are ignored)."""
        ...


class DirectoryStore:
    """:class:`ObjectStore` in a local folder (created when missing).

    :param root: the folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    @property
    def where(self) -> str:
        """``file://`` URI of the folder."""
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise OperationalError(f"backup key {key!r} leaves {self.root}")
        return path

    def exists(self, key: str) -> bool:
        """:return: whether the file exists."""
        return self._path(key).is_file()

    def put_file(self, key: str, path: Path) -> None:
        """Copy ``path`` in, atomically."""
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(f".{dst.name}.part-{os.getpid()}")
        shutil.copyfile(path, part)
        os.replace(part, dst)

    def get_file(self, key: str, path: Path) -> None:
        """Copy the object out."""
        if not self.exists(key):
            raise OperationalError(f"no object {key} in {self.where}")
        shutil.copyfile(self._path(key), path)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data``, atomically."""
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(f".{dst.name}.part-{os.getpid()}")
        part.write_bytes(data)
        os.replace(part, dst)

    def get_bytes(self, key: str) -> bytes:
        """:return: the file's bytes."""
        if not self.exists(key):
            raise OperationalError(f"no object {key} in {self.where}")
        return self._path(key).read_bytes()

    def list(self, prefix: str) -> list[str]:
        """:return: keys under ``prefix`` (in-flight ``.part`` files excluded)."""
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and not p.name.startswith("."))
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the files."""
        for key in keys:
            self._path(key).unlink(missing_ok=True)


class S3Store:
    """:class:`ObjectStore` on one S3 bucket.

    :param bucket: the bucket (``backup.bucket``), which must exist.
    :param client: a boto3 S3 client.
    """

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    @classmethod
    def from_config(cls, cfg: Config) -> S3Store:
        """:return: the store of ``backup.bucket`` at ``AWS_ENDPOINT_URL`` (AWS when unset)."""
        import boto3

        client = boto3.client("s3", endpoint_url=cfg.endpoints.s3_endpoint_url,
                              region_name=cfg.endpoints.aws_region)
        return cls(cfg.params.backup.bucket, client)

    @property
    def where(self) -> str:
        """``s3://bucket`` (and the endpoint when not AWS)."""
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", "")
        return f"s3://{self.bucket}" + (f" at {endpoint}" if endpoint and
                                        "amazonaws.com" not in endpoint else "")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            yield
        except NoCredentialsError as exc:
            raise ConfigError(f"no S3 credentials while {doing}: set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a non-AWS "
                              "store)") from exc
        except EndpointConnectionError as exc:
            raise TemporaryError(f"S3 at {self.where} is unreachable while {doing} ({exc}); "
                                 "check AWS_ENDPOINT_URL and that the server runs") from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code == "NoSuchBucket":
                raise OperationalError(f"bucket {self.bucket} does not exist ({doing}); create "
                                       "it or set backup.bucket in params.yaml") from exc
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise OperationalError(f"S3 refused {doing} on {self.where}: {code}; check the "
                                       "credentials and the bucket policy") from exc
            message = f"{code} {err.get('Message', '')}".strip()
            if code in _RETRY_CODES or status >= 500:
                raise TemporaryError(f"S3 at {self.where} failed while {doing}: {message}; "
                                     "retry") from exc
            raise OperationalError(f"S3 error while {doing} on {self.where}: {message}") from exc
        except BotoCoreError as exc:  # timeouts, broken connections mid-transfer
            raise TemporaryError(f"S3 at {self.where} failed while {doing}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """``HEAD`` the object; 404 means absent."""
        from botocore.exceptions import ClientError

        with self._errors(f"checking {key}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def put_file(self, key: str, path: Path) -> None:
        """Upload (multipart for large files, by boto3)."""
        with self._errors(f"uploading {key}"):
            self.client.upload_file(str(path), self.bucket, key)

    def get_file(self, key: str, path: Path) -> None:
        """Download."""
        with self._errors(f"downloading {key}"):
            self.client.download_file(self.bucket, key, str(path))

    def put_bytes(self, key: str, data: bytes) -> None:
        """``PUT`` a small object."""
        with self._errors(f"writing {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        """``GET`` a small object."""
        with self._errors(f"reading {key}"):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return body

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages)."""
        keys: list[str] = []
        with self._errors(f"listing {prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, keys: Sequence[str]) -> None:
        """Delete in batches of 1000 (the S3 limit per request)."""
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i: i + 1000]]
            with self._errors(f"deleting {len(batch)} objects"):
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": batch, "Quiet": True})
