"""Releasing a latched hold: ``python -m executor release`` writes a request, the loop applies it.

A latch (``kill_switch``, ``breaker.data_quality``, ``limit.max_drawdown``, or any other hold a
person may clear) lives in the journaled risk state, so a restart keeps it. A person releases it
with

    python -m executor release --config /etc/mia/executor.yaml --cause kill_switch \\
        --by alice --why "feed fixed, books flat"

which writes ``<state_dir>/release.json`` (0600, atomically). The loop, the journal's one
writer, reads it between bars (as it reads the kill file), releases the hold in every book's
risk engine that holds it (:meth:`mia.risk.RiskEngine.reset`, journaled as a risk event), and
removes the request: a running executor releases within a tick, a stopped one at its start.
A request it cannot apply (the kill file still there, no such hold) is removed too, with a
warning alert that says why; nothing is released by half.

There is no HTTP route for this (executor.admin: a stolen token must not be able to resume
trading): writing the request takes the same access to the state directory as the kill file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mia.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mia.risk import RiskEngine
    from mia.risk.state import RiskEvent

FILE: Final[str] = "release.json"
CAUSE: Final = re.compile(r"^(kill_switch|limit\.[a-z_]+|breaker\.[a-z_]+)$")
MAX_WHY: Final[int] = 500


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """Who releases which hold, and why.

    :param cause: the hold, e.g. ``kill_switch`` or ``breaker.data_quality``.
    :param by: the person (not ``risk``, which marks automatic releases).
    :param why: the reason, kept in the journal.
    """

    cause: str
    by: str
    why: str

    def __post_init__(self) -> None:
        errors = []
        if not CAUSE.match(self.cause):
            errors.append(f"cause {self.cause!r} is not a hold: kill_switch, limit.<name> or "
                          "breaker.<name> (GET /status lists the active holds)")
        if not self.by.strip():
            errors.append("by is empty: give the name of the person releasing "
                          "(--by \"$(id -un)\" where $USER is unset)")
        elif self.by.strip() == "risk":
            errors.append("by: 'risk' is reserved for the automatic releases; give your name")
        if not self.why.strip():
            errors.append("why: say why the hold may be released")
        elif len(self.why) > MAX_WHY:
            errors.append(f"why: at most {MAX_WHY} characters")
        if errors:
            raise ConfigError("release: " + "; ".join(errors))


def path(state_dir: Path) -> Path:
    """:param state_dir: the executor's state directory. :return: the request file."""
    return state_dir / FILE


def write(state_dir: Path, request: ReleaseRequest) -> Path:
    """Write the request atomically (temp file, fsync, rename), readable by the owner only.

    :raises ConfigError: the state directory does not exist (wrong ``--config``?).
    """
    if not state_dir.is_dir():
        raise ConfigError(f"release: state directory {state_dir} does not exist; pass the "
                          "executor.yaml the executor runs with (--config)")
    target = path(state_dir)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        os.write(fd, json.dumps({"cause": request.cause, "by": request.by,
                                 "why": request.why}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return target


def take(state_dir: Path) -> ReleaseRequest | str | None:
    """Read and remove a pending request (the loop, between bars).

    :return: the request; a message saying why the file is not a valid request; ``None``
        when there is none.
    """
    target = path(state_dir)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return None
    target.unlink(missing_ok=True)
    try:
        data: Any = json.loads(raw)
        if not isinstance(data, dict) or set(data) != {"cause", "by", "why"} or not all(
                isinstance(v, str) for v in data.values()):
            raise ValueError("expected an object with the strings cause, by and why")
        return ReleaseRequest(data["cause"], data["by"], data["why"])
    except (ValueError, ConfigError) as exc:
        return f"{target} is not a valid release request ({exc}); write it again with " \
               "`python -m executor release`"


def apply(request: ReleaseRequest, engines: Mapping[str, RiskEngine], *,
          kill_file: Path | None, now_ns: int) -> tuple[list[tuple[str, RiskEvent]], str | None]:
    """Release the hold in every engine that holds it, or in none.

    :param request: the request. :param engines: the loop's risk engines by ``<book>/<symbol>``.
    :param kill_file: the kill file (a kill switch is not released while it exists).
    :param now_ns: when.
    :return: ((engine key, release event) for each engine released, ``None``), or
        ``([], why nothing was released)``.
    """
    if request.cause == "kill_switch" and kill_file is not None and kill_file.exists():
        return [], f"the kill file {kill_file} still exists: move it aside, then release again"
    holding = {k: e for k, e in engines.items() if e.state.held(request.cause) is not None}
    if not holding:
        active = sorted({h.cause for e in engines.values() for h in e.state.holds})
        return [], (f"no book holds {request.cause!r}; active holds: "
                    f"{', '.join(active) or 'none'}")
    return [(k, e.reset(request.cause, by=request.by, why=request.why, now_ns=now_ns))
            for k, e in holding.items()], None
