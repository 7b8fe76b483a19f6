"""TickStats: a replay's decisions and latencies, packed into typed arrays."""

from __future__ import annotations

import sys

import numpy as np

from executor.stats import Decisions, TickStats


def test_decisions_read_back_as_the_tuples_appended_in_order():
    d = Decisions()
    t = 1_700_000_000_000_000_000
    rows = [(t, "production", 3), (t + 60, "canary", -2), (t + 60, "production", 0),
            (t + 120, "shadow", 1)]
    for r in rows:
        d.append(r)
    assert list(d) == rows
    assert len(d) == 4
    assert d == rows
    assert d != rows[:3]
    other = Decisions()
    for r in rows:
        other.append(r)
    assert d == other
    assert "4 decisions" in repr(d)


def test_a_million_decisions_hold_a_few_bytes_each_not_a_tuple_each():
    d = Decisions()
    for i in range(100_000):
        d.append((1_700_000_000_000_000_000 + i * 60_000_000_000, "production", i % 5 - 2))
    packed = sum(sys.getsizeof(a) for a in (d._ts, d._book, d._target))
    assert packed < 100_000 * 16  # 13 bytes a decision (+ the arrays' spare capacity)


def test_latencies_are_int64_and_read_by_numpy_without_a_copy_of_objects():
    s = TickStats()
    s.latency_ns.extend([120_000, 95_000, 2**40])
    a = np.asarray(s.latency_ns)
    assert a.dtype == np.int64
    assert a.tolist() == [120_000, 95_000, 2**40]
