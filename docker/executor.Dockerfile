# syntax=docker/dockerfile:1
# MIA's live executor: `python -m executor --config /etc/mia/executor.yaml` (docs/executor.md).
# The same lock as every other MIA environment (the executor imports only its light part; the
# import rules hold that, not the image). params.yaml is the repository's with one change,
# executor.metrics_host 0.0.0.0, so Prometheus can scrape it over the compose network
# (docker/scripts/container_params.py proves nothing else differs).
# Build from the repository root:
#   docker build -f docker/executor.Dockerfile -t mia/executor:0.1.0 .
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
    MIA_HOME=/var/lib/mia \
    MIA_PARAMS=/opt/mia/params.container.yaml

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# numba's OpenMP threading layer and lightgbm (in the lock) link the system OpenMP runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 mia \
 && useradd --system --uid 10001 --gid mia --home-dir /home/mia --create-home \
      --shell /usr/sbin/nologin mia

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
COPY docker/scripts /opt/mia/docker/scripts

RUN pip install --no-deps --no-build-isolation -e /opt/mia \
 && python /opt/mia/docker/scripts/lock_check.py /opt/mia/requirements.lock \
 && python /opt/mia/docker/scripts/container_params.py /opt/mia/params.yaml \
      /opt/mia/params.container.yaml \
 && install -d -o mia -g mia -m 0700 /var/lib/mia

USER 10001:10001
WORKDIR /opt/mia
# 9108: Prometheus metrics (params.yaml executor.metrics_port). The admin endpoint (9109) binds
# to the container's loopback only: reach it with `docker compose exec executor ...`.
EXPOSE 9108
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "executor"]
CMD ["--config", "/etc/mia/executor.yaml"]
