#!/bin/sh
# Postgres first-start script (mounted in /docker-entrypoint-initdb.d; runs once, on an empty
# data volume): one role and database per service, passwords from the environment.
#   airflow      Airflow's metadata database
#   mlflow       MLflow's tracking + registry store (database mlflow) and basic-auth users
#                (database mlflow_auth)
#   grafana      LOGIN only; airflow-init grants it SELECT on dag_run (the DAG-health panel)
# psql's :'var' quoting keeps any character of a password literal (no shell or SQL injection).
set -eu

: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in docker/.env}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in docker/.env}"
: "${GRAFANA_DB_PASSWORD:?set GRAFANA_DB_PASSWORD in docker/.env}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" \
  -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
  -v grafana_pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE ROLE grafana LOGIN PASSWORD :'grafana_pw';
REVOKE ALL ON DATABASE airflow, mlflow, mlflow_auth FROM PUBLIC;
GRANT CONNECT ON DATABASE airflow TO grafana;
\connect airflow
GRANT USAGE ON SCHEMA public TO grafana;
SQL
