"""A paper broker: market orders fill at the next bar's open with the env's cost model.

The same :class:`~mia.envs.costs.CostModel` as the training env and the backtest prices every
fill, so paper trading, the backtest and the env agree on costs: an order sent after bar ``t``
fills at the open of bar ``t + 1 + latency_bars`` of its symbol, at
``CostModel.fill_price(open, quantity, spread)`` (the open moved against the order by half the
bar's ``bid_ask_spread``, or the default spread, plus slippage), and pays
``commission_per_side`` per contract as its fee. Fill price and fee together cost exactly
``CostModel.cost`` against trading at the open (the fee is the commission only: the spread
and slippage are already in the price).

It keeps its own state (orders, fills, positions, the last bar per symbol) in its own SQLite
file, one transaction per call, so it behaves like an external system across executor restarts:
a ``client_id`` it has seen is never traded again, a bar it has seen fills nothing twice, and
fills not yet received (:mod:`executor.broker.base`) are delivered again to a new instance.
An order counts only bars that close after it was created (``created_ns``), so a bar seen
again after a restart never fills an order sent after it; the last bar per symbol is kept in
memory and written with every fill (a bar that moved an order is never counted twice). A bar
with no working order of its symbol and a poll with nothing new touch no file: most bars, the
per-bar cost of a replay.

For the executor's bad-input tests it can fail on purpose (:class:`BrokerFault`): reject or
time out the k-th call of a method, lose the reply after acting, or deliver a batch of fills
again.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal, NamedTuple

from executor.broker.base import BOOKS, BrokerTimeout, Fill, Order, OrderRejected
from executor.journal import Sync, connect, to_ns
from mia.envs.costs import CostModel
from mia.errors import ConfigError, DataValidationError, OperationalError
from mia.types import Bar

Method = Literal["submit", "cancel", "poll_fills", "positions", "working", "on_bar"]
FaultKind = Literal["reject", "timeout", "lost_reply", "redeliver"]
_FAULTS: Final[dict[str, tuple[str, ...]]] = {
    "reject": ("submit", "cancel"), "lost_reply": ("submit", "cancel", "on_bar"),
    "timeout": ("submit", "cancel", "poll_fills", "positions", "working", "on_bar"),
    "redeliver": ("poll_fills",),
}
_SCHEMA: Final[str] = """
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL, quantity INTEGER NOT NULL, book TEXT NOT NULL, reason TEXT NOT NULL,
    created_ns INTEGER NOT NULL, status TEXT NOT NULL, bars_left INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, quantity INTEGER NOT NULL,
    price REAL NOT NULL, fee REAL NOT NULL, ts_ns INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, quantity INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS last_bar (symbol TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL);
-- every bar with a working order, and every poll after a fill, looks these up: without the
-- partial indexes each scanned the whole history (30k orders over 1M replayed bars: ~ms)
CREATE INDEX IF NOT EXISTS orders_working ON orders (symbol, seq) WHERE status = 'working';
CREATE INDEX IF NOT EXISTS fills_unreceived ON fills (seq) WHERE received = 0;
"""
_SELECT_FILLS: Final[str] = ("SELECT fill_id, client_id, symbol, quantity, price, fee, ts_ns "
                              "FROM fills ")
_SELECT_ORDERS: Final[str] = ("SELECT client_id, symbol, quantity, book, reason, created_ns "
                               "FROM orders ")
# the lookups of every bar with a working order and every poll after a fill (the indexes above)
_COUNT_DOWN: Final[str] = ("UPDATE orders SET bars_left = bars_left - 1 WHERE symbol = ? AND "
                           "status = 'working' AND created_ns < ?")
_DUE: Final[str] = ("SELECT client_id, quantity FROM orders WHERE symbol = ? AND "
                    "status = 'working' AND bars_left <= 0 ORDER BY seq")
_UNRECEIVED: Final[str] = _SELECT_FILLS + "WHERE received = 0 ORDER BY seq"


class BrokerFault(NamedTuple):
    """A failure to inject.

    :param method: the broker method that fails.
    :param call: which call of it (1 = the first call on this instance).
    :param kind: ``reject`` (raise :class:`OrderRejected`, change nothing), ``timeout`` (raise
        :class:`BrokerTimeout`, change nothing), ``lost_reply`` (act, then raise
        :class:`BrokerTimeout`), ``redeliver`` (``poll_fills`` returns the previous batch again,
        as if its confirmation were lost).
    """

    method: Method
    call: int
    kind: FaultKind


class PaperBroker:
    """The simulated broker (module doc).

    :param path: its state file, e.g. ``<MIA_HOME>/executor/paper_broker.sqlite`` (mode 0600).
    :param costs: cost model per tradable symbol; orders for other symbols are rejected.
    :param max_order_contracts: largest ``|quantity|`` of one order; larger is rejected.
    :param latency_bars: extra bars between an order and its fill (0: the next bar's open).
    :param faults: failures to inject, for tests.
    :param sync: its state file's durability (:func:`executor.journal.connect`): ``off`` for
        replays, which need none.
    :raises ConfigError: no symbols, a bad limit or latency, or a fault that its method cannot
        have.
    """

    def __init__(self, path: Path, costs: Mapping[str, CostModel], *,
                 max_order_contracts: int, latency_bars: int = 0,
                 faults: Sequence[BrokerFault] = (), sync: Sync = "full") -> None:
        if not costs:
            raise ConfigError("paper broker: no symbols; pass a CostModel per tradable symbol")
        if max_order_contracts < 1 or latency_bars < 0:
            raise ConfigError(f"paper broker: max_order_contracts={max_order_contracts} must be"
                              f" >= 1 and latency_bars={latency_bars} >= 0")
        for f in faults:
            if f.method not in _FAULTS.get(f.kind, ()) or f.call < 1:
                raise ConfigError(f"paper broker fault {f}: kind {f.kind!r} applies to "
                                  f"{list(_FAULTS.get(f.kind, ()))} and call counts from 1")
        self.path = Path(path)
        self.costs = dict(costs)
        self.max_order_contracts = max_order_contracts
        self.latency_bars = latency_bars
        self._faults: dict[tuple[str, int], FaultKind] = {(f.method, f.call): f.kind
                                                         for f in faults}
        self._calls: dict[str, int] = {}
        self._unconfirmed: list[str] = []  # fill ids of the last poll, confirmed by the next
        self._batched = False  # inside batch(): each call is a savepoint of its transaction
        self._db = connect(self.path, sync=sync)
        try:
            self._db.executescript(_SCHEMA)
            self._last_bar: dict[str, int] = {}  # in memory as in the file: no read per bar
            self._working: dict[str, int] = {}  # working orders per symbol
            self._news = True  # fills may wait unreceived (a restart): the first poll reads
            self._reload()
        except sqlite3.Error as exc:
            raise OperationalError(f"paper broker state {self.path} is unreadable ({exc}); "
                                   "move it away to start the paper account afresh") from exc

    # --- orders ---------------------------------------------------------------------------

    def submit(self, order: Order) -> None:
        """Accept a market order (idempotent on ``client_id``).

        :param order: the order.
        :raises OrderRejected: unknown symbol, quantity 0 / not an int / above
            ``max_order_contracts``, unknown book, or the id reused for a different order.
        :raises BrokerTimeout: an injected timeout.
        """
        fault = self._fault("submit")
        q = order.quantity
        problem = (
            "client_id is empty" if not order.client_id else
            f"symbol {order.symbol!r} is not tradable here (known: {sorted(self.costs)})"
            if order.symbol not in self.costs else
            f"quantity {q!r} must be a non-zero int" if type(q) is not int or q == 0 else
            f"|quantity| {abs(q)} exceeds max_order_contracts {self.max_order_contracts}"
            if abs(q) > self.max_order_contracts else
            f"book {order.book!r} is not one of {list(BOOKS)}" if order.book not in BOOKS else
            "injected reject" if fault == "reject" else None)
        if problem is None:
            row = self._db.execute("SELECT symbol, quantity, book FROM orders WHERE "
                                   "client_id = ?", (order.client_id,)).fetchone()
            if row is not None:
                if tuple(row) == (order.symbol, q, order.book):
                    return self._reply(fault)  # resubmitted after a crash: already ours
                problem = (f"client_id {order.client_id!r} was already used for {row[1]:+d} "
                           f"{row[0]} ({row[2]}); a new order needs a new id")
        if problem is not None:
            raise OrderRejected(f"paper broker rejected order {order.client_id!r} "
                                f"({order.quantity!r} {order.symbol}): {problem}; nothing "
                                "was placed")
        with self._tx():
            self._db.execute("INSERT INTO orders (client_id, symbol, quantity, book, reason, "
                             "created_ns, status, bars_left) VALUES (?, ?, ?, ?, ?, ?, "
                             "'working', ?)",
                             (*order, 1 + self.latency_bars))
        self._working[order.symbol] = self._working.get(order.symbol, 0) + 1
        self._reply(fault)

    def cancel(self, client_id: str) -> None:
        """Cancel a working order (a cancelled one: no-op).

        :param client_id: the order's id.
        :raises OrderRejected: unknown id, already filled, or an injected reject.
        :raises BrokerTimeout: an injected timeout.
        """
        fault = self._fault("cancel")
        row = self._db.execute("SELECT status FROM orders WHERE client_id = ?",
                               (client_id,)).fetchone()
        problem = ("it is unknown" if row is None else
                   "it is already filled (poll_fills reports the fill)" if row[0] == "filled"
                   else "injected reject" if fault == "reject" else None)
        if problem is not None:
            raise OrderRejected(f"paper broker cannot cancel {client_id!r}: {problem}")
        with self._tx():
            done = self._db.execute("UPDATE orders SET status = 'cancelled' WHERE client_id = ? "
                                    "AND status = 'working' RETURNING symbol",
                                    (client_id,)).fetchall()
        for (symbol,) in done:
            self._working[symbol] -= 1
        self._reply(fault)

    def fill_stop(self, order: Order, level: float, ts_ns: int,
                  spread: float | None = None) -> None:
        """A resting stop (or take-profit) the bar traded through: fill it now at ``level``.

        The risk engine decides stops inside a bar from its high and low (``mia.risk.stops``:
        at the level, at the open on a gap); a real broker holds them as stop orders and reports
        their fills; here the order is filled at once, priced like a market order at ``level``
        (``CostModel.fill_price``) with the commission, and delivered by :meth:`poll_fills`.
        Idempotent on ``client_id`` like :meth:`submit`.

        :param order: the exit order. :param level: the price the stop filled at, points.
        :param ts_ns: when (the bar's close time). :param spread: the bar's bid-ask spread.
        :raises OrderRejected: as :meth:`submit`.
        """
        self.submit(order)  # checks and records it (a repeat is a no-op)
        cost = self.costs[order.symbol]
        with self._tx():
            status = self._db.execute("SELECT status FROM orders WHERE client_id = ?",
                                      (order.client_id,)).fetchone()[0]
            if status != "working":
                return
            q = order.quantity
            self._db.execute("INSERT INTO fills (fill_id, client_id, symbol, quantity, price, fee,"
                             " ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (f"paper-{order.client_id}", order.client_id, order.symbol, q,
                              cost.fill_price(level, q, spread), abs(q) * cost.commission_per_side,
                              ts_ns))
            self._db.execute("UPDATE orders SET status = 'filled' WHERE client_id = ?",
                             (order.client_id,))
            self._db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (symbol) "
                             "DO UPDATE SET quantity = quantity + excluded.quantity",
                             (order.symbol, q))
        self._working[order.symbol] -= 1
        self._news = True

    # --- market data and fills ------------------------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        """Fill the symbol's due orders at this bar's open; a bar not newer than the last one
        seen for its symbol changes nothing (a replayed bar fills nothing twice).

        :param bar: an accepted bar.
        :raises DataValidationError: the open is not a positive finite price (nothing filled).
        :raises BrokerTimeout: an injected timeout.
        """
        fault = self._fault("on_bar")
        cost = self.costs.get(bar.symbol)
        if cost is None:
            return self._reply(fault)  # nothing of this symbol can be working
        if not (math.isfinite(bar.open) and bar.open > 0.0):
            raise DataValidationError(f"paper broker got {bar.symbol} open={bar.open!r} at "
                                      f"{bar.ts.isoformat()}; validate bars before the broker")
        ts_ns = to_ns(bar.ts)
        last = self._last_bar.get(bar.symbol)
        if last is not None and ts_ns <= last:
            return self._reply(fault)
        if self._working.get(bar.symbol, 0) > 0:
            with self._tx():
                self._db.execute("INSERT OR REPLACE INTO last_bar VALUES (?, ?)",
                                 (bar.symbol, ts_ns))
                self._fill_due(bar.symbol, ts_ns, bar.open,
                               (bar.extra or {}).get("bid_ask_spread"), cost)
        self._last_bar[bar.symbol] = ts_ns
        self._reply(fault)

    def _fill_due(self, symbol: str, ts_ns: int, open_: float, spread: float | None,
                  cost: CostModel) -> None:
        self._db.execute(_COUNT_DOWN, (symbol, ts_ns))
        due = self._db.execute(_DUE, (symbol,)).fetchall()
        for cid, q in due:
            # the fee is the commission only: spread and slippage are in the price already
            price = cost.fill_price(open_, q, spread)
            fee = abs(q) * cost.commission_per_side
            self._db.execute("INSERT INTO fills (fill_id, client_id, symbol, quantity, price, fee,"
                             " ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (f"paper-{cid}", cid, symbol, q, price, fee, ts_ns))
            self._db.execute("UPDATE orders SET status = 'filled' WHERE client_id = ?", (cid,))
            self._db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (symbol) "
                             "DO UPDATE SET quantity = quantity + excluded.quantity", (symbol, q))
            self._working[symbol] -= 1
            self._news = True

    def poll_fills(self) -> list[Fill]:
        """Confirm the previous batch, then return every fill not yet confirmed.

        :return: fills, oldest first (at-least-once: see :mod:`executor.broker.base`).
        :raises BrokerTimeout: an injected timeout (nothing confirmed).
        """
        fault = self._fault("poll_fills")
        if fault == "timeout":
            raise BrokerTimeout("paper broker: injected poll_fills timeout; poll again")
        if fault == "redeliver":
            again = set(self._unconfirmed)
            return [f for f in self.fills() if f.fill_id in again]
        if self._unconfirmed:
            with self._tx():
                self._db.executemany("UPDATE fills SET received = 1 WHERE fill_id = ?",
                                     [(f,) for f in self._unconfirmed])
            self._unconfirmed = []
        if not self._news:
            return []
        rows = self._db.execute(_UNRECEIVED).fetchall()
        fills = [Fill(*r) for r in rows]
        self._unconfirmed = [f.fill_id for f in fills]
        self._news = False  # the next fill made sets it again
        return fills

    # --- account --------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """:return: net contracts per symbol, non-zero only.

        :raises BrokerTimeout: an injected timeout.
        """
        self._fault("positions")
        return dict(self._db.execute("SELECT symbol, quantity FROM positions WHERE "
                                     "quantity != 0 ORDER BY symbol").fetchall())

    def working(self) -> list[Order]:
        """:return: orders waiting for their fill bar, oldest first.

        :raises BrokerTimeout: an injected timeout.
        """
        self._fault("working")
        return self._orders("WHERE status = 'working'")

    def orders(self) -> list[Order]:
        """:return: every order ever accepted, oldest first (its own books, for audits)."""
        return self._orders("")

    def fills(self) -> list[Fill]:
        """:return: every fill ever made, oldest first, received or not."""
        rows = self._db.execute(_SELECT_FILLS + "ORDER BY seq").fetchall()
        return [Fill(*r) for r in rows]

    def close(self) -> None:
        """Close the state file (nothing is confirmed: unconfirmed fills come again)."""
        self._db.close()

    # --- internals ------------------------------------------------------------------------

    def _orders(self, where: str) -> list[Order]:
        rows = self._db.execute(_SELECT_ORDERS + where + " ORDER BY seq").fetchall()
        return [Order(*r) for r in rows]

    def _fault(self, method: str) -> FaultKind | None:
        n = self._calls[method] = self._calls.get(method, 0) + 1
        kind = self._faults.get((method, n))
        if kind == "timeout" and method != "poll_fills":
            raise BrokerTimeout(f"paper broker: injected timeout on {method} call {n}; nothing "
                                "happened, call again")
        return kind

    @staticmethod
    def _reply(fault: FaultKind | None) -> None:
        if fault == "lost_reply":
            raise BrokerTimeout("paper broker: injected lost reply; the call took effect, "
                                "repeating it is safe")

    def _reload(self) -> None:
        # after a rolled-back transaction the file is the truth again
        self._last_bar = dict(self._db.execute("SELECT symbol, ts_ns FROM last_bar").fetchall())
        self._working = dict(self._db.execute(
            "SELECT symbol, COUNT(*) FROM orders WHERE status = 'working' GROUP BY symbol"
        ).fetchall())
        self._news = True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold every call's changes in one transaction, committed when the block ends (a
        replay: like :meth:`executor.journal.Journal.batch`, it needs no per-call durability,
        and a replay killed midway then loses the broker's changes with the journal's instead
        of keeping orders the journal never committed). Each call stays atomic inside it (a
        savepoint); an exception rolls the whole block back and propagates.

        :raises OperationalError: the commit failed.
        """
        if self._batched:
            raise OperationalError("paper broker: batch() is already open; batches do not nest")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OperationalError(f"paper broker state {self.path}: cannot start a batch "
                                   f"({exc})") from exc
        self._batched = True
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._reload()
            raise
        finally:
            self._batched = False

    @contextmanager
    def _tx(self) -> Iterator[None]:
        begin, commit, rollback = (("SAVEPOINT call", "RELEASE call", "ROLLBACK TO call")
                                   if self._batched else
                                   ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"))
        try:
            self._db.execute(begin)
            try:
                yield
                self._db.execute(commit)
            except BaseException:
                self._db.execute(rollback)
                if self._batched:
                    self._db.execute(commit)  # a savepoint rolled back is still open
                self._reload()
                raise
        except sqlite3.Error as exc:
            raise OperationalError(f"paper broker state {self.path}: write failed ({exc}); "
                                   "the call had no effect") from exc
