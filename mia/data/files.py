"""Crash-safe replacement of files and folders, shared by the stores and the stage reports.

A writer puts new content under a temporary sibling named after its pid
(``.<name>.<tag>-<pid>``) and renames it into place, so a reader sees the old content or the new,
never half of it. A writer killed before the rename (``kill -9``, an Airflow task timeout, a lost
worker) leaves its temporary behind; the next writer of the same name removes the temporaries of
processes that are no longer alive, never those of a live writer.

A folder that already exists cannot be replaced by a plain rename. :func:`replace_folder` swaps
the two with one exchange rename (Linux ``renameat2(RENAME_EXCHANGE)``), so a reader always finds
one whole build; where the kernel or file system lacks it, the old folder is moved aside first
and there is a moment with no folder at all.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
from pathlib import Path
from typing import Final

_AT_FDCWD: Final[int] = -100
_RENAME_EXCHANGE: Final[int] = 2
_UNSUPPORTED: Final[frozenset[int]] = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP})


def pid_alive(pid: int) -> bool:
    """:return: whether a process with this pid exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_path(path: Path, tag: str = "tmp") -> Path:
    """:return: this process's temporary sibling of ``path``: ``.<name>.<tag>-<pid>``."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


def sweep_stale(path: Path, tags: tuple[str, ...] = ("tmp",)) -> list[Path]:
    """Remove the temporaries that dead writers of ``path`` left (files or whole folders).

    :param path: the destination whose ``.<name>.<tag>-<pid>`` siblings are looked at.
    :param tags: the temporary kinds to look for.
    :return: what was removed.
    """
    removed = []
    for tag in tags:
        prefix = f".{path.name}.{tag}-"
        for found in path.parent.glob(glob.escape(prefix) + "*"):
            pid = found.name[len(prefix):]
            if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
                continue
            if found.is_dir() and not found.is_symlink():
                shutil.rmtree(found, ignore_errors=True)
            else:
                found.unlink(missing_ok=True)
            removed.append(found)
    return removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so readers see the old or the new content, never half of it.

    :param path: destination; its folder is created, dead writers' temporaries are removed.
    :param text: the content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``).

    :return: ``False`` where the C library, kernel or file system does not offer it.
    :raises OSError: any other failure (missing path, permissions, another device).
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False  # not glibc >= 2.28 (macOS, musl before 1.2.5)
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_folder(new: Path, final: Path) -> None:
    """Put the complete folder ``new`` in place of ``final`` and delete the previous one.

    :param new: the new build (normally :func:`temp_path` of ``final``); it is consumed.
    :param final: the destination; it may not exist yet.
    """
    if not final.exists():
        new.rename(final)
        return
    if exchange(new, final):  # ``new`` now holds the previous build
        shutil.rmtree(new, ignore_errors=True)
        return
    old = temp_path(final, "old")
    final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
