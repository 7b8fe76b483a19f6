"""Fail an image build whose virtualenv holds anything requirements.lock does not pin.

pip's ``-c requirements.lock`` pins what the lock lists but lets an unlisted package through at
whatever version the index serves; ``-r`` installs the lock but a later step could add to it.
Run after the last ``pip install`` of an image: every installed distribution (the project
itself excepted) must be in the lock at exactly the locked version.

Usage: ``python lock_check.py requirements.lock [--project mia]``
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path


def canonical(name: str) -> str:
    """:return: the PEP 503 normalised form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """:return: canonical name -> pinned version, from ``name==version`` lines."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{path}: {line!r} is not an exact pin (name==version)")
        pins[canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def problems(pins: dict[str, str], installed: dict[str, str], project: str) -> list[str]:
    """:param pins: the lock. :param installed: canonical name -> installed version.
    :param project: the project's own distribution (installed from source, not the lock).
    :return: one line per distribution that is missing from the lock or at another version.
    """
    out = []
    for name, version in sorted(installed.items()):
        if name == canonical(project):
            continue
        if name not in pins:
            out.append(f"{name}=={version} is installed but not pinned in the lock")
        elif pins[name] != version:
            out.append(f"{name}=={version} is installed but the lock pins {pins[name]}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("lock", type=Path)
    p.add_argument("--project", default="mia")
    args = p.parse_args(argv)
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    found = problems(read_lock(args.lock), installed, args.project)
    if found:
        print("error: the image does not match requirements.lock:\n  " + "\n  ".join(found)
              + "\nadd the package to requirements.in and run 'make lock', or drop it from the "
              "image", file=sys.stderr)
        return 1
    print(f"{len(installed)} distributions, all pinned in {args.lock}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
