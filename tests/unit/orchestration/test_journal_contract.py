"""The journal contract between the executor (writer) and mia (reader, design.md §3 rule 4).

The journal here is written by the executor's own code (``executor.journal.Journal``,
``executor.state.LiveState.commit`` and the ``*_entry`` builders, a real ``mia.risk`` engine);
``mia.pipelines.journal_reader`` reads it read-only by its schema and must see the books the
executor's state holds. A change of the executor's schema or payloads fails here first.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest

from executor import journal as executor_journal
from executor.broker import Fill, Order, client_id
from executor.journal import Journal, to_ns
from executor.state import (
    LiveState,
    alert_entry,
    alias_entry,
    bar_entry,
    order_entry,
    position_entry,
    risk_entry,
)
from mia.clock import TestClock
from mia.errors import OperationalError
from mia.pipelines import journal_reader
from mia.pipelines.journal_reader import trade_date, window
from mia.risk import RiskEngine
from tests.unit.risk._rules import rules

MULT = {"ES": 50.0, "MNQ": 2.0}
T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)  # trade date 2024-01-02
T1 = datetime(2024, 1, 3, 15, 0, tzinfo=UTC)  # trade date 2024-01-03
CAPITAL = {"production": 237_500.0, "canary": 12_500.0}  # $250k at a 5 % canary share
MINUTE = timedelta(minutes=1)


class Writer:
    """The executor's state and journal, with a helper per thing the loop journals."""

    def __init__(self, journal: Journal) -> None:
        self.j, self.s, self.n = journal, LiveState(MULT), 0

    def bar(self, ts: datetime, symbol: str = "ES") -> None:
        self.s.commit(self.j, bar_entry(symbol, to_ns(ts), f"{symbol}:{to_ns(ts)}"))

    def trade(self, book: str, q: int, price: float, at: datetime, symbol: str = "ES") -> None:
        self.n += 1
        o = Order(client_id(symbol, to_ns(at), book, self.n), symbol, q, book, "policy",
                  to_ns(at))
        self.s.commit(self.j, order_entry(o))
        self.s.commit_fill(self.j, Fill(f"f{self.n}", o.client_id, symbol, q, price,
                                        2.25 * abs(q), to_ns(at)))


@pytest.fixture
def journal(tmp_path):
    # the journal's clock is years away from the market times: windows are cut by market time
    j = Journal(tmp_path / "executor" / "journal.sqlite",
                clock=TestClock(datetime(2030, 6, 1, tzinfo=UTC)))
    yield j
    j.close()


def two_days(w: Writer) -> None:
    """Day 1: a production round trip and a canary flip; day 2 (the window): the canary closes
    at a loss, production opens, the canary's risk engine trips the daily loss limit and the
    executor rolls the canary back."""
    w.bar(T0)
    w.trade("production", 2, 4800.0, T0 + MINUTE)
    w.trade("canary", -1, 4801.0, T0 + MINUTE)
    w.bar(T0 + MINUTE)
    w.s.commit(w.j, alert_entry("warning", "canary_decision_failed", "non-finite feature"))
    w.trade("production", -2, 4810.0, T0 + 2 * MINUTE)
    w.trade("canary", 2, 4805.0, T0 + 2 * MINUTE)
    w.bar(T0 + 2 * MINUTE)
    w.bar(T1)
    w.trade("canary", -1, 4790.0, T1 + MINUTE)
    w.trade("production", 1, 4795.0, T1 + MINUTE)
    engine = RiskEngine(rules("ES"), equity=12_500.0, trade_date=date(2024, 1, 3),
                        now_ns=to_ns(T1))
    for ev in engine.on_equity(now_ns=to_ns(T1 + MINUTE), trade_date=date(2024, 1, 3),
                               equity=12_000.0):
        w.s.commit(w.j, risk_entry("canary", "ES", ev, engine))
    w.s.commit(w.j, alias_entry("canary", None, 0.0, "canary drawdown 4.00% > 3.00%"))
    w.bar(T1 + MINUTE)
    w.trade("canary", 3, 17000.0, T1 + MINUTE, symbol="MNQ")  # another contract: not ES's books
    w.bar(T1 + 2 * MINUTE)


def test_the_reader_speaks_the_executors_schema_version_and_kinds():
    assert journal_reader.SCHEMA_VERSION == executor_journal.SCHEMA_VERSION
    assert set(journal_reader.KINDS) <= set(executor_journal.KINDS)
    required = executor_journal.REQUIRED  # the fields the executor guarantees on every record
    assert {"book", "symbol", "quantity", "price", "fee", "ts_ns"} <= required["fill"]
    assert {"symbol", "ts_ns"} <= required["bar"]
    assert {"book", "symbol", "quantity"} <= required["position"]
    assert {"book", "symbol", "engine"} <= required["risk_event"]


def test_over_the_whole_journal_the_reader_sees_the_books_the_executor_holds(journal):
    w = Writer(journal)
    two_days(w)
    got = window(journal.path, "ES", since=T0 - timedelta(days=1), until=T1 + timedelta(days=1),
                 capital=CAPITAL, multiplier=MULT["ES"])
    assert got.journal_id == journal.journal_id
    assert got.last_seq == journal.last_seq
    for book in ("production", "canary"):
        held = w.s.books[(book, "ES")]
        assert got.books[book].position == held.quantity
        # PnL from a flat, cashless start: the executor's cash plus the position at the last ES
        # price (4795, not the MNQ fill after it)
        assert got.books[book].pnl == pytest.approx(held.cash + held.quantity * 4795.0 * 50)
    assert got.books["production"].trades == 1  # +2 -> 0
    assert got.books["canary"].trades == 2  # -1 -> +1 (a flip), +1 -> 0
    assert got.bars == 6
    assert got.trade_dates == (date(2024, 1, 2), date(2024, 1, 3))
    assert got.errors == {"canary_decision_failed": 1}


def test_a_window_holds_only_the_records_of_its_market_times(journal):
    w = Writer(journal)
    two_days(w)
    got = window(journal.path, "ES", since=T0 + 2 * MINUTE, until=T1 + 2 * MINUTE,
                 capital=CAPITAL, multiplier=MULT["ES"])
    assert got.bars == 3
    assert got.trade_dates == (date(2024, 1, 3),)
    assert got.errors == {}  # the failed decision was on day 1
    canary, production = got.books["canary"], got.books["production"]
    # canary: +1 held from 4805 into the window, sold at 4790 (fee 2.25)
    assert canary.pnl == pytest.approx(-15 * 50 - 2.25)
    assert canary.trades == 1
    assert canary.position == 0
    assert canary.max_drawdown == pytest.approx(752.25 / 12_500.0)
    assert canary.ret == pytest.approx(-752.25 / 12_500.0)
    assert production.pnl == pytest.approx(-2.25)  # bought 1 at 4795, marked at 4795
    assert production.trades == 0
    assert production.position == 1
    causes = sorted(h.split(":")[0] for b, h in got.holds if b == "canary")
    assert causes == ["breaker.loss", "limit.daily_loss"]
    assert got.rollbacks == ("canary drawdown 4.00% > 3.00%",)


def test_a_reconciled_position_is_the_books_position(journal):
    w = Writer(journal)
    w.bar(T0)
    w.trade("production", 1, 4800.0, T0 + MINUTE)
    w.s.commit(journal, position_entry("production", "ES", 3, "reconcile"))
    w.bar(T0 + MINUTE)
    got = window(journal.path, "ES", since=T0 - MINUTE, until=T0 + MINUTE, capital=CAPITAL,
                 multiplier=50.0)
    assert got.books["production"].position == w.s.position("production", "ES") == 3


def test_reading_never_blocks_or_writes_the_live_journal(journal):
    w = Writer(journal)
    w.bar(T0)
    before = window(journal.path, "ES", since=T0 - MINUTE, until=T0 + MINUTE,
                    capital=CAPITAL, multiplier=50.0)
    w.bar(T0 + MINUTE)  # the executor keeps appending while (and after) mia reads
    after = window(journal.path, "ES", since=T0 - MINUTE, until=T0 + MINUTE,
                   capital=CAPITAL, multiplier=50.0)
    assert (before.bars, after.bars) == (1, 2)
    assert journal.count() == 2
    reader = sqlite3.connect(f"{journal.path.as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO meta VALUES ('x', 'y')")  # what mode=ro guarantees
    reader.close()


def test_another_schema_version_or_no_journal_is_refused_with_the_fix(journal, tmp_path):
    with pytest.raises(OperationalError, match="canary_review.journal"):
        window(tmp_path / "nowhere.sqlite", "ES", since=T0, until=T1, capital=CAPITAL,
               multiplier=50.0)
    db = sqlite3.connect(journal.path)
    db.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(OperationalError, match="schema '2'"):
        window(journal.path, "ES", since=T0, until=T1, capital=CAPITAL, multiplier=50.0)


def test_an_empty_or_naive_window_is_refused():
    with pytest.raises(OperationalError, match="empty"):
        window(None, "ES", since=T1, until=T0, capital=CAPITAL, multiplier=50.0)  # type: ignore[arg-type]
    with pytest.raises(OperationalError, match="naive"):
        window(None, "ES", since=T0.replace(tzinfo=None), until=T1,  # type: ignore[arg-type]
               capital=CAPITAL, multiplier=50.0)


def test_trade_dates_follow_the_cme_session_that_opens_at_18_et():
    assert trade_date(to_ns(datetime(2024, 1, 2, 22, 0, tzinfo=UTC))) == date(2024, 1, 2)  # 17 ET
    assert trade_date(to_ns(datetime(2024, 1, 2, 23, 1, tzinfo=UTC))) == date(2024, 1, 3)  # 18:01
