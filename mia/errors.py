"""Exception classes that say what the caller should do: retry, stop, or alert.

Leaf module: imports nothing from :mod:`mia`. Modelled on freqtrade's ``TemporaryError`` versus
``OperationalException``: the class encodes the response, the message says what to fix.
"""

from __future__ import annotations

from typing import Literal

Response = Literal["retry", "stop", "alert"]


class MiaError(Exception):
    """Base class of every error MIA raises on purpose.

    :param response: what the caller should do: ``retry`` (transient), ``stop`` (operator must
        fix something) or ``alert`` (keep running, tell a person).
    """

    response: Response = "stop"


class TemporaryError(MiaError):
    """A transient failure (network, lock, service restarting): retrying can help."""

    response: Response = "retry"


class OperationalError(MiaError):
    """A failure a person must fix (bad config, bad file, missing model): stop and say how."""

    response: Response = "stop"


class AlertError(MiaError):
    """A condition to report while carrying on (degraded data, breaker trip)."""

    response: Response = "alert"


class ConfigError(OperationalError):
    """``params.yaml`` or an environment setting is wrong; the message names the key."""


class DataValidationError(OperationalError):
    """Market data broke the bar contract; nothing was written or traded on it."""


class StoreError(OperationalError):
    """The partitioned data store cannot serve or accept a request."""
