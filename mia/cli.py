"""``mia`` — the command line of MIA.

Each subcommand is a thin shell over library calls; errors raised on purpose (:class:`MiaError`)
print one readable line and exit non-zero (2: fix something and rerun, 75: temporary, retry).
Heavy modules are imported inside the commands so ``mia --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from mia import __version__
from mia.commands import backup as backup_commands
from mia.commands import data as data_commands
from mia.commands import demo as demo_commands
from mia.commands import features as feature_commands
from mia.commands import registry as registry_commands
from mia.commands import training as training_commands
from mia.commands import ui as ui_commands
from mia.exits import EXIT_RETRY, EXIT_STOP, run_guarded

__all__ = ["EXIT_RETRY", "EXIT_STOP", "build_parser", "main", "run_guarded"]


def build_parser() -> argparse.ArgumentParser:
    """:return: the ``mia`` argument parser with every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params.yaml (default: $MIA_PARAMS or ./params.yaml)",
    )
    common.add_argument(
        "--home",
        type=Path,
        default=None,
        help="MIA_HOME for this command (default: $MIA_HOME or ./.mia)",
    )
    parser = argparse.ArgumentParser(
        prog="mia", description="MIA: RL trading MLOps for CME futures"
    )
    parser.add_argument("--version", action="version", version=f"mia {__version__}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in (data_commands, feature_commands, training_commands, registry_commands,
                  demo_commands, ui_commands):
        group.register(top, common)
    backup_commands.register(top, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mia`` console script.

    :param argv: arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return run_guarded(lambda: func(args))


if __name__ == "__main__":
    raise SystemExit(main())
