# syntax=docker/dockerfile:1
# MIA's MLflow tracking server: Postgres backend, S3 artifacts, basic-auth (mlflow[auth]).
# Only the server's packages, every one at its requirements.lock pin (-c pins what the lock
# lists; lock_check.py fails the build on anything it does not list).
# Build from the repository root:
#   docker build -f docker/mlflow.Dockerfile -t mia/mlflow:0.1.0 .
FROM python:3.11.13-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_AUTH_CONFIG_PATH=/tmp/mlflow-auth/basic_auth.ini

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --home-dir /home/mlflow --create-home \
      --shell /usr/sbin/nologin mlflow

COPY requirements.lock /opt/mlflow/requirements.lock
COPY docker/scripts/lock_check.py docker/scripts/mlflow_entrypoint.py docker/scripts/s3_init.py \
     /opt/mlflow/
RUN python -m venv /opt/venv \
 && pip install -c /opt/mlflow/requirements.lock pip setuptools wheel \
 && pip install -c /opt/mlflow/requirements.lock "mlflow[auth]" boto3 psycopg2-binary \
 && pip check \
 && python /opt/mlflow/lock_check.py /opt/mlflow/requirements.lock --project mlflow-server

USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["python", "/opt/mlflow/mlflow_entrypoint.py"]
CMD ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", "5000"]
