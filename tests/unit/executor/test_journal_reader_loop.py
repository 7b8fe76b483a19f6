"""The offline journal reader (mia.pipelines.journal_reader) on a journal the live loop wrote:
the books it reads are the books the executor holds (design.md §3 rule 4's file contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice

import pytest

from executor.settings import RollbackSettings
from mia.pipelines.journal_reader import window

LOOSE = RollbackSettings(max_drawdown=1.0, min_trades=10**6, underperformance=1e9,
                         max_error_rate=1.0, max_latency_ms=1e6)


@pytest.mark.slow
def test_the_reader_sees_the_books_the_loop_holds_after_a_replay_with_a_canary(world,
                                                                               make_executor):
    ex, st = make_executor(canary=True, share=0.5, rollback=LOOSE)
    stats = ex.run(islice(world.replay(), 1400))  # 700 ES bars and their MNQ partners
    capital = world.cfg.params.env.initial_equity
    got = window(st.journal.path, "ES", since=datetime(2024, 1, 1, tzinfo=UTC),
                 until=datetime(2024, 1, 6, tzinfo=UTC),
                 capital={"production": capital / 2, "canary": capital / 2}, multiplier=50.0)
    assert got.bars == stats.bars + stats.faults
    assert stats.fills > 0, "the books must trade to prove anything"
    # the executor's own marks: the last ES price the journal holds (a fill or a risk event)
    mark = None
    for r in st.journal.read():
        if r.kind == "fill" and r.payload["symbol"] == "ES":
            mark = r.payload["price"]
        elif r.kind == "risk_event" and r.payload["engine"].get("last_close") is not None:
            mark = r.payload["engine"]["last_close"]
    for book in ("production", "canary"):
        held = ex.state.books.get((book, "ES"))
        assert held is not None, book
        assert got.books[book].position == held.quantity
        assert got.books[book].pnl == pytest.approx(held.cash + held.quantity * mark * 50.0)
