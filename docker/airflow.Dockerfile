# syntax=docker/dockerfile:1
# MIA's Airflow image: api-server, scheduler, dag-processor and Celery workers, with `mia`
# installed from this checkout and the whole stack from requirements.lock (the tasks train,
# validate and register: torch, SB3, GX, Evidently, MLflow).
# Build from the repository root (docker-compose.yml does):
#   docker build -f docker/airflow.Dockerfile -t mia/airflow:0.1.0 .
FROM python:3.11.13-slim-bookworm

# the commit the image was built from, for model lineage (no .git in the build context):
#   docker build --build-arg MIA_GIT_SHA=$(git rev-parse HEAD) ...
ARG MIA_GIT_SHA=unknown

ENV MIA_GIT_SHA=$MIA_GIT_SHA \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    MIA_HOME=/var/lib/mia \
    MIA_PARAMS=/opt/mia/params.yaml \
    NUMBA_CACHE_DIR=/var/cache/mia/numba \
    GX_ANALYTICS_ENABLED=false

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# lightgbm's wheel links the system OpenMP runtime (torch and scikit-learn bundle their own)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 mia \
 && useradd --system --uid 10001 --gid mia --home-dir /home/mia --create-home \
      --shell /usr/sbin/nologin mia

# The lock, exactly: pip/setuptools/wheel at their pins first, torch's CPU build from the
# PyTorch index without its dependencies (the lock pins those), then every other line.
COPY requirements.lock /opt/mia/requirements.lock
RUN python -m venv /opt/venv \
 && pip install -c /opt/mia/requirements.lock pip setuptools wheel \
 && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu \
 && grep -v '^torch==' /opt/mia/requirements.lock > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && pip check

COPY pyproject.toml README.md params.yaml /opt/mia/
COPY mia /opt/mia/mia
COPY executor /opt/mia/executor
COPY dags /opt/mia/dags
COPY plugins /opt/mia/plugins
COPY great_expectations /opt/mia/great_expectations
COPY docker/scripts /opt/mia/docker/scripts

# editable, as `make setup` does: mia finds dags/, plugins/ and great_expectations/ beside
# its package. The code stays root-owned (read-only to the runtime user); what Airflow and the
# stages write is mia's: AIRFLOW_HOME, MIA_HOME (a volume), the numba cache, GX's results.
RUN pip install --no-deps --no-build-isolation -e /opt/mia \
 && python /opt/mia/docker/scripts/lock_check.py /opt/mia/requirements.lock \
 && install -d -o mia -g mia -m 0750 /opt/airflow /var/lib/mia /var/cache/mia/numba \
      /opt/mia/great_expectations/uncommitted

USER 10001:10001
WORKDIR /opt/mia
EXPOSE 8080 8974 8793
ENTRYPOINT ["python", "/opt/mia/docker/scripts/airflow_entrypoint.py"]
CMD ["airflow", "version"]
