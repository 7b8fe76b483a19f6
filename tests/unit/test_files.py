"""Crash-safe replacement (mia/data/files.py): dead writers' temporaries go, live ones stay, and a
folder swap never leaves a moment without a build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mia.data import files


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    assert not files.pid_alive(pid)
    return pid


def test_pid_alive_tells_a_live_process_from_a_finished_one():
    assert files.pid_alive(os.getpid())
    assert files.pid_alive(1)  # init: another user's process counts as alive
    assert not files.pid_alive(_dead_pid())


def test_sweep_removes_a_dead_writers_files_and_folders_and_nothing_else(tmp_path):
    dead = _dead_pid()
    final = tmp_path / "symbol=ES"
    stale_dir = tmp_path / f".symbol=ES.tmp-{dead}"
    (stale_dir / "date=2024-01-02.parquet").parent.mkdir(parents=True)
    (stale_dir / "date=2024-01-02.parquet").write_bytes(b"half")
    stale_old = tmp_path / f".symbol=ES.old-{dead}"
    stale_old.mkdir()
    keep = [tmp_path / f".symbol=ES.tmp-{os.getpid()}",  # ours: the caller manages it
            tmp_path / ".symbol=ES.tmp-1",  # a live writer's
            tmp_path / f".symbol=MNQ.tmp-{dead}",  # another destination's
            tmp_path / ".symbol=ES.tmp-notapid"]
    for path in keep:
        path.write_text("x")
    removed = files.sweep_stale(final, ("tmp", "old"))
    assert sorted(removed) == sorted([stale_dir, stale_old])
    assert not stale_dir.exists()
    assert not stale_old.exists()
    assert all(path.exists() for path in keep)


def test_sweep_of_a_name_with_glob_characters_matches_it_literally(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".a[1].json.tmp-{dead}").write_text("x")
    (tmp_path / f".a1.json.tmp-{dead}").write_text("x")
    assert [p.name for p in files.sweep_stale(tmp_path / "a[1].json")] == [f".a[1].json.tmp-{dead}"]


def test_write_text_atomic_replaces_the_file_and_removes_a_killed_writers_temporary(tmp_path):
    target = tmp_path / "reports" / "features.json"
    target.parent.mkdir()
    target.write_text("old")
    stale = target.with_name(f".features.json.tmp-{_dead_pid()}")
    stale.write_text("half")
    files.write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["features.json"]


def _build(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "spec.json").write_text(text)
    return folder


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    a, b = _build(tmp_path / "a", "A"), _build(tmp_path / "b", "B")
    assert files.exchange(a, b)  # Linux with a local file system: what CI runs on
    assert (a / "spec.json").read_text() == "B"
    assert (b / "spec.json").read_text() == "A"


def test_exchange_of_a_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        files.exchange(tmp_path / "missing", _build(tmp_path / "b", "B"))


@pytest.mark.parametrize("can_exchange", [True, False])
def test_replace_folder_puts_the_new_build_in_place_and_deletes_the_old(tmp_path, monkeypatch,
                                                                        can_exchange):
    if not can_exchange:
        monkeypatch.setattr(files, "exchange", lambda a, b: False)
    final = _build(tmp_path / "symbol=ES", "old")
    new = _build(files.temp_path(final), "new")
    files.replace_folder(new, final)
    assert (final / "spec.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["symbol=ES"]


def test_replace_folder_creates_a_missing_destination(tmp_path):
    final = tmp_path / "symbol=ES"
    files.replace_folder(_build(files.temp_path(final), "new"), final)
    assert (final / "spec.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["symbol=ES"]
