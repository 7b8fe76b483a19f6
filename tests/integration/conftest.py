from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path = REPO, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command as a user would, with the venv's scripts on PATH."""
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def mia(tmp_path):
    """Run `mia …` with a private MIA_HOME; returns (run, home)."""
    home = tmp_path / "home"

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(["mia", *args], env={"MIA_HOME": str(home), **(env or {})})

    call.home = home  # type: ignore[attr-defined]
    return call
