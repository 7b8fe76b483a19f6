"""Subcommands of ``mia``, one module per group; each exposes ``register(top, common)``."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mia.config import Config


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2024-01-02") from None


def parse_mapping(text: str) -> tuple[str, str]:
    source, sep, name = text.partition("=")
    if not sep or not source or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not SOURCE=NAME (e.g. Close=close)")
    return source, name


def load(args: argparse.Namespace) -> Config:
    from mia.config import load_config

    env = dict(os.environ)
    if getattr(args, "home", None) is not None:
        env["MIA_HOME"] = str(args.home)
    return load_config(args.params, env=env)


def progress() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI") != "true"
