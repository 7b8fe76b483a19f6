"""``executor.yaml``: what one executor process trades, from where, and where it keeps state.

Trading rules (risk, costs, canary schedule, poll and snapshot cadence, metrics port) come from
``params.yaml`` (``risk``, ``env``, ``executor`` sections) so the executor trades under the rules
the backtest scored; this file says only what is specific to a deployment. Loaded with the same
checks as ``params.yaml`` (mia.config): unknown, missing or mistyped keys are errors naming the
key. Secrets (the admin token, the webhook URL) come from environment variables named here, never
from the file. ``docs/executor.md`` has an annotated example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from executor.alerts import BODY_KEYS
from mia.config._checks import NON_NEGATIVE, POSITIVE, UNIT, _Checked
from mia.config.loader import parse_section, read_yaml
from mia.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_PASSWORD_IN_URL = re.compile(r"://[^/@]*:[^/@]*@")  # scheme://[user]:password@host


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedSettings(_Checked):
    """Where bars come from.

    ``replay``: the data store over ``start..end`` at ``speed`` (1 = real time, 0 = as fast as
    possible); ``redis``: a Redis stream per symbol (``url``, key ``prefix``, consumer ``group``
    / ``consumer``; executor.feeds.redis_stream documents the message format). A Redis with a
    password: put the whole URL in an environment variable and name it in ``url_env`` (a
    password in ``url`` is refused: the file is not a secret store).
    """

    kind: Literal["replay", "redis"]
    start: str | None = None
    end: str | None = None
    speed: float = field(default=0.0, metadata=NON_NEGATIVE)
    url: str = "redis://127.0.0.1:6379/0"
    url_env: str | None = None
    prefix: str = "mia:bars"  # the stream is <prefix>:<SYMBOL> (a trailing ":" is dropped)
    group: str = "mia-executor"
    consumer: str = "executor-1"

    def _cross_checks(self) -> list[str]:
        out = []
        if _PASSWORD_IN_URL.search(self.url):
            out.append("feed.url: holds a password; put the URL in an environment variable and "
                       "name it in feed.url_env (the value is not shown)")
        if self.url_env is not None and not _ENV_NAME.fullmatch(self.url_env):
            out.append("feed.url_env: not an environment variable name (A-Z, 0-9 and _, e.g. "
                       "MIA_REDIS_URL); it names the variable holding the URL (the value is not "
                       "shown)")
        return out

    def redis_url(self, env: Mapping[str, str]) -> str:
        """:return: the Redis URL: the variable :attr:`url_env` names, else :attr:`url`.
        :raises ConfigError: ``url_env`` names a variable that is not set."""
        if self.url_env is None:
            return self.url
        value = env.get(self.url_env, "").strip()
        if not value:
            raise ConfigError(f"feed.url_env: {self.url_env} is not set; export the Redis URL "
                              f"in it (systemd: EnvironmentFile=/etc/mia/executor.env)")
        return value


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSettings(_Checked):
    """Which bundles run: ``mlflow`` (aliases of ``mia-<SYMBOL>``, polled) or ``local`` paths."""

    source: Literal["mlflow", "local"]
    production: str | None = None
    canary: str | None = None
    canary_share: float = field(default=0.05, metadata=UNIT)


@dataclass(frozen=True, kw_only=True, slots=True)
class RollbackSettings(_Checked):
    """When the canary is rolled back automatically (issue 7, item 6)."""

    max_drawdown: float = field(default=0.03, metadata=UNIT)
    min_trades: int = field(default=20, metadata=POSITIVE)
    underperformance: float = field(default=0.01, metadata=NON_NEGATIVE)  # return on capital
    max_error_rate: float = field(default=0.05, metadata=UNIT)
    max_latency_ms: float = field(default=50.0, metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertSettings(_Checked):
    """Where alerts go beyond the log, and the process's own resource alert.

    :param webhook_fields: fields merged into every webhook's JSON body, e.g. ``{chat_id:
        "-1001234567890"}`` for Telegram's ``sendMessage`` (which also reads ``text``) or
        ``{channel: "#mia"}``; values are strings, numbers or booleans. They may not replace
        the body's own fields (``text``, ``level``, ``code``, ``message``, ``ts``, ``ts_ns``,
        ``source``, ``suppressed``). Not for secrets: the file is readable by group ``mia``
        (a bot token belongs in the URL, in the variable ``webhook_env`` names).
    :param memory_high_mb: resident memory, MiB, above which the process raises a
        ``memory_high`` warning (log, webhook, ``mia_alerts_total``; once, then every 15
        minutes while above). 1024 matches ``MemoryHigh=1G`` of
        ``docker/systemd/mia-executor.service`` and the ``MiaMemoryHigh`` Prometheus rule.
    """

    webhook_fields: dict[str, str | int | float | bool] = field(default_factory=dict)
    memory_high_mb: float = field(default=1024.0, metadata=POSITIVE)

    def _cross_checks(self) -> list[str]:
        out = []
        reserved = sorted(set(self.webhook_fields) & set(BODY_KEYS))
        if reserved:
            out.append(f"webhook_fields: {reserved} would replace the body's own fields "
                       f"({', '.join(BODY_KEYS)}); rename or remove them")
        blank = [k for k in self.webhook_fields if not k.strip()]
        if blank:
            out.append("webhook_fields: a field name is empty; give every field a name")
        return out

    @property
    def memory_high_bytes(self) -> int:
        """:return: :attr:`memory_high_mb` in bytes."""
        return int(self.memory_high_mb * 2**20)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutorSettings(_Checked):
    """One executor process.

    :param symbol: the contract traded. :param cross_symbol: the other symbol (cross features).
    :param state_dir: journal, snapshots and broker state (created 0700).
    :param routing: ``split`` | ``overlap`` | ``shadow`` (executor.router).
    :param overlap_days: ramp of the overlapping transition.
    :param warmup_days: trade dates of history loaded to warm the features at start.
    :param flatten_on_stop: close every position on a graceful stop.
    :param kill_file: its existence trips the kill switch (checked every tick).
    :param admin_token_env: environment variable holding the admin HTTP token.
    :param webhook_env: environment variable holding the alert webhook URL (unset: log only).
    :param alerts: extra webhook body fields and the memory alert (:class:`AlertSettings`).
    """

    symbol: Literal["ES", "MNQ"]
    cross_symbol: Literal["ES", "MNQ"] | None = None
    state_dir: str
    feed: FeedSettings
    models: ModelSettings
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    routing: Literal["split", "overlap", "shadow"] = "split"
    overlap_days: float = field(default=5.0, metadata=POSITIVE)
    warmup_days: int = field(default=5, metadata=POSITIVE)
    flatten_on_stop: bool = False
    kill_file: str | None = None
    admin_token_env: str = "MIA_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
    admin_port: int = field(default=9109, metadata=POSITIVE)
    webhook_env: str = "MIA_ALERT_WEBHOOK"
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def _cross_checks(self) -> list[str]:
        out = []
        if self.cross_symbol == self.symbol:
            out.append(f"cross_symbol: {self.cross_symbol} is the traded symbol; use the other")
        if self.models.source == "local" and not self.models.production:
            out.append("models.production: source is 'local' but no bundle path is given")
        for key in ("admin_token_env", "webhook_env"):
            if not _ENV_NAME.fullmatch(getattr(self, key)):
                # never echo the value: it may be the secret itself, pasted by mistake
                out.append(f"{key}: not an environment variable name (A-Z, 0-9 and _, e.g. "
                           f"{_DEFAULT_ENV[key]}); it names the variable holding the secret, the "
                           "secret itself goes in that variable (the value is not shown)")
        return out

    @property
    def state_path(self) -> Path:
        """The state directory as a path."""
        return Path(self.state_dir)


_DEFAULT_ENV = {"admin_token_env": "MIA_ADMIN_TOKEN", "webhook_env": "MIA_ALERT_WEBHOOK"}


def load_settings(path: str | Path) -> ExecutorSettings:
    """Read and check ``executor.yaml``.

    :raises ConfigError: naming every wrong key.
    """
    return parse_section(ExecutorSettings, read_yaml(path), str(path))
