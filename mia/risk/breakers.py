"""Circuit breakers: count bad observations, trip, cool down, reset (reference.md line 85).

A breaker is a tiny state machine over one kind of observation::

    ARMED --(trip_after consecutive bad)--> TRIPPED --(cooldown consecutive clean)--> ARMED
                                              \\--(explicit reset)--> ARMED

One good observation while armed clears the count, so only *consecutive* faults trip: this is
what the data-quality breaker needs, since after a real price jump the inline validator rejects
every later bar as a ``jump`` until someone resets it, and an isolated bad tick must not halt.

==============  =================================  ===========  ===============================
breaker         bad observation                    trips after  resets
==============  =================================  ===========  ===============================
loss            loss from start-of-day equity      1            at the next trade date
                > ``loss_breaker``
volatility      true range > ``volatility_         1            ``breaker_cooldown_bars`` calm
                breaker_atr`` x the previous                    bars
                bar's atr_14
latency         tick-to-decision latency           ``latency_   ``breaker_cooldown_bars`` bars
                > ``latency_breaker_ms``           breaches``   under the threshold
data_quality    a bar the inline validator         ``data_      only a person (``reset``)
                rejected                           fault_limit``
stale_feed      no bar for ``stale_feed_seconds``  1            ``breaker_cooldown_bars`` bars
                while the session is open                       after the feed resumes
==============  =================================  ===========  ===============================

The state a tripped breaker puts trading in comes from ``breaker_actions`` (docs/risk.md).
True range (Wilder) covers both an abnormal bar range and an abnormal |return| or gap from the
previous close; it is held against the ATR *before* the bar, because ATR(14) at the bar already
moved 1/14 of the shock towards it. Keep ``volatility_breaker_atr`` below the inline validator's
``max_jump_atr``, or a crash is rejected as bad data before this breaker sees it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Change = Literal["trip", "reset"]


class BreakerState(NamedTuple):
    """One breaker.

    :param name: ``loss``, ``volatility``, ``latency``, ``data_quality`` or ``stale_feed``.
    :param tripped: whether it is tripped.
    :param streak: consecutive bad observations (armed) — the trip counter.
    :param calm: consecutive clean observations since the trip — the cool-down counter.
    :param since_ns: when it last tripped, ns since the epoch (0 if never).
    """

    name: str
    tripped: bool = False
    streak: int = 0
    calm: int = 0
    since_ns: int = 0


def observe(b: BreakerState, bad: bool, *, trip_after: int, cooldown: int | None,
            at_ns: int) -> tuple[BreakerState, Change | None]:
    """Feed one observation.

    :param b: the breaker.
    :param bad: whether this observation is a fault / breach.
    :param trip_after: consecutive bad observations that trip it (>= 1).
    :param cooldown: consecutive clean observations that reset a tripped breaker; ``None``
        means it never resets by itself (:func:`reset` only).
    :param at_ns: time of the observation, ns since the epoch.
    :return: the new breaker and ``"trip"`` / ``"reset"`` when it changed state, else ``None``.
    """
    if not b.tripped:
        if not bad:
            return (b, None) if b.streak == 0 else (b._replace(streak=0), None)
        streak = b.streak + 1
        if streak >= trip_after:
            return BreakerState(b.name, True, streak, 0, at_ns), "trip"
        return b._replace(streak=streak), None
    if bad:
        return (b, None) if b.calm == 0 else (b._replace(calm=0), None)
    if cooldown is None:
        return b, None
    calm = b.calm + 1
    if calm >= cooldown:
        return BreakerState(b.name, since_ns=b.since_ns), "reset"
    return b._replace(calm=calm), None


def reset(b: BreakerState) -> BreakerState:
    """:param b: the breaker. :return: it armed, counters cleared (a person's reset, or the
    trade-date roll of the loss breaker)."""
    return BreakerState(b.name, since_ns=b.since_ns)
