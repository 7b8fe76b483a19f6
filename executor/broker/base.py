"""What every broker adapter speaks: orders, fills, the :class:`Broker` protocol and its errors.

Orders are market orders in signed contracts (``+`` buys). Each carries a ``client_id`` that is
a pure function of ``(symbol, bar ts_ns, book, seq)`` (:func:`client_id`), so the executor
regenerates the same id when it replays a bar after a crash, and the broker refuses to trade
it twice (FIX's ClOrdID plays this role at an exchange).

Fill delivery is at-least-once, the way Kafka's consumers commit offsets on the next poll: a
fill returned by :meth:`Broker.poll_fills` counts as received only when ``poll_fills`` is
called again, so the executor journals each batch before it polls for the next; a new
connection (a restart) delivers again every fill that was not received that way. The journal
deduplicates on ``fill_id``.

Errors say what to do: :class:`BrokerTimeout` (a :class:`~mia.errors.TemporaryError`: retry the
same call, which is safe since submits are idempotent), :class:`OrderRejected` (an
:class:`~mia.errors.AlertError`: this order was refused and nothing was placed; alert and carry
on, retrying would be refused again), :class:`~mia.errors.OperationalError` (stop: the broker or
its state is unusable).
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, Protocol

from mia.errors import AlertError, TemporaryError
from mia.types import Bar

BookName = Literal["production", "canary", "shadow"]
BOOKS: Final[tuple[str, ...]] = ("production", "canary", "shadow")


class OrderRejected(AlertError):
    """The broker refused an order or a cancel; nothing was placed or changed."""


class BrokerTimeout(TemporaryError):
    """The broker did not answer in time; the call may or may not have taken effect, and
    repeating it is safe (submits are idempotent on ``client_id``)."""


class Order(NamedTuple):
    """A market order.

    :param client_id: the executor's id, deterministic (:func:`client_id`).
    :param symbol: contract root, e.g. ``ES``.
    :param quantity: signed contracts, never 0 (``+`` buys, ``-`` sells).
    :param book: ``production``, ``canary`` or ``shadow``: fills are booked to it.
    :param reason: why it was sent (policy, stop, take_profit, flatten, ...).
    :param created_ns: when the executor created it, ns since the epoch (UTC).
    """

    client_id: str
    symbol: str
    quantity: int
    book: str
    reason: str
    created_ns: int


class Fill(NamedTuple):
    """An execution.

    :param fill_id: the broker's id, unique across its fills.
    :param client_id: the order it fills.
    :param symbol: contract root.
    :param quantity: signed contracts filled.
    :param price: fill price, index points.
    :param fee: commissions and fees, USD (positive).
    :param ts_ns: when the broker reports it filled, ns since the epoch (UTC).
    """

    fill_id: str
    client_id: str
    symbol: str
    quantity: int
    price: float
    fee: float
    ts_ns: int


def client_id(symbol: str, ts_ns: int, book: str, seq: int) -> str:
    """The order id of the ``seq``-th order a book sends for one bar: the same after a replay.

    :param symbol: contract root.
    :param ts_ns: the deciding bar's ``ts``, ns since the epoch.
    :param book: the book sending it.
    :param seq: 0 for the bar's first order of that book, 1 for the next (a stop, then the
        policy's order), ...
    :return: ``<symbol>.<book>.<ts_ns>.<seq>``, e.g. ``ES.production.1704205800000000000.0``.
    """
    return f"{symbol}.{book}.{ts_ns}.{seq}"


class Broker(Protocol):
    """A broker as the executor sees it (module doc for delivery and errors)."""

    def submit(self, order: Order) -> None:
        """Place a market order; a ``client_id`` seen before is a no-op (idempotent).

        :param order: the order.
        :raises OrderRejected: bad symbol, zero or too large a quantity, or the id reused for
            a different order.
        :raises BrokerTimeout: no answer; submit the same order again.
        """
        ...

    def cancel(self, client_id: str) -> None:
        """Cancel a working order; cancelling a cancelled order is a no-op.

        :param client_id: the order's id.
        :raises OrderRejected: unknown id, or the order is already filled.
        """
        ...

    def poll_fills(self) -> list[Fill]:
        """:return: fills not yet received, oldest first; calling again confirms these."""
        ...

    def positions(self) -> dict[str, int]:
        """:return: net signed contracts per symbol, non-zero positions only."""
        ...

    def working(self) -> list[Order]:
        """:return: orders accepted and not yet filled or cancelled, oldest first."""
        ...

    def on_bar(self, bar: Bar) -> None:
        """Market data from the loop, once per accepted bar (a simulator fills on it; a real
        adapter does nothing).

        :param bar: the bar.
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
