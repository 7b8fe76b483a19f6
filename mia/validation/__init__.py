"""Data validation: Great Expectations suites and checkpoints (offline) and a fast inline
validator for the live executor (docs/validation.md).

- :mod:`mia.validation.gx_context`: the GX file context, suites, validation definitions,
  checkpoints (:func:`ensure_suites`).
- :mod:`mia.validation.run`: :func:`validate_raw`, :func:`validate_features`,
  :func:`build_data_docs`, :class:`ValidationSummary`.
- :mod:`mia.validation.inline`: :class:`InlineValidator`, :class:`Fault` (pure Python).

Names are resolved lazily (PEP 562): the executor imports ``mia.validation.inline``, which runs
this file first, and must not pull in pandas or GX on the way.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mia.validation.gx_context import ensure_suites, open_context
    from mia.validation.inline import FAULT_CODES, Fault, InlineValidator
    from mia.validation.run import (
        Failure,
        ValidationSummary,
        build_data_docs,
        validate_features,
        validate_raw,
    )

_WHERE = {
    "ensure_suites": "gx_context",
    "open_context": "gx_context",
    "FAULT_CODES": "inline",
    "Fault": "inline",
    "InlineValidator": "inline",
    "Failure": "run",
    "ValidationSummary": "run",
    "build_data_docs": "run",
    "validate_features": "run",
    "validate_raw": "run",
}

__all__ = [
    "FAULT_CODES",
    "Failure",
    "Fault",
    "InlineValidator",
    "ValidationSummary",
    "build_data_docs",
    "ensure_suites",
    "open_context",
    "validate_features",
    "validate_raw",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mia.validation' has no attribute {name!r}")
    return getattr(import_module(f"mia.validation.{module}"), name)
