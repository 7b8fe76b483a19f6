"""MIA's live executor: the thin process that trades the registry's ``production`` and ``canary``.

Wiring and I/O only (design.md section 3, rule 3): feeds, the loop, the router, broker adapters,
the journal, snapshots and metrics. The math is :mod:`mia.features`, :mod:`mia.risk` and
:mod:`mia.registry.bundle`. Importing this package loads nothing heavy; run it with
``python -m executor``.
"""

__version__ = "0.1.0"
