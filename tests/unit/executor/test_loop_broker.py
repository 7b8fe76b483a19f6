"""The loop against a broker that times out or refuses (issue 7, "Bad input"): no crash, every
order reaches the broker once, every fill is booked once, and the journal agrees with the
broker at the end.

Real parts (conftest.py's world: bundles, the paper broker, the SQLite journal); the broker's
calls fail through monkeypatched wrappers that raise what a real adapter raises
(``BrokerTimeout`` before acting, ``OrderRejected``).
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import Any

from executor.broker.base import BrokerTimeout, OrderRejected
from executor.settings import RollbackSettings

LOOSE = RollbackSettings(max_drawdown=1.0, min_trades=10**6, underperformance=1e9,
                         max_error_rate=1.0, max_latency_ms=1e6)


def failing(real: Any, fail_calls: set[int], error: Exception) -> Any:
    """:return: ``real`` that raises ``error`` (before acting) on the calls numbered in
    ``fail_calls`` (1 = the first)."""
    calls = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] in fail_calls:
            raise error
        return real(*args, **kwargs)

    return call


def alerts(st: Any) -> Counter[str]:
    return Counter(r.payload["code"] for r in st.journal.read("alert"))


def agree(ex: Any, st: Any) -> None:
    broker = st.broker
    fills = [r.payload["fill_id"] for r in st.journal.read("fill")]
    assert len(fills) == len(set(fills)), "a fill was booked twice"
    assert {f.fill_id for f in broker.fills()} == set(fills), "a fill was never booked"
    orders = [o.client_id for o in broker.orders()]
    assert len(orders) == len(set(orders))
    held = {s: q for s in ("ES",) if (q := ex.state.position("production", s)
                                      + ex.state.position("canary", s))}
    assert broker.positions() == held


def test_submit_timeouts_are_sent_again_until_the_broker_answers(world, make_executor,
                                                                 monkeypatch):
    ex, st = make_executor(canary=True, share=0.2, rollback=LOOSE)
    monkeypatch.setattr(st.broker, "submit", failing(
        st.broker.submit, {1, 2, 3, 6}, BrokerTimeout("injected: no answer in 2 s")))
    stats = ex.run(islice(world.replay(), 2 * 600))  # ran to the end: no crash
    assert alerts(st)["execution_error"] >= 2
    journaled = {r.payload["client_id"] for r in st.journal.read("order")
                 if r.payload["action"] == "submit"}
    at_broker = {o.client_id for o in st.broker.orders()}
    # every order is at the broker (or still waiting for it, none here: the last retries
    # succeeded), the timed-out ones included, each once
    assert journaled == at_broker
    assert stats.orders == len(at_broker)
    assert not ex._unsent
    agree(ex, st)


def test_a_rejected_submit_is_journaled_and_alerted_and_trading_goes_on(world, make_executor,
                                                                       monkeypatch):
    ex, st = make_executor(rollback=LOOSE)
    monkeypatch.setattr(st.broker, "submit", failing(
        st.broker.submit, {1}, OrderRejected("injected: insufficient margin")))
    stats = ex.run(islice(world.replay(), 2 * 600))
    rejects = [r.payload for r in st.journal.read("order") if r.payload["action"] == "reject"]
    assert len(rejects) == 1
    assert "insufficient margin" in rejects[0]["why"]
    assert alerts(st)["order_rejected"] == 1
    assert stats.orders >= 1  # later orders went through
    agree(ex, st)


def test_poll_and_bar_timeouts_delay_fills_and_lose_none(world, make_executor, monkeypatch):
    ex, st = make_executor(rollback=LOOSE)
    monkeypatch.setattr(st.broker, "poll_fills", failing(
        st.broker.poll_fills, set(range(5, 400, 7)), BrokerTimeout("injected: poll timeout")))
    monkeypatch.setattr(st.broker, "on_bar", failing(
        st.broker.on_bar, set(range(10, 400, 11)), BrokerTimeout("injected: bar timeout")))
    stats = ex.run(islice(world.replay(), 2 * 600))
    assert stats.fills >= 1
    assert alerts(st)["execution_error"] >= 1
    # a last poll collects what the injected timeouts delayed
    ex._poll(ex._bar_ns, ref_price=ex.engines["production/ES"].last_close)
    agree(ex, st)
