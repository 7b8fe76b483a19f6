"""What every ``python -m mia.pipelines.<stage>`` shares: arguments, config, atomic writes."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from mia.config import Config, load_config
from mia.data.files import write_text_atomic as write_atomic

__all__ = ["stage_config", "write_atomic"]


def stage_config(
    stage: str,
    doc: str | None,
    argv: Sequence[str] | None,
    add: Callable[[argparse.ArgumentParser], object] | None = None,
) -> tuple[Config, argparse.Namespace]:
    """Parse ``[--params FILE] [--home DIR]`` (plus ``add``'s arguments) and load the config.

    :param stage: the stage's module name, for the usage line.
    :param doc: the stage's description.
    :param argv: arguments (default: ``sys.argv[1:]``).
    :param add: adds stage-specific arguments.
    """
    parser = argparse.ArgumentParser(prog=f"python -m mia.pipelines.{stage}", description=doc)
    if add is not None:
        add(parser)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml to use")
    parser.add_argument("--home", type=Path, default=None, help="MIA_HOME for this run")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.home is not None:
        env["MIA_HOME"] = str(args.home)
    return load_config(args.params, env=env), args
