"""mia_backup: MLflow store, executor state and data partitions to S3, daily (issue 6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from _retry import RETRY
from airflow.sdk import dag, task

DOC = """
### Back up MIA to S3

Daily: the MLflow tracking database (SQLite: an online, consistent copy; a server store is
skipped with the reason) and local artifacts, the executor's state (`<MIA_HOME>/executor`), the
data partitions (`<MIA_HOME>/data`) and the live feature log (`<MIA_HOME>/live`) go to
`s3://<backup.bucket>/<backup.prefix>/` at `$AWS_ENDPOINT_URL` (`mia.pipelines.backup`).

Objects are content-addressed, so a day uploads only what changed and a rerun uploads nothing;
the backup's manifest (`manifests/<day>.json`) is written last. `apply_retention` then deletes
backups older than `backup.retention_days` before this one and the objects no backup names.
Restore: `python -m mia.pipelines.backup restore [--key DAY] [--overwrite]`.
"""


# a task returns one small dict (URIs, ids): multiple_outputs=False keeps it one XCom instead
# of one per key, which Airflow would infer from the dict return type
@dag(
    dag_id="mia_backup",
    schedule="30 0 * * *",  # 00:30 UTC: after the retrain that follows the 21/22:00 UTC close
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # retention must not collect a concurrent backup's objects
    dagrun_timeout=timedelta(hours=6),
    tags=["mia", "ops", "backup"],
    doc_md=DOC,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5),
                  "retry_exponential_backoff": 2.0, "retry_policy": RETRY},
)
def mia_backup() -> None:
    @task(multiple_outputs=False)
    def upload(**context: Any) -> dict[str, Any]:
        """Back up every component as this day's backup; the manifest is written last."""
        from _partition import instant, resolve

        from mia.config import load_config
        from mia.pipelines import backup

        cfg = load_config()
        store = backup.store_for(cfg)
        result = backup.run(cfg, key=resolve(context, "day").key, as_of=instant(context),
                            store=store)
        return result.to_xcom(store.where)

    @task(multiple_outputs=False)
    def apply_retention(uploaded: dict[str, Any]) -> dict[str, Any]:
        """Delete backups past `backup.retention_days` and the objects no backup names."""
        from mia.config import load_config
        from mia.pipelines import backup

        r = backup.apply_retention(load_config())
        return {"after": uploaded["key"], "kept": len(r.kept), "deleted": list(r.deleted),
                "deleted_objects": r.deleted_objects}

    apply_retention(upload())


mia_backup()
