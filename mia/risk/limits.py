"""Position limits (contracts, notional) and equity limits (daily loss, drawdown from peak).

Notional: a position of ``q`` contracts at price ``P`` (points) is worth ``|q| x P x multiplier``
USD; with leverage ``L`` the cap is ``floor(equity x L / (P x multiplier))`` contracts, and never
above ``max_contracts``. Equity: an :class:`EquityTrack` follows the equity marked at each bar
close through CME trade dates (the caller passes the trade date: the session that opens at
18:00 ET belongs to the next day's date, ``mia.data.calendar``). The start-of-day equity of a
trade date is the last equity of the previous one, so an overnight gap counts against the new
day; the very first update starts the track at its own equity.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from mia.risk.rules import RiskRules, floor_size
from mia.risk.state import RiskInputError


def notional_contracts(equity: float, price: float, leverage: float, multiplier: float) -> int:
    """Largest position whose notional stays within ``leverage x equity``.

    :param equity: USD, > 0.
    :param price: reference price, points, > 0.
    :param leverage: max notional / equity.
    :param multiplier: USD per point.
    :return: ``floor(equity x leverage / (price x multiplier))`` contracts (>= 0).
    """
    return floor_size(equity * leverage / (price * multiplier))


def position_cap(rules: RiskRules, equity: float, price: float, leverage: float) -> int:
    """:param rules: the contract's rules. :param equity: USD. :param price: points.
    :param leverage: max notional / equity. :return: min(notional cap, ``max_contracts``)."""
    return min(notional_contracts(equity, price, leverage, rules.multiplier),
               rules.cfg.max_contracts)


class EquityTrack(NamedTuple):
    """Equity marks of the current trade date and since the start.

    :param trade_date: CME trade date of the last mark.
    :param day_start: equity at the start of ``trade_date`` (USD).
    :param peak: highest mark so far (USD), the drawdown reference.
    :param last: last mark (USD).
    """

    trade_date: date
    day_start: float
    peak: float
    last: float

    @property
    def daily_loss(self) -> float:
        """:return: loss since the start of the day as a fraction of ``day_start`` (0 if up)."""
        return max(0.0, 1.0 - self.last / self.day_start)

    @property
    def drawdown(self) -> float:
        """:return: ``1 - last / peak``, the fall from the highest mark (>= 0)."""
        return 1.0 - self.last / self.peak


def _check_equity(equity: float) -> float:
    e = float(equity)
    if not (e > 0.0 and e < float("inf")):
        raise RiskInputError(f"equity {equity!r} must be finite and > 0 USD; a book at or below "
                             "zero needs a person, not a risk rule")
    return e


def start_track(trade_date: date, equity: float) -> EquityTrack:
    """:param trade_date: the first trade date. :param equity: USD, > 0.
    :return: a track starting (day start, peak) at ``equity``."""
    e = _check_equity(equity)
    return EquityTrack(trade_date, e, e, e)


def update_track(track: EquityTrack, trade_date: date, equity: float) -> EquityTrack:
    """Mark the equity at a bar close.

    :param track: the track so far.
    :param trade_date: the bar's CME trade date; a later date rolls the day.
    :param equity: USD marked at the close, > 0.
    :return: the new track (``trade_date`` differs from ``track.trade_date`` on a roll).
    :raises RiskInputError: equity not finite or not positive, or the date went backwards.
    """
    e = _check_equity(equity)
    if trade_date == track.trade_date:
        return EquityTrack(trade_date, track.day_start, max(track.peak, e), e)
    if trade_date < track.trade_date:
        raise RiskInputError(f"trade date went back from {track.trade_date} to {trade_date}; "
                             "feed bars in time order")
    return EquityTrack(trade_date, track.last, max(track.peak, e), e)


def rebase_day(track: EquityTrack) -> EquityTrack:
    """:param track: the track. :return: it with the day restarting at the last mark (a
    person accepted today's loss by releasing the daily-loss hold)."""
    return track._replace(day_start=track.last)


def rebase_peak(track: EquityTrack) -> EquityTrack:
    """:param track: the track. :return: it with the peak restarting at the last mark (a
    person accepted the drawdown by releasing the drawdown hold)."""
    return track._replace(peak=track.last)
