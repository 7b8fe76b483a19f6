"""Backup of live SQLite state (the executor's WAL journal) and the restore plan: which backup,
what is local, set-aside instead of overwrite (a folder store stands in for the bucket)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from executor.journal import Journal
from mia.config import load_config
from mia.errors import OperationalError
from mia.pipelines import backup
from mia.pipelines.backup_store import DirectoryStore

REPO = Path(__file__).resolve().parents[3]
DAY = datetime(2024, 1, 26, 0, 30, tzinfo=UTC)


def cfg_of(home: Path):
    return load_config(REPO / "params.yaml", env={
        "MIA_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"})


def journal_with(home: Path, n: int) -> Journal:
    """An executor journal, still open (its records in the WAL, not yet checkpointed)."""
    j = Journal(home / "executor" / "journal.sqlite", sync="normal")
    for i in range(n):
        j.append("alert", {"level": "info", "code": f"c{i}", "message": "x" * 50})
    return j


def test_a_live_wal_journal_is_backed_up_with_every_committed_record(tmp_path):
    home, store = tmp_path / "home", DirectoryStore(tmp_path / "bucket")
    j = journal_with(home, 40)
    try:
        wal = home / "executor" / "journal.sqlite-wal"
        assert wal.stat().st_size > 0  # the records are in the WAL, not in the database file
        # a plain copy of the database file alone would miss them: why the backup does not
        plain = tmp_path / "plain" / "journal.sqlite"
        plain.parent.mkdir()
        shutil.copyfile(home / "executor" / "journal.sqlite", plain)
        with pytest.raises(OperationalError):
            Journal(plain, readonly=True).count()
        result = backup.run(cfg_of(home), key="live", as_of=DAY, store=store,
                            components=["executor"])
    finally:
        j.close()
    paths = {f.path for f in result.files}
    assert "journal.sqlite" in paths
    assert not any(p.endswith(("-wal", "-shm")) for p in paths)
    fresh = tmp_path / "fresh"
    backup.restore(cfg_of(fresh), store=store, components=["executor"])
    with Journal(fresh / "executor" / "journal.sqlite", readonly=True) as back:
        assert back.count("alert") == 40


def test_the_plan_says_empty_same_or_differs_and_force_sets_the_state_aside(tmp_path):
    home, store = tmp_path / "home", DirectoryStore(tmp_path / "bucket")
    journal_with(home, 3).close()
    cfg = cfg_of(home)
    backup.run(cfg, key="k1", as_of=DAY, store=store, components=["executor"])
    (part,) = backup.plan_restore(cfg, store=store).parts
    assert (part.component, part.local) == ("executor", "same")  # a live db hashes as its copy
    assert backup.plan_restore(cfg_of(tmp_path / "fresh"), store=store).parts[0].local == "empty"
    with Journal(home / "executor" / "journal.sqlite") as j:
        j.append("alert", {"level": "info", "code": "later", "message": "after the backup"})
    plan = backup.plan_restore(cfg, store=store)
    assert [p.component for p in plan.occupied] == ["executor"]
    assert "differ from the backup" in "\n".join(plan.lines())
    r = backup.restore(cfg, store=store, set_aside="before-restore-test")
    assert r.moved == (home / "executor.before-restore-test",)
    with Journal(home / "executor.before-restore-test" / "journal.sqlite", readonly=True) as j:
        assert j.count() == 4  # the later state kept, not destroyed
    with Journal(home / "executor" / "journal.sqlite", readonly=True) as j:
        assert j.count() == 3
    (home / "executor" / "extra").write_text("x")  # differs again; the suffix is taken
    with pytest.raises(OperationalError, match="exists already"):
        backup.restore(cfg, store=store, set_aside="before-restore-test")
    assert (home / "executor" / "extra").is_file()  # refused before moving anything


def test_restore_at_a_time_picks_the_newest_backup_at_or_before_it(tmp_path):
    home, store = tmp_path / "home", DirectoryStore(tmp_path / "bucket")
    j = journal_with(home, 1)
    backup.run(cfg_of(home), key="early", as_of=DAY, store=store, components=["executor"])
    j.append("alert", {"level": "info", "code": "more", "message": "m"})
    j.close()
    backup.run(cfg_of(home), key="late", as_of=DAY + timedelta(days=1), store=store,
               components=["executor"])
    cfg = cfg_of(tmp_path / "fresh")
    assert backup.plan_restore(cfg, store=store).key == "late"
    assert backup.plan_restore(cfg, store=store, at=DAY + timedelta(hours=1)).key == "early"
    assert backup.plan_restore(cfg, store=store, at=DAY + timedelta(days=1)).key == "late"
    with pytest.raises(OperationalError, match="the oldest is early"):
        backup.plan_restore(cfg, store=store, at=DAY - timedelta(seconds=1))
    with pytest.raises(OperationalError, match="not both"):
        backup.plan_restore(cfg, store=store, key="late", at=DAY)
    with pytest.raises(OperationalError, match="naive"):
        backup.plan_restore(cfg, store=store, at=DAY.replace(tzinfo=None))
    backup.restore(cfg, store=store, at=DAY + timedelta(hours=1))
    with Journal(tmp_path / "fresh" / "executor" / "journal.sqlite", readonly=True) as back:
        assert back.count() == 1


def test_a_restored_database_never_meets_the_wal_of_the_one_it_replaced(tmp_path):
    home, store = tmp_path / "home", DirectoryStore(tmp_path / "bucket")
    journal_with(home, 2).close()
    backup.run(cfg_of(home), key="k", as_of=DAY, store=store, components=["executor"])
    # the executor went on and was killed: its database and a WAL holding 5 more records
    other = journal_with(tmp_path / "other", 7)
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        shutil.copyfile(tmp_path / "other" / "executor" / name, home / "executor" / name)
    other.close()
    with Journal(home / "executor" / "journal.sqlite", readonly=True) as before:
        assert before.count() == 7
    backup.restore(cfg_of(home), store=store, overwrite=True)
    with Journal(home / "executor" / "journal.sqlite", readonly=True) as back:
        assert back.count() == 2  # the backup's records, not the stale WAL's
