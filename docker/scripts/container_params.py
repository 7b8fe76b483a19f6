"""Write the executor image's ``params.yaml``: the repository's, with one key changed.

The executor binds its Prometheus exporter to ``executor.metrics_host``, ``127.0.0.1`` in
``params.yaml`` (issue 8: metrics bind to localhost by default). Inside a container that address
is the container's own loopback, which Prometheus in another container cannot reach, so the
image binds to the container's interfaces instead (``0.0.0.0``: the compose network only; the
port is published to the host's loopback at most, see docker-compose.yml). Every other
parameter must stay byte-for-byte the one the backtest scored, so this rewrites that single line
and then proves, through ``mia.config``, that nothing else differs.

Usage (executor.Dockerfile): ``python container_params.py SRC DST [--host 0.0.0.0]``
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_SECTION = re.compile(r"^executor:\s*(#.*)?$")
_KEY = re.compile(r"^(?P<indent>\s+)metrics_host:(?P<space>\s*)(?P<value>[^\s#]+)(?P<rest>.*)$")


def rewrite(text: str, host: str) -> str:
    """:param text: a ``params.yaml``. :param host: the new ``executor.metrics_host``.
    :return: the same text with only that value replaced.
    :raises ValueError: when the key is not found under a top-level ``executor:`` section.
    """
    lines = text.splitlines(keepends=True)
    inside = False
    for i, line in enumerate(lines):
        if _SECTION.match(line):
            inside = True
            continue
        if inside and line.strip() and not line[0].isspace():
            break  # the next top-level section: executor.metrics_host was not there
        match = _KEY.match(line) if inside else None
        if match:
            end = "\n" if line.endswith("\n") else ""
            rest = match["rest"].rstrip("\n")
            lines[i] = f"{match['indent']}metrics_host:{match['space']}{host}{rest}{end}"
            return "".join(lines)
    raise ValueError("params.yaml: no executor.metrics_host line under a top-level 'executor:' "
                     "section; add 'metrics_host: 127.0.0.1' there")


def check(src: Path, dst: Path, host: str) -> None:
    """Load both files with mia.config and fail unless they differ in metrics_host alone.

    :raises SystemExit: naming the keys that differ.
    """
    from mia.config import load_params, to_dict

    before, after = to_dict(load_params(src)), to_dict(load_params(dst))
    if after["executor"]["metrics_host"] != host:
        raise SystemExit(f"{dst}: executor.metrics_host is {after['executor']['metrics_host']!r}, "
                         f"not {host!r}")
    after["executor"]["metrics_host"] = before["executor"]["metrics_host"]
    if before != after:
        diff = sorted(k for k in before if before[k] != after.get(k))
        raise SystemExit(f"{dst}: sections {diff} differ from {src}; only "
                         "executor.metrics_host may change")


def main(argv: list[str] | None = None) -> int:
    """Entry point: rewrite, write, check."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the container's interfaces
    args = p.parse_args(argv)
    try:
        args.dst.write_text(rewrite(args.src.read_text(encoding="utf-8"), args.host),
                            encoding="utf-8")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    check(args.src, args.dst, args.host)
    print(f"{args.dst}: {args.src} with executor.metrics_host {args.host}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
