"""The journal: durable appends, idempotency keys, reads, failures that leave the file intact."""

from __future__ import annotations

import math
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executor.journal import KINDS, SCHEMA_VERSION, Journal, JournalError, to_ns
from mia.clock import TestClock
from mia.errors import OperationalError

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "state" / "journal.sqlite", clock=TestClock(T0))
    yield j
    j.close()


def _bar(i: int) -> dict[str, object]:
    return {"symbol": "ES", "ts_ns": 1_000 + i, "source_id": f"ES:{1_000 + i}"}


def _fill_up(j: Journal) -> int:
    """Append padded records until the journal refuses one; :return: how many it took."""
    for i in range(10_000):
        j.append("decision", {"i": i, "pad": "x" * 500})
    return 10_000


def _failing_batch(j: Journal) -> None:
    with j.batch():
        j.append("decision", {"i": 1})
        raise RuntimeError("the loop failed mid-bar")


def _batch_until_full(j: Journal) -> None:
    with j.batch():
        _fill_up(j)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_append_returns_after_the_record_survives_a_kill_9(tmp_path):
    path = tmp_path / "journal.sqlite"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from executor.journal import Journal\n"
        "j = Journal(Path(sys.argv[1]))\n"
        "j.append('bar', {'symbol': 'ES', 'ts_ns': 1, 'source_id': 'a'}, key='ES:1')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"  # no close, no checkpoint, no atexit
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, check=False,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    with Journal(path) as j:  # the dead writer's lock is gone with it
        assert [(r.kind, r.key, r.payload["source_id"]) for r in j.read()] == [("bar", "ES:1",
                                                                                "a")]


def test_duplicate_key_is_a_no_op_that_keeps_the_first_record(journal):
    assert journal.append("bar", _bar(1), key="ES:1001") is True
    assert journal.append("bar", {**_bar(1), "source_id": "other"}, key="ES:1001") is False
    assert journal.count() == 1
    assert journal.get("bar", "ES:1001").payload["source_id"] == "ES:1001"


def test_keys_are_unique_per_kind_and_unkeyed_records_never_deduplicate(journal):
    alert = {"level": "info", "code": "x", "message": "m"}
    assert journal.append("alert", alert)
    assert journal.append("alert", alert)
    assert journal.append("alert", alert, key="k")
    assert journal.append("decision", {"target": 1}, key="k")  # same key, another kind
    assert journal.count("alert") == 3
    assert journal.count("decision") == 1


def test_read_filters_by_kind_and_sequence_in_journal_order(journal):
    for i in range(3):
        journal.append("bar", _bar(i), key=f"ES:{1000 + i}")
        journal.append("decision", {"i": i})
    assert journal.last_seq == 6
    assert [r.seq for r in journal.read()] == [1, 2, 3, 4, 5, 6]
    assert [r.payload["i"] for r in journal.read("decision")] == [0, 1, 2]
    assert [r.seq for r in journal.read("bar", since_seq=3)] == [5]
    assert journal.last("decision").payload == {"i": 2}
    assert journal.last("fill") is None
    assert journal.get("bar", "missing") is None
    assert {r.ts_ns for r in journal.read()} == {to_ns(T0)}  # stamped by the injected clock


def test_records_cannot_be_updated_or_deleted(journal):
    journal.append("bar", _bar(0), key="ES:1000")
    raw = sqlite3.connect(journal.path)
    try:
        for sql in ("UPDATE records SET payload = '{}'", "DELETE FROM records"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(sql)
    finally:
        raw.close()
    assert journal.count() == 1


def test_full_disk_raises_operational_error_and_the_reopened_journal_is_intact(tmp_path):
    path = tmp_path / "journal.sqlite"
    j = Journal(path, max_bytes=64 * 1024)  # a 64 kB disk
    with pytest.raises(JournalError, match="full") as err:
        _fill_up(j)
    assert isinstance(err.value, OperationalError)
    written = j.count()
    assert 10 < written < 10_000
    j.close()
    with Journal(path) as again:  # no budget now: as after freeing disk space
        rows = list(again.read())
        assert [r.payload["i"] for r in rows] == list(range(written))  # no half record
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert again.append("decision", {"i": written})


def test_a_batch_is_written_entirely_or_not_at_all(tmp_path):
    j = Journal(tmp_path / "journal.sqlite", max_bytes=64 * 1024)
    with j.batch():
        assert j.append("bar", _bar(0), key="ES:1000")
        assert not j.append("bar", _bar(0), key="ES:1000")  # deduplicated inside the batch
        j.append("decision", {"i": 0})
    assert j.count() == 2
    with pytest.raises(RuntimeError, match="mid-bar"):
        _failing_batch(j)
    assert j.count() == 2
    assert j.last_seq == max(r.seq for r in j.read())  # the rolled-back seq is forgotten
    with pytest.raises(JournalError, match="full"):
        _batch_until_full(j)
    assert j.count() == 2  # the whole failed batch rolled back
    j.close()


@pytest.mark.parametrize(("kind", "payload", "match"), [
    ("nonsense", {}, "unknown journal kind"),
    ("decision", {"x": math.nan}, "not JSON-able"),
    ("decision", {"x": object()}, "not JSON-able"),
    ("fill", {"fill_id": "f"}, "lacks"),
    ("bar", {"symbol": "ES"}, "lacks"),
])
def test_bad_kind_or_payload_raises_and_writes_nothing(journal, kind, payload, match):
    with pytest.raises(JournalError, match=match):
        journal.append(kind, payload)
    assert journal.count() == 0


def test_every_documented_kind_is_accepted(journal):
    for kind in KINDS:
        journal.append(kind, {"symbol": "ES", "ts_ns": 1, "client_id": "c", "quantity": 1,
                              "book": "production", "reason": "r", "created_ns": 1,
                              "action": "submit", "fill_id": "f", "price": 1.0, "fee": 0.0,
                              "engine": {}, "to": "RUNNING", "slot": "s", "version": "1"})
    assert journal.count() == len(KINDS)


def test_journal_files_are_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with Journal(state / "journal.sqlite") as j:
        j.append("bar", _bar(0), key="ES:1000")
        assert _mode(state) == 0o700
        for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm",
                     "journal.sqlite.lock"):
            assert _mode(state / name) == 0o600, name
        mode = sqlite3.connect(j.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_one_writer_at_a_time_and_readers_alongside(tmp_path):
    path = tmp_path / "journal.sqlite"
    writer = Journal(path)
    writer.append("bar", _bar(0), key="ES:1000")
    with pytest.raises(JournalError, match="another process"):
        Journal(path)
    reader = Journal(path, readonly=True)
    assert reader.count() == 1
    writer.append("bar", _bar(1), key="ES:1001")
    assert reader.last_seq == 2  # sees the writer's new records
    with pytest.raises(JournalError, match="read-only"):
        reader.append("bar", _bar(2), key="ES:1002")
    reader.close()
    writer.close()
    Journal(path).close()  # the lock went with the writer


def test_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match=f"schema '99'.*reads schema {SCHEMA_VERSION}"):
        Journal(path)


def test_a_file_that_is_not_a_journal_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="restore"):
        Journal(path)
    with pytest.raises(JournalError, match="does not exist"):
        Journal(tmp_path / "absent.sqlite", readonly=True)


def test_to_ns_is_exact_and_refuses_naive_times():
    assert to_ns(datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=UTC)) == 1704205800123456000
    with pytest.raises(OperationalError, match="naive"):
        to_ns(datetime(2024, 1, 2))  # noqa: DTZ001 - the naive time under test
