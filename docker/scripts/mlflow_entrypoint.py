"""Entry point of the MIA MLflow image: the basic-auth config from the environment, then exec.

``mlflow server --app-name basic-auth`` reads its user store's location from an INI file
(``MLFLOW_AUTH_CONFIG_PATH``), and that location is a database URL with a password, so the
file cannot ship in the image. This writes it, mode 0600, from ``MLFLOW_AUTH_DATABASE_URI`` and
``MLFLOW_AUTH_DEFAULT_PERMISSION`` (default ``READ``). The admin account comes from MLflow's
own variables, ``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD`` (used once, when
the user store is empty), and the CSRF key from ``MLFLOW_FLASK_SERVER_SECRET_KEY``.

Usage: ``python mlflow_entrypoint.py mlflow server --app-name basic-auth ...`` (exec'd).
"""

from __future__ import annotations

import configparser
import io
import os
import sys
from collections.abc import Mapping
from pathlib import Path

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
REQUIRED = ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY")


def auth_ini(env: Mapping[str, str]) -> str:
    """:param env: the environment.
    :return: the text of MLflow's ``basic_auth.ini``.
    :raises SystemExit: naming every missing or wrong variable.
    """
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise SystemExit(f"error: set {', '.join(missing)} (docker/.env; see .env.example)")
    permission = env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "") or "READ"
    if permission not in PERMISSIONS:
        raise SystemExit(f"error: MLFLOW_AUTH_DEFAULT_PERMISSION={permission!r}; use one of "
                         f"{', '.join(PERMISSIONS)}")
    values = {
        "default_permission": permission,
        "database_uri": env["MLFLOW_AUTH_DATABASE_URI"],
        "admin_username": env.get("MLFLOW_AUTH_ADMIN_USERNAME", "") or "admin",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    # MLflow reads the file with configparser's default interpolation: a URL-encoded password
    # (%40 for @) must be written as %%40
    ini = configparser.ConfigParser(interpolation=None)
    ini["mlflow"] = {k: v.replace("%", "%%") for k, v in values.items()}
    out = io.StringIO()
    ini.write(out)
    return out.getvalue()


def write_auth_ini(env: Mapping[str, str]) -> Path:
    """Write :func:`auth_ini` to ``MLFLOW_AUTH_CONFIG_PATH`` (0600); :return: the path."""
    text = auth_ini(env)
    path = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def main(argv: list[str]) -> int:
    """Write the auth config, then replace this process with ``argv``."""
    if not argv:
        print("error: no command; e.g. 'mlflow server --app-name basic-auth'", file=sys.stderr)
        return 2
    write_auth_ini(os.environ)
    os.execvp(argv[0], argv)  # noqa: S606 - the container's command, from compose
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
