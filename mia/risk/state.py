"""Trading states and the kill-switch latch: who holds trading back, since when, and why.

The trading state is not stored on its own; it is derived from a set of *holds*. A hold is one
cause keeping trading below RUNNING (a tripped breaker, a limit, the kill switch) with the state
it asks for and the way it may be released. The state is the most severe hold, RUNNING when
there is none, so two causes never fight: releasing the volatility breaker while the kill switch
is engaged leaves trading HALTED. Every change of the set returns a :class:`RiskEvent` (from,
to, why, by, at) for the executor's journal, also when the state itself does not change (a
second breaker tripping while REDUCING is still worth a journal line and a metric).

===========  ===================================================================================
RUNNING      every order the gate allows
REDUCING     only orders that reduce |position| (exits, stops, take-profits, policy reductions)
HALTED       nothing but flattening: the gate answers every call with the order to go flat
===========  ===================================================================================

Release kinds: ``person`` holds (kill switch, drawdown limit, data quality) are latches that
only an explicit :func:`release` with ``by`` and ``why`` clears; ``trade_date`` holds (daily loss
limit, loss breaker) are released by the engine when the CME trade date rolls; ``cooldown``
holds (volatility, latency, stale feed) by their breaker after enough clean bars. A person may
release any hold. Pure functions over immutable records; no clock reads (``at_ns`` comes in).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final, Literal, NamedTuple

from mia.errors import AlertError

Release = Literal["person", "trade_date", "cooldown"]
AUTO: Final[str] = "risk"  # ``by`` of every automatic engage / release


class RiskInputError(AlertError):
    """A risk call got input it cannot judge (NaN target, unknown hold, anonymous reset).

    An alert, not a stop: the executor places no order for that call, alerts, and keeps running.
    """


class Mode(IntEnum):
    """Trading state, ordered by severity (a larger value restricts more)."""

    RUNNING = 0
    REDUCING = 1
    HALTED = 2


class Hold(NamedTuple):
    """One cause keeping trading below RUNNING.

    :param cause: ``kill_switch``, ``limit.<name>`` or ``breaker.<name>``.
    :param mode: the state the cause asks for (REDUCING or HALTED).
    :param release: who may clear it: ``person``, ``trade_date`` or ``cooldown`` (module doc).
    :param why: what was measured against which limit.
    :param by: ``risk`` for automatic holds, else the person who engaged it.
    :param since_ns: when it was engaged, ns since the epoch (UTC).
    """

    cause: str
    mode: Mode
    release: Release
    why: str
    by: str
    since_ns: int


class RiskEvent(NamedTuple):
    """A change of the hold set: what the executor journals, alerts on and counts.

    :param at_ns: when, ns since the epoch (UTC), from the caller's clock or the bar.
    :param cause: the hold engaged or released.
    :param action: ``engage`` or ``release``.
    :param from_mode: trading state before.
    :param to_mode: trading state after (equal to ``from_mode`` when another hold dominates).
    :param why: the measurement and limit (engage) or the release reason.
    :param by: ``risk`` when automatic, else the person.
    """

    at_ns: int
    cause: str
    action: Literal["engage", "release"]
    from_mode: Mode
    to_mode: Mode
    why: str
    by: str

    @property
    def at(self) -> datetime:
        """:return: ``at_ns`` as a tz-aware UTC datetime (microsecond precision)."""
        return datetime.fromtimestamp(self.at_ns / 1e9, tz=UTC)

    def to_dict(self) -> dict[str, Any]:
        """:return: plain JSON-able data, modes by name, ``at`` as ISO 8601."""
        return {"at": self.at.isoformat(), "at_ns": self.at_ns, "cause": self.cause,
                "action": self.action, "from": self.from_mode.name, "to": self.to_mode.name,
                "why": self.why, "by": self.by}


class TradingState(NamedTuple):
    """The active holds (sorted by cause) and the state they imply.

    :param holds: active holds; empty means RUNNING.
    :param mode: the most severe hold's mode (kept so the hot path reads one field).
    """

    holds: tuple[Hold, ...] = ()
    mode: Mode = Mode.RUNNING

    def held(self, cause: str) -> Hold | None:
        """:param cause: a hold's cause. :return: that hold, or ``None`` if not engaged."""
        for h in self.holds:
            if h.cause == cause:
                return h
        return None


def _with(holds: tuple[Hold, ...]) -> TradingState:
    holds = tuple(sorted(holds, key=lambda h: h.cause))
    return TradingState(holds, max((h.mode for h in holds), default=Mode.RUNNING))


def engage(state: TradingState, cause: str, mode: Mode, release: Release, *, why: str,
           at_ns: int, by: str = AUTO) -> tuple[TradingState, RiskEvent | None]:
    """Add a hold; engaging a cause already held changes nothing.

    :param state: the current state.
    :param cause: the hold's cause.
    :param mode: REDUCING or HALTED.
    :param release: ``person``, ``trade_date`` or ``cooldown``.
    :param why: what was measured against which limit.
    :param at_ns: when, ns since the epoch.
    :param by: ``risk`` (automatic) or a person.
    :return: the new state and its event, or the same state and ``None``.
    :raises RiskInputError: ``mode`` is RUNNING (a hold must restrict something).
    """
    if mode is Mode.RUNNING:
        raise RiskInputError(f"hold {cause!r} must ask for REDUCING or HALTED, not RUNNING")
    if state.held(cause) is not None:
        return state, None
    new = _with((*state.holds, Hold(cause, mode, release, why, by, at_ns)))
    return new, RiskEvent(at_ns, cause, "engage", state.mode, new.mode, why, by)


def release(state: TradingState, cause: str, *, why: str, at_ns: int,
            by: str = AUTO) -> tuple[TradingState, RiskEvent | None]:
    """Remove a hold. Automatic callers (``by="risk"``) cannot release a ``person`` hold.

    :param state: the current state.
    :param cause: the hold to release.
    :param why: the release reason (journaled).
    :param at_ns: when, ns since the epoch.
    :param by: ``risk`` for automatic releases, else the person releasing it.
    :return: the new state and its event; ``(state, None)`` if ``cause`` is not held.
    :raises RiskInputError: an automatic release of a ``person`` hold, or a person release
        without a name or a reason.
    """
    hold = state.held(cause)
    if hold is None:
        return state, None
    if by == AUTO and hold.release == "person":
        raise RiskInputError(f"hold {cause!r} is a latch: only a person clears it "
                             "(release(..., by=<name>, why=<reason>))")
    if by != AUTO and not (by.strip() and why.strip()):
        raise RiskInputError(f"releasing {cause!r} needs the person's name (by) and a reason "
                             f"(why); got by={by!r}, why={why!r}")
    new = _with(tuple(h for h in state.holds if h.cause != cause))
    return new, RiskEvent(at_ns, cause, "release", state.mode, new.mode, why, by)


def kill(state: TradingState, *, by: str, why: str,
         at_ns: int) -> tuple[TradingState, RiskEvent | None]:
    """Engage the kill switch: HALTED until a person releases ``kill_switch``.

    :param state: the current state.
    :param by: who pulled it (operator name, ``signal:SIGUSR1``, ``file:/run/mia/kill``...).
    :param why: the reason given.
    :param at_ns: when, ns since the epoch.
    :return: the new state and its event; ``None`` if it was already engaged.
    :raises RiskInputError: ``by`` or ``why`` is empty.
    """
    if not (by.strip() and why.strip()):
        raise RiskInputError(f"the kill switch needs who (by) and why; got by={by!r}, why={why!r}")
    return engage(state, "kill_switch", Mode.HALTED, "person", why=why, at_ns=at_ns, by=by)
