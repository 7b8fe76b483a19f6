"""MIA's Airflow 3 plugin: the CME timetable and links from Airflow to MLflow.

- ``timetables``: :class:`cme_timetable.CMECloseTimetable` (a custom schedule must be registered
  by a plugin for the scheduler to deserialize it).
- ``global_operator_extra_links``: "MLflow run" and "MLflow model version" buttons on every task
  instance. The api-server resolves them from the task's XCom ``return_value``, which MIA tasks
  fill by the convention of :mod:`mia.orchestration` (``mlflow_run`` / ``model_version``); a
  task without an MLflow run shows the button disabled.
- ``fastapi_apps`` + ``external_views``: an "MLflow" tab on every DAG run listing the MLflow runs
  and model versions its tasks made, served by the api-server at ``/mia/mlflow/<dag>/<run>``.

The MLflow UI address is ``$MIA_MLFLOW_UI_URL`` of the api-server (mia.orchestration.mlflow_ui_url),
read when a link is shown, so moving MLflow needs no rerun. The page shows run ids and links
only, no data; like every FastAPI plugin app it is not behind Airflow's login, so expose the
api-server only where its DAG runs' ids may be seen.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from cme_timetable import CMECloseTimetable
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from mia.orchestration import links_of, mlflow_ui_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _value(raw: Any) -> Any:
    # XCom rows hold JSON; depending on the database driver the column comes back parsed or as text
    if isinstance(raw, str | bytes):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _return_values(dag_id: str, run_id: str, task_id: str | None = None,
                   map_index: int | None = None) -> list[tuple[str, int, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(key="return_value", run_id=run_id, dag_ids=dag_id,
                               task_ids=task_id, map_indexes=map_index)
    with create_session() as session:
        rows = session.execute(query.with_only_columns(
            XComModel.task_id, XComModel.map_index, XComModel.value)).all()
    return [(r.task_id, r.map_index, _value(r.value)) for r in rows]


class _MLflowLink(BaseOperatorLink):
    """A button resolved from the task instance's own return value."""

    link_name = ""

    @property
    def name(self) -> str:
        """The button's label."""
        return self.link_name

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """:return: the MLflow page of this task instance, or ``""`` (button disabled)."""
        rows = _return_values(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
        return links_of(rows[0][2], mlflow_ui_url()).get(self.name, "") if rows else ""


class MLflowRunLink(_MLflowLink):
    """The MLflow run a task opened (walk-forward, fold, ensemble, register run)."""

    link_name = "MLflow run"


class MLflowModelVersionLink(_MLflowLink):
    """The model version ``package_register`` registered."""

    link_name = "MLflow model version"


app = FastAPI(title="MIA links", description="DAG run -> MLflow runs and model versions")


@app.get("/mlflow/{dag_id}/{run_id:path}", response_class=HTMLResponse)
def mlflow_page(dag_id: str, run_id: str) -> str:
    """The MLflow runs and model versions the tasks of one DAG run made, as an HTML list.

    :param dag_id: the DAG. :param run_id: the DAG run.
    """
    ui = mlflow_ui_url()
    items = []
    for task_id, map_index, value in sorted(_return_values(dag_id, run_id),
                                            key=lambda r: (r[0], r[1])):
        where = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        label = " ".join(str(value.get(k)) for k in ("symbol", "agent", "fold")
                         if isinstance(value, dict) and value.get(k) is not None)
        for name, url in links_of(value, ui).items():
            items.append(f'<li><a href="{html.escape(url)}" target="_blank" rel="noopener">'
                         f"{html.escape(name)}</a> — {html.escape(where)} "
                         f"{html.escape(label)}</li>")
    body = "\n".join(items) or "<li>no task of this run has made an MLflow run yet</li>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MLflow: "
            f"{html.escape(run_id)}</title></head><body style='font-family:sans-serif'>"
            f"<h3>MLflow for {html.escape(dag_id)} / {html.escape(run_id)}</h3>"
            f"<p>MLflow UI: <a href='{html.escape(ui)}' target='_blank'>{html.escape(ui)}</a></p>"
            f"<ul>{body}</ul></body></html>")


class MiaPlugin(AirflowPlugin):
    """Registers MIA's timetable, MLflow buttons and DAG-run MLflow tab."""

    name = "mia"
    timetables = [CMECloseTimetable]
    global_operator_extra_links = [MLflowRunLink(), MLflowModelVersionLink()]
    fastapi_apps = [{"app": app, "url_prefix": "/mia", "name": "MIA links to MLflow"}]
    external_views = [{
        "name": "MLflow",
        "href": "mia/mlflow/{DAG_ID}/{RUN_ID}",
        "destination": "dag_run",
        "url_route": "mia-mlflow",
    }]
