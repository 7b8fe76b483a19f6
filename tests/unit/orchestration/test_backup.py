"""Backup stage: content-addressed upload, idempotent reruns, retention by recorded time,
verified restore; the S3 store's calls and error mapping."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mia.config import load_config
from mia.errors import OperationalError, TemporaryError
from mia.pipelines import backup
from mia.pipelines.backup_store import DirectoryStore, S3Store

REPO = Path(__file__).resolve().parents[3]
DAY = datetime(2024, 1, 26, 0, 30, tzinfo=UTC)


def _cfg(home: Path, tracking: str | None = None):
    return load_config(REPO / "params.yaml", env={
        "MIA_HOME": str(home),
        "MLFLOW_TRACKING_URI": tracking or f"sqlite:///{home}/mlflow.db"})


def _home(home: Path) -> Path:
    (home / "executor" / "snapshots").mkdir(parents=True)
    (home / "executor" / "journal.jsonl").write_text('{"seq": 1, "kind": "fill"}\n')
    (home / "executor" / "snapshots" / "state-1.json").write_text('{"position": 2}')
    raw = home / "data" / "raw" / "symbol=ES"
    raw.mkdir(parents=True)
    (raw / "date=2024-01-02.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    (raw / "date=2024-01-03.parquet").write_bytes(b"PAR1" + bytes(range(100)) + b"PAR1")
    (raw / ".date=2024-01-04.parquet.tmp-99").write_bytes(b"half written")
    live = home / "live" / "features" / "symbol=ES"
    live.mkdir(parents=True)
    # same bytes as a raw partition: stored once
    (live / "date=2024-01-26.parquet").write_bytes(b"PAR1" + bytes(range(100)) + b"PAR1")
    art = home / "mlartifacts" / "mia-ES" / "run1"
    art.mkdir(parents=True)
    (art / "bundle.json").write_text('{"symbol": "ES"}')
    with sqlite3.connect(home / "mlflow.db") as db:
        db.execute("create table runs (id text)")
        db.execute("insert into runs values ('abc')")
    return home


def test_backup_uploads_each_content_once_and_a_rerun_uploads_nothing(tmp_path):
    cfg = _cfg(_home(tmp_path / "home"))
    store = DirectoryStore(tmp_path / "bucket")
    first = backup.run(cfg, key="2024-01-26", as_of=DAY, store=store)
    paths = {(f.component, f.path) for f in first.files}
    assert ("executor", "journal.jsonl") in paths
    assert ("data", "raw/symbol=ES/date=2024-01-02.parquet") in paths
    assert ("mlflow_db", "mlflow.db") in paths
    assert ("mlflow_artifacts", "mia-ES/run1/bundle.json") in paths
    assert not any(".tmp" in p for _, p in paths)  # an atomic write in flight is not state
    assert first.uploaded == len({f.sha256 for f in first.files}) == len(first.files) - 1
    again = backup.run(cfg, key="2024-01-26", as_of=DAY, store=store)
    assert again.uploaded == 0
    assert again.files == first.files
    assert store.list("mia/manifests/") == ["mia/manifests/2024-01-26.json"]


def test_restore_into_a_fresh_home_brings_back_every_file_verified(tmp_path):
    src = _home(tmp_path / "home")
    store = DirectoryStore(tmp_path / "bucket")
    backup.run(_cfg(src), key="2024-01-26", as_of=DAY, store=store)
    fresh = tmp_path / "fresh"
    result = backup.restore(_cfg(fresh), store=store)
    assert result.key == "2024-01-26"
    assert result.unchanged == 0
    for rel in ("executor/journal.jsonl", "data/raw/symbol=ES/date=2024-01-02.parquet",
                "live/features/symbol=ES/date=2024-01-26.parquet",
                "mlartifacts/mia-ES/run1/bundle.json"):
        assert (fresh / rel).read_bytes() == (src / rel).read_bytes()
    with sqlite3.connect(fresh / "mlflow.db") as db:
        assert db.execute("select id from runs").fetchall() == [("abc",)]
    assert backup.restore(_cfg(fresh), store=store).written == ()  # nothing left to do


def test_restore_refuses_to_overwrite_a_differing_file_unless_told(tmp_path):
    home = _home(tmp_path / "home")
    store = DirectoryStore(tmp_path / "bucket")
    backup.run(_cfg(home), key="k1", as_of=DAY, store=store)
    journal = home / "executor" / "journal.jsonl"
    journal.write_text("changed after the backup\n")
    with pytest.raises(OperationalError, match="differ"):
        backup.restore(_cfg(home), store=store)
    assert journal.read_text() == "changed after the backup\n"  # refused before writing
    backup.restore(_cfg(home), store=store, overwrite=True)
    assert journal.read_text() == '{"seq": 1, "kind": "fill"}\n'


def test_a_damaged_object_is_detected_on_restore(tmp_path):
    home = _home(tmp_path / "home")
    store = DirectoryStore(tmp_path / "bucket")
    result = backup.run(_cfg(home), key="k1", as_of=DAY, store=store)
    sha = next(f.sha256 for f in result.files if f.path == "journal.jsonl")
    store.put_bytes(f"mia/objects/{sha[:2]}/{sha}", b"bit rot")
    with pytest.raises(OperationalError, match="damaged"):
        backup.restore(_cfg(tmp_path / "fresh"), store=store, components=["executor"])


def test_retention_counts_from_the_newest_backup_and_collects_orphans(tmp_path):
    home = _home(tmp_path / "home")
    cfg = _cfg(home)  # backup.retention_days: 30
    store = DirectoryStore(tmp_path / "bucket")
    backup.run(cfg, key="day-01", as_of=DAY, store=store)
    only_old = home / "executor" / "snapshots" / "state-1.json"
    old_sha = next(f.sha256 for f in backup.run(cfg, key="day-01", as_of=DAY, store=store).files
                   if f.path == "snapshots/state-1.json")
    only_old.unlink()
    backup.run(cfg, key="day-20", as_of=DAY + timedelta(days=19), store=store)
    backup.run(cfg, key="day-40", as_of=DAY + timedelta(days=39), store=store)
    result = backup.apply_retention(cfg, store=store)
    assert result.deleted == ("day-01",)
    assert result.kept == ("day-20", "day-40")
    assert result.deleted_objects == 1
    assert not store.exists(f"mia/objects/{old_sha[:2]}/{old_sha}")
    assert backup.restore(_cfg(tmp_path / "fresh"), store=store, key="day-20").written


def test_server_tracking_store_is_skipped_with_the_reason_and_no_password(tmp_path):
    cfg = _cfg(_home(tmp_path / "home"), "postgresql://mia:s3cret@db.local:5432/mlflow")  # noqa: S105 - a test's own credential
    result = backup.run(cfg, key="k", as_of=DAY, store=DirectoryStore(tmp_path / "b"),
                        components=["mlflow_db", "executor"])
    assert "db.local:5432/mlflow" in result.skipped["mlflow_db"]
    assert "s3cret" not in json.dumps(result.skipped)
    assert {f.component for f in result.files} == {"executor"}


def test_bad_requests_fail_before_any_upload(tmp_path):
    cfg = _cfg(_home(tmp_path / "home"))
    store = DirectoryStore(tmp_path / "b")
    with pytest.raises(OperationalError, match="unknown"):
        backup.run(cfg, key="k", as_of=DAY, store=store, components=["journal"])
    with pytest.raises(OperationalError, match="naive"):
        backup.run(cfg, key="k", as_of=DAY.replace(tzinfo=None), store=store)
    with pytest.raises(OperationalError, match="no backup"):
        backup.restore(cfg, store=store)
    assert store.list("") == []


# --- the S3 store: boto3's real client with botocore's Stubber in front of the network ---

@pytest.fixture
def s3():
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="test", aws_secret_access_key="test")  # noqa: S106
    with Stubber(client) as stub:
        yield S3Store("mia-backups", client), stub
        stub.assert_no_pending_responses()


def test_s3_store_maps_calls_and_absent_objects(s3):
    store, stub = s3
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404,
                          expected_params={"Bucket": "mia-backups", "Key": "mia/objects/ab/x"})
    stub.add_response("head_object", {}, {"Bucket": "mia-backups", "Key": "mia/objects/ab/y"})
    stub.add_response("put_object", {}, {"Bucket": "mia-backups", "Key": "mia/manifests/k.json",
                                         "Body": b"{}"})
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "mia/manifests/b.json"}],
                                          "IsTruncated": True, "NextContinuationToken": "t"},
                      {"Bucket": "mia-backups", "Prefix": "mia/manifests/"})
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "mia/manifests/a.json"}],
                                          "IsTruncated": False},
                      {"Bucket": "mia-backups", "Prefix": "mia/manifests/",
                       "ContinuationToken": "t"})
    from botocore.response import StreamingBody

    stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b"{}"), 2)},
                      {"Bucket": "mia-backups", "Key": "mia/manifests/a.json"})
    stub.add_response("delete_objects", {}, {"Bucket": "mia-backups", "Delete": {
        "Objects": [{"Key": "mia/objects/ab/x"}], "Quiet": True}})
    assert store.exists("mia/objects/ab/x") is False
    assert store.exists("mia/objects/ab/y") is True
    store.put_bytes("mia/manifests/k.json", b"{}")
    assert store.list("mia/manifests/") == ["mia/manifests/a.json", "mia/manifests/b.json"]
    assert store.get_bytes("mia/manifests/a.json") == b"{}"
    store.delete(["mia/objects/ab/x"])
    store.delete([])  # no request for nothing


def test_s3_store_errors_say_retry_or_what_to_fix(s3):
    store, stub = s3
    stub.add_client_error("put_object", service_error_code="NoSuchBucket", http_status_code=404)
    stub.add_client_error("put_object", service_error_code="SlowDown", http_status_code=503)
    stub.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(OperationalError, match="does not exist.*backup.bucket"):
        store.put_bytes("k", b"x")
    with pytest.raises(TemporaryError, match="SlowDown"):
        store.put_bytes("k", b"x")
    with pytest.raises(OperationalError, match="credentials and the bucket policy"):
        store.put_bytes("k", b"x")


def test_backup_and_restore_through_a_real_s3_server(tmp_path):
    moto_server = pytest.importorskip(
        "moto.server", reason="moto is not installed (not in requirements.lock): the S3 "
                              "round trip runs where `pip install moto[server]` was done")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", region_name="us-east-1",
                              endpoint_url=f"http://{host}:{port}",
                              aws_access_key_id="test", aws_secret_access_key="test")  # noqa: S106
        client.create_bucket(Bucket="mia-backups")
        store = S3Store("mia-backups", client)
        home = _home(tmp_path / "home")
        first = backup.run(_cfg(home), key="k1", as_of=DAY, store=store)
        assert backup.run(_cfg(home), key="k1", as_of=DAY, store=store).uploaded == 0
        restored = backup.restore(_cfg(tmp_path / "fresh"), store=store)
        assert len(restored.written) == len(first.files)
    finally:
        server.stop()


@pytest.mark.parametrize(("entry", "mode"), [
    ({"component": "executor", "mode": "0600"}, 0o600),
    ({"component": "data", "mode": "0644"}, 0o644),
    ({"component": "executor"}, 0o600),  # a manifest from before modes were recorded
    ({"component": "data"}, 0o644),
    ({"component": "executor", "mode": "104755"}, 0o755),  # only the permission bits
])
def test_a_restored_file_gets_the_mode_it_was_backed_up_with(entry, mode):
    from mia.pipelines.backup_restore import file_mode

    assert file_mode(entry) == mode
