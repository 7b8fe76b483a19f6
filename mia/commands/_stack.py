"""The local stack ``mia demo`` and ``mia ui`` share: one Airflow home, one environment.

Both commands run Airflow on SQLite in ``<MIA_HOME>/airflow`` with the environment of
:func:`mia.orchestration.airflow_env`, so the run ``mia demo`` makes with ``airflow dags test``
is the run the api-server of ``mia ui`` shows, and a run triggered in that UI writes the same
stores. The MLflow buttons of the Airflow plugin point at the MLflow UI ``mia ui`` serves
(``MIA_MLFLOW_UI_URL``). Airflow and MLflow run as processes (design.md section 3, rule 4:
nothing in ``mia`` imports airflow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from mia.errors import ConfigError, OperationalError

AIRFLOW_PORT: Final[int] = 8080
MLFLOW_PORT: Final[int] = 5000
HOST: Final[str] = "127.0.0.1"
DAG_ID: Final[str] = "mia_retrain"


def airflow_home(mia_home: Path) -> Path:
    """:return: ``<MIA_HOME>/airflow``: ``airflow.cfg``, the SQLite metadata database, logs."""
    return mia_home / "airflow"


def demo_dir(mia_home: Path) -> Path:
    """:return: ``<MIA_HOME>/demo``: the demo's params, logs and replays."""
    return mia_home / "demo"


def demo_params(mia_home: Path) -> Path:
    """:return: the params file the quick demo profile writes (and ``mia ui`` then uses)."""
    return demo_dir(mia_home) / "params.yaml"


def tool(name: str) -> str:
    """The console script ``name`` of this Python environment (``airflow``, ``mlflow``).

    :raises ConfigError: it is not installed beside the running interpreter.
    """
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise ConfigError(f"{name} is not installed beside {sys.executable}; run 'make setup' "
                          "(it installs the pinned stack of requirements.lock)")
    return str(path)


def stack_env(mia_home: Path, params: Path, *, api_port: int = AIRFLOW_PORT,
              mlflow_port: int = MLFLOW_PORT) -> dict[str, str]:
    """The environment of every Airflow process of the local stack.

    :param mia_home: ``MIA_HOME`` of the tasks.
    :param params: ``MIA_PARAMS`` of the tasks.
    :param api_port: the Airflow api-server's port (the execution API lives there too).
    :param mlflow_port: where ``mia ui`` serves MLflow (the plugin's links), unless
        ``MIA_MLFLOW_UI_URL`` or an ``http(s)`` tracking URI says otherwise.
    """
    from mia.orchestration import airflow_env, mlflow_ui_url

    env = airflow_env(airflow_home(mia_home), mia_home=mia_home, params=params,
                      api_host=HOST, api_port=api_port)
    tracking = env.get("MLFLOW_TRACKING_URI") or ""
    if not env.get("MIA_MLFLOW_UI_URL") and not tracking.startswith(("http://", "https://")):
        env["MIA_MLFLOW_UI_URL"] = f"http://{HOST}:{mlflow_port}"
    env["MIA_MLFLOW_UI_URL"] = mlflow_ui_url(env)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def airflow_url(env: dict[str, str]) -> str:
    """:return: the api-server's address in ``env`` (the Airflow UI)."""
    return env["AIRFLOW__API__BASE_URL"].rstrip("/")


def migrate(env: dict[str, str], log: Path) -> None:
    """``airflow db migrate`` (idempotent): create or upgrade the metadata database.

    :param env: :func:`stack_env`'s environment. :param log: where its output goes.
    :raises OperationalError: the migration failed (the log's tail is in the message).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run([tool("airflow"), "db", "migrate"], env=env, stdout=out,  # noqa: S603
                              stderr=subprocess.STDOUT, check=False, cwd=cwd())
    if done.returncode != 0:
        raise OperationalError(f"'airflow db migrate' failed (exit {done.returncode}) for "
                               f"AIRFLOW_HOME={env['AIRFLOW_HOME']}:\n{tail(log)}\nfull log: {log}")


def tail(path: Path, lines: int = 15) -> str:
    """:return: the last ``lines`` lines of a text file (empty when it does not exist)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cwd() -> Path:
    """:return: the working directory of the stack's subprocesses: the checkout."""
    # not the caller's directory: `python -m executor` puts it first on sys.path, where a folder
    # named `mia` (a MIA_HOME such as /tmp/x/mia) would shadow the package as a namespace package
    from mia.orchestration import REPO

    return REPO
