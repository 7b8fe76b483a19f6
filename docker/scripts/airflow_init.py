"""One-shot set-up of the Airflow metadata database (compose service ``airflow-init``).

1. ``airflow db migrate`` (idempotent: a database already at head is left as it is).
2. ``GRANT SELECT ON dag_run`` to the read-only ``grafana`` role that docker/postgres/
   init-databases.sh created: the dashboard's DAG-health panel reads run states there, and
   nothing else (connections and variables stay unreadable to Grafana). The table exists only
   after the migration, hence here and not in the Postgres init script.

The database URL is Airflow's own (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``).
"""

from __future__ import annotations

import os
import subprocess
import sys

GRAFANA_ROLE = "grafana"
TABLES = ("dag_run",)


def main() -> int:
    """Migrate, then grant; non-zero exit on any failure (compose then does not start Airflow)."""
    done = subprocess.run(["airflow", "db", "migrate"], check=False)  # noqa: S607 - the image's
    if done.returncode != 0:
        return done.returncode
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not url.startswith("postgresql"):
        print("airflow-init: not on Postgres; no Grafana grant", file=sys.stderr)
        return 0
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        exists = conn.execute(sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                              {"r": GRAFANA_ROLE}).first()
        if exists is None:
            print(f"airflow-init: role {GRAFANA_ROLE!r} does not exist (the Postgres init script "
                  "creates it on a new data volume); the DAG-health panel stays empty",
                  file=sys.stderr)
            return 0
        for table in TABLES:  # constants: identifiers cannot be bound parameters
            conn.execute(sqlalchemy.text(f"GRANT SELECT ON {table} TO {GRAFANA_ROLE}"))
    print(f"airflow-init: migrated; {GRAFANA_ROLE} may read {', '.join(TABLES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
