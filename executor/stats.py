"""What a run of the loop did: counts, per-tick latency and (replay) every decision, packed.

A replay of 1M bars with production and canary records 2M decisions and 1M tick latencies; as
Python tuples and ints they held ~250 MB, as typed arrays ~35 MB (tests/benchmarks/
bench_executor.py: the RSS target is 500 MB for the whole process). A live process keeps its
latencies too (8 bytes a tick: ~4 MB a year of one-minute bars) and records no decision.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field


class Decisions:
    """``(ts_ns, book, target)`` per decision, oldest first, stored as three typed arrays.

    Reads like the list of tuples it replaces: iterate, ``len``, ``==`` (with another
    ``Decisions`` or a list of tuples).
    """

    __slots__ = ("_book", "_books", "_codes", "_target", "_ts")

    def __init__(self) -> None:
        self._ts = array("q")
        self._book = array("B")
        self._target = array("i")
        self._books: list[str] = []
        self._codes: dict[str, int] = {}

    def append(self, decision: tuple[int, str, int]) -> None:
        """:param decision: the bar's ts_ns, the book, its target position (contracts)."""
        ts, book, target = decision
        code = self._codes.get(book)
        if code is None:
            code = self._codes[book] = len(self._books)
            self._books.append(book)
        self._ts.append(ts)
        self._book.append(code)
        self._target.append(target)

    def __iter__(self) -> Iterator[tuple[int, str, int]]:
        books = self._books
        return ((t, books[b], x) for t, b, x in zip(self._ts, self._book, self._target,
                                                    strict=True))

    def __len__(self) -> int:
        return len(self._ts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Decisions | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it replaces

    def __repr__(self) -> str:
        return f"Decisions({len(self)} decisions, books {self._books})"


@dataclass(kw_only=True)
class TickStats:
    """What a run did (replay summaries, benchmarks).

    :param latency_ns: each accepted bar's tick, bar in to the last order out, ns.
    :param decisions: every decision of a run that records them (``Executor(record=True)``).
    """

    bars: int = 0
    faults: int = 0
    orders: int = 0
    exits: int = 0  # stop / take-profit orders among them
    fills: int = 0
    backlog: int = 0  # bars published while the process was down: caught up on, not traded
    shadow_fills: int = 0  # hypothetical fills of the shadow book (never at the broker)
    latency_ns: array[int] = field(default_factory=lambda: array("q"))
    decisions: Decisions = field(default_factory=Decisions)
