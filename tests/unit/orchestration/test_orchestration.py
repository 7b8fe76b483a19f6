"""The Airflow environment recipe and the XCom -> MLflow link convention."""

from __future__ import annotations

import stat

import pytest

from mia.errors import ConfigError
from mia.orchestration import (
    airflow_env,
    links_of,
    mlflow_run_ref,
    mlflow_ui_url,
    model_version_ref,
    worker_hostname,
)


def test_env_points_every_process_at_the_repo_folders_and_one_secret(tmp_path):
    env = airflow_env(tmp_path / "af", mia_home=tmp_path / "home", base={"PATH": "/bin"})
    again = airflow_env(tmp_path / "af", base={})
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("/plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/af/airflow.db"
    assert env["MIA_PARAMS"].endswith("/params.yaml")
    assert env["PATH"] == "/bin"
    assert env["MIA_HOME"] == str(tmp_path / "home")
    assert "MIA_HOME" not in again
    # the api-server, scheduler and workers must sign and check tokens with the same key
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == again["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    mode = (tmp_path / "af" / "mia_jwt_secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert "AIRFLOW__CELERY__BROKER_URL" not in env


def test_celery_needs_a_broker_and_a_server_database(tmp_path):
    with pytest.raises(ConfigError, match="broker_url"):
        airflow_env(tmp_path, executor="CeleryExecutor", broker_url="redis://127.0.0.1:6379/0")
    env = airflow_env(tmp_path, executor="CeleryExecutor", broker_url="redis://r:6379/0",
                      database_url="postgresql://postgres@127.0.0.1/af", api_port=8123, base={})
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1/af"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://postgres@127.0.0.1/af"
    import importlib.util

    if importlib.util.find_spec("asyncpg") is None:  # not in requirements.lock: async engine off
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == ""
    else:
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC" not in env
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"


def test_worker_hostname_prefers_the_worker_name(monkeypatch):
    monkeypatch.setenv("MIA_WORKER_NAME", "worker-b")
    assert worker_hostname() == "worker-b"
    monkeypatch.delenv("MIA_WORKER_NAME")
    assert worker_hostname()


def test_mlflow_ui_url_from_env_then_http_tracking_then_default():
    assert mlflow_ui_url({"MIA_MLFLOW_UI_URL": "http://ml:5000/"}) == "http://ml:5000"
    assert mlflow_ui_url({"MLFLOW_TRACKING_URI": "https://ml.corp"}) == "https://ml.corp"
    assert mlflow_ui_url({"MLFLOW_TRACKING_URI": "sqlite:///x.db"}) == "http://127.0.0.1:5000"


def test_links_come_from_the_xcom_convention_only():
    value = {"output": "file:///x", **mlflow_run_ref("3", "abc"),
             **model_version_ref("mia-ES", "7")}
    assert links_of(value, "http://ml") == {
        "MLflow run": "http://ml/#/experiments/3/runs/abc",
        "MLflow model version": "http://ml/#/models/mia-ES/versions/7"}
    assert links_of({"mlflow_run": {"run_id": "abc"}}, "http://ml") == {}
    assert links_of(["not", "a", "dict"], "http://ml") == {}
    assert links_of(None, "http://ml") == {}
