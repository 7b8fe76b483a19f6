"""Exit codes of MIA's commands, and the guard that maps deliberate errors onto them.

A leaf beside :mod:`mia.errors` so every entry point shares it (``mia``, ``python -m
mia.pipelines.*``, the live executor) without importing the command tree: the executor must not
reach the training or orchestration stack, even through ``mia.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mia.errors import MiaError

EXIT_STOP = 2
EXIT_RETRY = 75  # sysexits EX_TEMPFAIL


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command, turning deliberate errors into one line and an exit code.

    :param func: the command.
    :return: its exit code, or 2 (stop) / 75 (retry) for a :class:`MiaError`.
    """
    try:
        return func()
    except MiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RETRY if exc.response == "retry" else EXIT_STOP
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`mia features list | head`): not an error of ours. Point stdout
        # at devnull so the interpreter's final flush does not raise again (Python docs, SIGPIPE).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
