"""The paper broker: next-bar-open fills with the env's cost model, idempotency, durable state."""

from __future__ import annotations

import math
import sqlite3
import stat
from datetime import UTC, datetime, timedelta

import pytest

from executor.broker import BrokerFault, BrokerTimeout, Order, OrderRejected, PaperBroker, paper
from executor.journal import to_ns
from mia.data.contracts import contract
from mia.envs.costs import CostModel
from mia.errors import (
    AlertError,
    ConfigError,
    DataValidationError,
    OperationalError,
    TemporaryError,
)
from mia.types import Bar
from tests.unit.risk._rules import PARAMS

T0 = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)
COSTS = {s: CostModel.from_config(contract(s), PARAMS.env) for s in ("ES", "MNQ")}


def bar(i: int, open_: float = 4800.0, symbol: str = "ES",
        extra: dict[str, float] | None = None) -> Bar:
    return Bar(T0 + timedelta(minutes=i), symbol, open_, open_ + 2, open_ - 2, open_ + 1, 100.0,
               extra)


def order(cid: str = "ES.production.1.0", q: int = 2, symbol: str = "ES",
          book: str = "production") -> Order:
    return Order(cid, symbol, q, book, "policy", 1)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "paper.sqlite"


@pytest.fixture
def broker(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5)
    yield b
    b.close()


def test_market_order_fills_at_the_next_bar_open_with_the_shared_cost_model(broker):
    broker.on_bar(bar(0, 4790.0))
    broker.submit(order(q=2))
    assert broker.poll_fills() == []
    broker.on_bar(bar(1, 4800.0))
    (fill,) = broker.poll_fills()
    es = COSTS["ES"]
    assert fill.price == es.fill_price(4800.0, 2) == 4800.0 + 0.125 + es.slippage
    assert fill.fee == 2 * es.commission_per_side
    assert fill.ts_ns == to_ns(bar(1).ts)
    # price and fee together cost exactly what the env and the backtest charge
    assert math.isclose((fill.price - 4800.0) * 2 * es.multiplier + fill.fee, es.cost(2))
    assert broker.positions() == {"ES": 2}
    assert broker.working() == []


def test_a_sell_fills_below_the_open_at_the_bar_spread_when_the_bar_has_one(broker):
    broker.submit(order(q=-3))
    broker.on_bar(bar(1, 4800.0, extra={"bid_ask_spread": 1.0}))
    (fill,) = broker.poll_fills()
    assert fill.price == 4800.0 - 0.5 - COSTS["ES"].slippage
    assert broker.positions() == {"ES": -3}


def test_latency_bars_delay_the_fill(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5, latency_bars=2)
    b.submit(order())
    b.on_bar(bar(1, 4801.0))
    b.on_bar(bar(2, 4802.0))
    assert b.poll_fills() == []
    b.on_bar(bar(3, 4803.0))
    assert [f.price for f in b.poll_fills()] == [COSTS["ES"].fill_price(4803.0, 2)]
    b.close()


def test_orders_fill_only_on_bars_of_their_symbol(broker):
    broker.submit(order(q=1))
    broker.submit(order("MNQ.canary.1.0", q=-1, symbol="MNQ", book="canary"))
    broker.on_bar(bar(1, 16800.0, symbol="MNQ"))
    assert [f.symbol for f in broker.poll_fills()] == ["MNQ"]
    assert [o.client_id for o in broker.working()] == ["ES.production.1.0"]
    broker.on_bar(bar(1))
    assert broker.positions() == {"ES": 1, "MNQ": -1}


def test_a_resubmitted_client_id_is_never_filled_twice_even_after_a_restart(path, broker):
    broker.submit(order())
    broker.submit(order())  # a retry after a timeout
    broker.on_bar(bar(1))
    broker.close()
    again = PaperBroker(path, COSTS, max_order_contracts=5)  # the executor restarted
    again.submit(order())  # recovery resends what it journaled
    again.on_bar(bar(2))
    assert len(again.fills()) == 1
    assert again.positions() == {"ES": 2}
    again.close()


def test_a_client_id_reused_for_another_order_is_rejected(broker):
    broker.submit(order(q=2))
    with pytest.raises(OrderRejected, match="already used for \\+2 ES"):
        broker.submit(order(q=-2))


@pytest.mark.parametrize(("bad", "match"), [
    (order(symbol="NQ"), "not tradable"),
    (order(q=0), "non-zero int"),
    (Order("c", "ES", 1.5, "production", "policy", 1), "non-zero int"),  # type: ignore[arg-type]
    (order(q=6), "exceeds max_order_contracts 5"),
    (order(q=-6), "exceeds max_order_contracts 5"),
    (order(book="prod"), "book"),
    (order(cid=""), "client_id is empty"),
])
def test_bad_orders_are_rejected_with_the_reason_and_nothing_is_placed(broker, bad, match):
    with pytest.raises(OrderRejected, match=match) as err:
        broker.submit(bad)
    assert isinstance(err.value, AlertError)  # alert and carry on; retrying would not help
    assert broker.orders() == []


def test_a_bar_seen_before_fills_nothing_twice(broker):
    broker.submit(order())
    broker.on_bar(bar(1))
    broker.submit(order("ES.production.2.0"))
    broker.on_bar(bar(1))  # the feed redelivered it after a crash
    broker.on_bar(bar(0))  # an older bar
    assert len(broker.fills()) == 1
    assert [o.client_id for o in broker.working()] == ["ES.production.2.0"]


def test_fills_come_again_until_the_next_poll_and_after_a_restart(path, broker):
    broker.submit(order())
    broker.on_bar(bar(1))
    first = broker.poll_fills()
    assert len(first) == 1
    broker.close()  # died before journaling them
    again = PaperBroker(path, COSTS, max_order_contracts=5)
    assert again.poll_fills() == first  # delivered again to the new instance
    assert again.poll_fills() == []  # that call confirmed them
    again.close()
    third = PaperBroker(path, COSTS, max_order_contracts=5)
    assert third.poll_fills() == []
    assert len(third.fills()) == 1
    third.close()


def test_cancel_stops_a_working_order_and_refuses_unknown_or_filled_ones(broker):
    broker.submit(order("a"))
    broker.submit(order("b"))
    broker.cancel("a")
    broker.cancel("a")  # cancelling again is a no-op
    broker.on_bar(bar(1))
    assert [f.client_id for f in broker.poll_fills()] == ["b"]
    with pytest.raises(OrderRejected, match="already filled"):
        broker.cancel("b")
    with pytest.raises(OrderRejected, match="unknown"):
        broker.cancel("zzz")


def test_an_injected_reject_places_nothing_and_the_next_call_works(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5,
                    faults=[BrokerFault(method="submit", call=2, kind="reject")])
    b.submit(order("a"))
    with pytest.raises(OrderRejected, match="injected"):
        b.submit(order("b"))
    b.submit(order("c"))
    assert [o.client_id for o in b.orders()] == ["a", "c"]
    b.close()


def test_an_injected_timeout_does_nothing_and_a_lost_reply_acts_once(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5,
                    faults=[BrokerFault(method="submit", call=1, kind="timeout"),
                            BrokerFault(method="submit", call=2, kind="lost_reply"),
                            BrokerFault(method="positions", call=1, kind="timeout")])
    with pytest.raises(BrokerTimeout) as err:
        b.submit(order("a"))
    assert isinstance(err.value, TemporaryError)
    assert b.orders() == []
    with pytest.raises(BrokerTimeout, match="took effect"):
        b.submit(order("a"))
    b.submit(order("a"))  # the retry the TemporaryError asks for
    b.on_bar(bar(1))
    assert len(b.fills()) == 1
    with pytest.raises(BrokerTimeout):
        b.positions()
    assert b.positions() == {"ES": 2}
    b.close()


def test_an_injected_redelivery_returns_the_previous_batch_again(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5,
                    faults=[BrokerFault(method="poll_fills", call=2, kind="redeliver")])
    b.submit(order())
    b.on_bar(bar(1))
    first = b.poll_fills()
    assert b.poll_fills() == first
    assert b.poll_fills() == []
    b.close()


@pytest.mark.parametrize("fault", [
    BrokerFault(method="poll_fills", call=1, kind="reject"),
    BrokerFault(method="submit", call=1, kind="redeliver"),
    BrokerFault(method="submit", call=0, kind="timeout"),
])
def test_a_fault_its_method_cannot_have_is_a_config_error(path, fault):
    with pytest.raises(ConfigError, match="fault"):
        PaperBroker(path, COSTS, max_order_contracts=5, faults=[fault])


def test_bad_limits_are_config_errors(path):
    with pytest.raises(ConfigError, match="max_order_contracts"):
        PaperBroker(path, COSTS, max_order_contracts=0)
    with pytest.raises(ConfigError, match="latency_bars"):
        PaperBroker(path, COSTS, max_order_contracts=1, latency_bars=-1)
    with pytest.raises(ConfigError, match="no symbols"):
        PaperBroker(path, {}, max_order_contracts=1)


def test_a_non_finite_open_fills_nothing(broker):
    broker.submit(order())
    with pytest.raises(DataValidationError, match="validate bars"):
        broker.on_bar(bar(1, math.nan))
    assert broker.fills() == []
    assert len(broker.working()) == 1


def test_broker_state_file_is_private(path, broker):
    broker.submit(order())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_paper_broker_has_every_broker_method_with_the_same_parameters():
    import inspect

    from executor.broker import Broker

    for name, proto in inspect.getmembers(Broker, inspect.isfunction):
        if not name.startswith("_"):
            impl = getattr(PaperBroker, name)
            assert list(inspect.signature(impl).parameters) == list(
                inspect.signature(proto).parameters), name


@pytest.mark.parametrize(("query", "params"), [
    (paper._COUNT_DOWN, ("ES", 1)), (paper._DUE, ("ES",)), (paper._UNRECEIVED, ()),
])
def test_the_per_bar_lookups_use_an_index_not_a_scan_of_the_history(broker, path, query,
                                                                    params):
    # a replay of 1M bars books ~30k orders: a scan of them on every bar with a working order
    # was the executor's p99 (tests/benchmarks/bench_executor.py)
    for i in range(50):
        broker.on_bar(bar(2 * i))
        broker.submit(order(cid=f"ES.production.{i}.0", q=1))
        broker.on_bar(bar(2 * i + 1))
        broker.poll_fills()
    db = sqlite3.connect(path)
    try:
        db.execute("ANALYZE")
        plan = [r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + query, params)]
    finally:
        db.close()
    # the partial index holds the working orders / unreceived fills only: reading it (even
    # whole) is not reading the table
    assert any("orders_working" in p or "fills_unreceived" in p for p in plan), plan
    assert all("USING INDEX" in p for p in plan if p.startswith("SCAN")), plan


def test_a_batch_commits_every_call_at_its_end(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5, faults=[
        BrokerFault("submit", 2, "reject")])
    with b.batch():
        b.on_bar(bar(0))
        b.submit(order(cid="a", q=1))
        with pytest.raises(OrderRejected):
            b.submit(order(cid="b", q=1))  # rejected inside the batch: nothing of it kept
        b.on_bar(bar(1))
        (fill,) = b.poll_fills()
        other = sqlite3.connect(path)
        assert other.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)  # not yet
        other.close()
    assert [o.client_id for o in b.orders()] == ["a"]
    assert fill.client_id == "a"
    b.close()
    again = PaperBroker(path, COSTS, max_order_contracts=5)
    assert again.positions() == {"ES": 1}
    again.close()


def test_a_batch_that_raises_keeps_nothing_and_the_broker_goes_on(path):
    b = PaperBroker(path, COSTS, max_order_contracts=5)
    b.submit(order(cid="before", q=1))

    def crash_inside() -> None:
        with b.batch():
            b.on_bar(bar(0))
            b.submit(order(cid="inside", q=2))
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        crash_inside()
    assert [o.client_id for o in b.working()] == ["before"]
    b.on_bar(bar(0))
    assert [f.client_id for f in b.poll_fills()] == ["before"]
    with pytest.raises(OperationalError, match="do not nest"), b.batch(), b.batch():
        pass
    b.close()


def test_a_call_that_fails_inside_a_batch_is_undone_alone_and_the_batch_goes_on(path,
                                                                              monkeypatch):
    b = PaperBroker(path, COSTS, max_order_contracts=5)
    real = b._fill_due

    def fails_half_way(symbol, ts_ns, *args):  # the count-down ran, then the disk failed
        b._db.execute(paper._COUNT_DOWN, (symbol, ts_ns))
        raise sqlite3.OperationalError("disk I/O error")

    with b.batch():
        b.on_bar(bar(0))
        b.submit(order(cid="a", q=1))
        monkeypatch.setattr(b, "_fill_due", fails_half_way)
        with pytest.raises(OperationalError, match="disk I/O error"):
            b.on_bar(bar(1))
        # the failed call left nothing: the order still waits one bar, bar 1 is not "seen"
        assert b._db.execute("SELECT bars_left FROM orders WHERE client_id = 'a'").fetchone() \
            == (1,)
        monkeypatch.setattr(b, "_fill_due", real)
        b.on_bar(bar(1))  # the same bar again, now whole
        (fill,) = b.poll_fills()
    assert fill.ts_ns == to_ns(bar(1).ts)
    assert b.positions() == {"ES": 1}
    b.close()
