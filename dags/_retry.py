"""The retry policy every MIA task runs under: retry what may pass by itself, fail the rest.

A transient error (``mia.errors.TemporaryError``, a dropped connection, a timeout: MLflow, S3 or
Redis may be back) is retried with the DAG's ``retries`` and ``retry_delay``; any other MIA error
(bad data, a bad config, a refused state) fails at once, because a retry would fail the same way:
its message says what to fix, then the operator clears the task. Anything else fails too.

Airflow puts the dags folder on ``sys.path``: DAG files import this module at the top.
"""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

RETRY = ExceptionRetryPolicy(rules=[
    RetryRule(exception=["mia.errors.TemporaryError", "builtins.ConnectionError",
                         "builtins.TimeoutError"], action=RetryAction.RETRY,
              reason="transient: the service may be back"),
    RetryRule(exception="mia.errors.MiaError", action=RetryAction.FAIL,
              reason="bad data, config or state: fix what the message says, then clear the task"),
], default=RetryAction.FAIL)
