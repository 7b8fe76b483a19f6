"""Entry point of the MIA Airflow image: log-in credentials from the environment, then exec.

Airflow's simple auth manager keeps one password per user in a JSON file
(``core.simple_auth_manager_passwords_file``) and, for a user missing there, generates a random
password and prints it to the log. In compose the password comes from ``docker/.env`` instead:
when ``AIRFLOW_ADMIN_PASSWORD`` is set (the api-server only), this writes
``{AIRFLOW_ADMIN_USER: AIRFLOW_ADMIN_PASSWORD}`` to that file, mode 0600, before Airflow starts,
so nothing is generated and no password reaches a log. Every other setting is plain
``AIRFLOW__*`` environment (docker-compose.yml, the recipe of ``mia.orchestration.airflow_env``).

Usage: ``python airflow_entrypoint.py airflow api-server`` (any command; it is exec'd).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

PASSWORDS_FILE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


def write_passwords(env: Mapping[str, str]) -> Path | None:
    """Write the simple auth manager's password file from the environment.

    :param env: the environment (``AIRFLOW_ADMIN_USER``, ``AIRFLOW_ADMIN_PASSWORD``, the file).
    :return: the file written, or ``None`` when no password is set (workers, scheduler).
    :raises SystemExit: when a password is set but the file's location is not.
    """
    password = env.get("AIRFLOW_ADMIN_PASSWORD", "")
    if not password:
        return None
    target = env.get(PASSWORDS_FILE, "")
    if not target:
        raise SystemExit(f"error: AIRFLOW_ADMIN_PASSWORD is set but {PASSWORDS_FILE} is not; "
                         "set it to a file under AIRFLOW_HOME")
    user = env.get("AIRFLOW_ADMIN_USER", "") or "admin"
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({user: password}) + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def main(argv: list[str]) -> int:
    """Write the credentials, then replace this process with ``argv``."""
    if not argv:
        print("error: no command; e.g. 'airflow api-server'", file=sys.stderr)
        return 2
    write_passwords(os.environ)
    os.execvp(argv[0], argv)  # noqa: S606 - the container's command, from compose
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
