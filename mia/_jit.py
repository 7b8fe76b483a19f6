"""One numba cache directory per version of MIA's compiled code.

numba's on-disk cache (``cache=True``) is keyed on the source file of each function only. Our
kernels inline functions from other files (``online._step_out`` inlines ``machine.step``, which
inlines ``mia.regime.filter``), so after an edit or upgrade a cached caller could keep the old
machine code of a changed callee — we saw it execute shifted op codes. Keying the cache
directory on a digest of every numba-bearing source file makes any change start a fresh cache.

Import :data:`JIT_CACHE` before defining any ``@njit`` function and pass it as ``cache=``
(each numba module does).

numba's cache is pickle: its index and code files are unpickled on load, so whoever can write
the cache folder runs code in the process that reads it. The live executor therefore compiles
in memory and reads no cache (``MIA_JIT_CACHE=off``, set by ``python -m executor --config``
before it imports any kernel; ~16 s more at start on two cores, before systemd's READY=1).
Offline jobs, tests and the replay keep the cache (``MIA_JIT_CACHE`` unset or ``on``), in a
folder created private (0700).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Final

import numba

_ROOT: Final[Path] = Path(__file__).resolve().parent
# ops.py has no numba code, but its op codes are frozen into the compiled kernels as constants.
JIT_SOURCES: Final[tuple[str, ...]] = (
    "_jit.py", "data/_sim_kernels.py", "drift/psi.py", "ensemble/_quantiles.py",
    "features/_normalize_kernel.py", "features/kernels.py", "features/machine.py",
    "features/online.py", "features/ops.py", "regime/filter.py",
)


def _enabled(raw: str | None) -> bool:
    value = (raw or "on").strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"MIA_JIT_CACHE={raw!r}: use 'on' (numba's on-disk cache, the default) or "
                     "'off' (compile in memory, read no cache: the live executor)")


def _digest() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for rel in JIT_SOURCES:
        h.update(rel.encode())
        h.update((_ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def _base() -> Path:
    # numba's own override first, then the XDG cache, then a temp dir (read-only homes)
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mia" / "numba"


def configure() -> Path:
    """Point numba's cache at the directory of this code version (idempotent).

    :return: the cache directory in use.
    """
    target = _base() / _digest()
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        target = Path(tempfile.gettempdir()) / f"mia-numba-{os.getuid()}" / _digest()
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(target)  # type: ignore[attr-defined]
    return target


JIT_CACHE: Final[bool] = _enabled(os.environ.get("MIA_JIT_CACHE"))
"""Whether the kernels use numba's on-disk cache (``cache=JIT_CACHE``)."""
CACHE_DIR: Final[Path] = configure()
