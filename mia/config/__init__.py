"""Typed, frozen configuration: ``params.yaml`` for parameters, the environment for endpoints.

One keyword-only frozen dataclass per component (NautilusTrader's configs are ``frozen``,
``kw_only``, ``forbid_unknown_fields``). A generic loader walks the type hints, so adding a field
needs no loader code; it rejects unknown and missing keys, checks types and ranges, and reports
every problem at once with file, key path and expected type. Leaf module: imports nothing from
:mod:`mia` except :mod:`mia.errors` and :mod:`mia.types`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

from mia.config._checks import (
    AGENT_NAMES,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    UNIT,
    Activation,
    Bound,
)
from mia.config.agents import (
    AgentsConfig,
    DDPGConfig,
    PPOConfig,
    PPOLagrangianConfig,
    QRDQNConfig,
    SACConfig,
)
from mia.config.loader import load_params, parse_params, resolve_params_path
from mia.config.sections import (
    BackupConfig,
    CanaryReviewConfig,
    DataConfig,
    DriftConfig,
    EnsembleConfig,
    EnvConfig,
    ExecutorConfig,
    FeaturesConfig,
    GateConfig,
    Params,
    RiskConfig,
    SelectionConfig,
    WalkForwardConfig,
)
from mia.errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoints:
    """Where services live, from the environment only; secrets are never stored.

    :param mia_home: local state root (``MIA_HOME``, default ``./.mia``), absolute.
    :param mlflow_tracking_uri: ``MLFLOW_TRACKING_URI``, default SQLite under ``mia_home``.
    :param mlflow_artifact_root: ``MIA_ARTIFACT_ROOT``, default ``<mia_home>/mlartifacts``.
    :param s3_endpoint_url: ``AWS_ENDPOINT_URL`` or ``MLFLOW_S3_ENDPOINT_URL``; ``None`` = AWS.
    :param aws_region: ``AWS_DEFAULT_REGION``, or ``None``.
    :param aws_access_key_id_set: whether ``AWS_ACCESS_KEY_ID`` is set (its value is not kept).
    """

    mia_home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    s3_endpoint_url: str | None
    aws_region: str | None
    aws_access_key_id_set: bool


def load_endpoints(env: Mapping[str, str] | None = None) -> Endpoints:
    """Read endpoints from the environment; empty variables count as unset.

    :param env: the environment; default :data:`os.environ`.
    :return: the endpoints, with embedded defaults (SQLite + files under ``MIA_HOME``).
    :raises ConfigError: if ``MIA_HOME`` names an existing file.
    """
    env = os.environ if env is None else env

    def get(*names: str) -> str | None:
        return next((env[n] for n in names if env.get(n)), None)

    home = Path(get("MIA_HOME") or ".mia").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"MIA_HOME={home} is a file; point MIA_HOME at a directory")
    return Endpoints(
        mia_home=home,
        mlflow_tracking_uri=get("MLFLOW_TRACKING_URI") or f"sqlite:///{home.as_posix()}/mlflow.db",
        mlflow_artifact_root=get("MIA_ARTIFACT_ROOT") or str(home / "mlartifacts"),
        s3_endpoint_url=get("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"),
        aws_region=get("AWS_DEFAULT_REGION"),
        aws_access_key_id_set=get("AWS_ACCESS_KEY_ID") is not None,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """Parameters plus endpoints: what a pipeline stage or the CLI needs.

    :param params: validated ``params.yaml``.
    :param endpoints: service locations from the environment.
    :param params_path: absolute path of the file ``params`` came from.
    """

    params: Params
    endpoints: Endpoints
    params_path: Path


def load_config(params_path: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load ``params.yaml`` and the endpoints together.

    :param params_path: explicit params file; ``None`` means ``$MIA_PARAMS`` or ``./params.yaml``.
    :param env: the environment; default :data:`os.environ`.
    :return: the combined configuration.
    :raises ConfigError: as :func:`load_params` and :func:`load_endpoints`.
    """
    found = resolve_params_path(params_path, env)
    return Config(params=load_params(found, env=env), endpoints=load_endpoints(env),
                  params_path=found.resolve())


def to_dict(obj: object) -> dict[str, Any]:
    """Turn a config dataclass back into plain YAML-able data (the inverse of the loader).

    :param obj: a config dataclass instance (:class:`Params`, :class:`Config`, a section…).
    :return: nested dicts, lists, str, int, float, bool, None; dates as ISO strings.
    :raises TypeError: if ``obj`` is not a dataclass instance.
    """
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a config dataclass instance, got {type(obj).__name__}")
    return cast(dict[str, Any], _plain(obj))


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return str(value) if isinstance(value, Path) else value


__all__ = [
    "AGENT_NAMES",
    "NON_NEGATIVE",
    "POSITIVE",
    "PROBABILITY",
    "UNIT",
    "Activation",
    "Bound",
    "SACConfig",
    "PPOConfig",
    "PPOLagrangianConfig",
    "DDPGConfig",
    "QRDQNConfig",
    "AgentsConfig",
    "DataConfig",
    "FeaturesConfig",
    "SelectionConfig",
    "DriftConfig",
    "EnvConfig",
    "WalkForwardConfig",
    "EnsembleConfig",
    "GateConfig",
    "RiskConfig",
    "ExecutorConfig",
    "BackupConfig",
    "CanaryReviewConfig",
    "Params",
    "Config",
    "Endpoints",
    "load_config",
    "load_endpoints",
    "load_params",
    "parse_params",
    "resolve_params_path",
    "to_dict",
]
