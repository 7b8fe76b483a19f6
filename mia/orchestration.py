"""How MIA runs Airflow: the environment recipe, worker names and the links to MLflow.

Airflow reads its configuration from ``$AIRFLOW_HOME/airflow.cfg`` overridden by
``AIRFLOW__<SECTION>__<KEY>`` variables. :func:`airflow_env` is the one recipe for those variables
(the tests, ``make demo`` and ``make ui`` all use it), so every process of one installation — the
api-server, scheduler, dag-processor, Celery workers, ``airflow dags test`` — agrees on the
metadata database, the DAG and plugin folders, the execution API address and the token secret.
docs/orchestration.md walks through it.

The XCom convention the plugin's links read is defined here too: a task that made an MLflow run
returns ``{"mlflow_run": {"experiment_id": …, "run_id": …}}`` (and ``{"model_version": {"name":
…, "version": …}}`` when it registered one) beside its URIs. Standard library only: the plugin
imports this module in the api-server.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

from mia.errors import ConfigError

REPO: Final[Path] = Path(__file__).resolve().parents[1]
Executor = Literal["LocalExecutor", "CeleryExecutor"]
# XCom keys inside a task's return value (module docstring)
MLFLOW_RUN: Final[str] = "mlflow_run"
MODEL_VERSION: Final[str] = "model_version"
DEFAULT_MLFLOW_UI: Final[str] = "http://127.0.0.1:5000"


def _secret(home: Path) -> str:
    # Every process must sign and check the execution API's JWTs with the same key; Airflow
    # generates a random one per process when none is configured. One key per AIRFLOW_HOME, kept
    # in a file only its owner can read.
    path = home / "mia_jwt_secret"
    if not path.is_file():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _database(url: str) -> dict[str, str]:
    # SQLAlchemy 2.1 reads `postgresql://` as psycopg 3 and Airflow derives an asyncpg URL for
    # its async engine; the pinned stack has psycopg2 only. Name the driver, and leave the async
    # engine off without asyncpg (Airflow 3.3 uses it only for the REST API's dag-run `wait`).
    out = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    if url.startswith("postgresql://") and not _installed("psycopg"):
        out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql+psycopg2://" + url[13:]
    if url.startswith("postgresql") and not _installed("asyncpg"):
        out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
    return out


def airflow_env(home: Path, *, repo: Path | None = None, mia_home: Path | None = None,
                params: Path | None = None, executor: Executor = "LocalExecutor",
                database_url: str | None = None, broker_url: str | None = None,
                api_host: str = "127.0.0.1", api_port: int = 8080, all_admins: bool = True,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow process of one MIA installation.

    :param home: ``AIRFLOW_HOME`` (``airflow.cfg``, logs, the SQLite database by default).
    :param repo: the MIA checkout whose ``dags/``, ``plugins/`` and ``params.yaml`` are used;
        default: the one this module belongs to.
    :param mia_home: ``MIA_HOME`` for the tasks; default: the one in ``base``, else unchanged.
    :param params: ``MIA_PARAMS``; default ``<repo>/params.yaml``. Tasks load it with
        :func:`mia.config.load_config`, whatever their working directory.
    :param executor: ``LocalExecutor`` (one machine) or ``CeleryExecutor`` (workers anywhere).
    :param database_url: the metadata database (SQLAlchemy URL); default SQLite in ``home``.
        Celery needs a server database (``postgresql://…``, run with psycopg2): SQLite is one
        machine only.
    :param broker_url: the Celery broker (``redis://127.0.0.1:6379/0``); Celery only.
    :param api_host: where the api-server listens and workers reach its execution API.
    :param api_port: its port.
    :param all_admins: every request is an admin without login (Airflow's simple auth manager);
        for an api-server on localhost only.
    :param base: the environment to extend; default :data:`os.environ`.
    :return: ``base`` plus the Airflow and MIA variables.
    :raises ConfigError: Celery without a broker or on SQLite.
    """
    root = (repo or REPO).resolve()
    home = Path(home).resolve()
    db = database_url or f"sqlite:///{home.as_posix()}/airflow.db"
    if executor == "CeleryExecutor" and (not broker_url or db.startswith("sqlite")):
        raise ConfigError("CeleryExecutor needs broker_url (redis://HOST:6379/0) and a server "
                          "database_url (postgresql://…): SQLite serves one machine only")
    env = dict(os.environ if base is None else base)
    api = f"http://{api_host}:{api_port}"
    secret = _secret(home)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        **_database(db),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__HOST": api_host,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__API__SECRET_KEY": secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(all_admins),
        # task instances record which worker ran them (several workers may share a host)
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mia.orchestration.worker_hostname",
        "MIA_PARAMS": str(params or root / "params.yaml"),
    })
    if mia_home is not None:
        env["MIA_HOME"] = str(Path(mia_home).resolve())
    if executor == "CeleryExecutor":
        env["AIRFLOW__CELERY__BROKER_URL"] = str(broker_url)
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    return env


def worker_hostname() -> str:
    """Airflow's ``core.hostname_callable`` for MIA: ``$MIA_WORKER_NAME`` when set (several
    workers on one host stay apart in the task instances' ``hostname``), else the host's FQDN."""
    return os.environ.get("MIA_WORKER_NAME") or socket.getfqdn()


def mlflow_ui_url(env: Mapping[str, str] | None = None) -> str:
    """Where people open MLflow: ``$MIA_MLFLOW_UI_URL``, else an ``http(s)`` tracking URI, else
    :data:`DEFAULT_MLFLOW_UI` (``mlflow ui``'s default address, which ``make ui`` serves).

    :param env: the environment; default :data:`os.environ`.
    """
    env = os.environ if env is None else env
    ui = env.get("MIA_MLFLOW_UI_URL") or ""
    tracking = env.get("MLFLOW_TRACKING_URI") or ""
    if not ui and tracking.startswith(("http://", "https://")):
        ui = tracking
    return (ui or DEFAULT_MLFLOW_UI).rstrip("/")


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """:return: the MLflow UI page of one run."""
    return f"{ui}/#/experiments/{quote(str(experiment_id))}/runs/{quote(str(run_id))}"


def model_version_url(ui: str, name: str, version: str) -> str:
    """:return: the MLflow UI page of one registered model version."""
    return f"{ui}/#/models/{quote(str(name))}/versions/{quote(str(version))}"


def mlflow_run_ref(experiment_id: str, run_id: str) -> dict[str, dict[str, str]]:
    """:return: the XCom entry the plugin's "MLflow run" link reads."""
    return {MLFLOW_RUN: {"experiment_id": str(experiment_id), "run_id": str(run_id)}}


def model_version_ref(name: str, version: str) -> dict[str, dict[str, str]]:
    """:return: the XCom entry the plugin's "MLflow model version" link reads."""
    return {MODEL_VERSION: {"name": str(name), "version": str(version)}}


def links_of(value: Any, ui: str) -> dict[str, str]:
    """The MLflow pages a task's return value names (the XCom convention above).

    :param value: a task's XCom ``return_value`` (anything: only MIA's dicts carry links).
    :param ui: the MLflow UI base URL.
    :return: link name -> URL, for the entries present.
    """
    out: dict[str, str] = {}
    if not isinstance(value, Mapping):
        return out
    run = value.get(MLFLOW_RUN)
    if isinstance(run, Mapping) and run.get("experiment_id") and run.get("run_id"):
        out["MLflow run"] = run_url(ui, run["experiment_id"], run["run_id"])
    mv = value.get(MODEL_VERSION)
    if isinstance(mv, Mapping) and mv.get("name") and mv.get("version"):
        out["MLflow model version"] = model_version_url(ui, mv["name"], mv["version"])
    return out
