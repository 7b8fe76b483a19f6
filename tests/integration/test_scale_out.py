"""Scale-out (issue 6 item 8): the same DAGs on Postgres + CeleryExecutor (Redis broker) with two
workers and MLflow on Postgres, driven through Airflow's REST API.

A fresh metadata database and a fresh MLflow database are created on this machine's Postgres
and dropped afterwards; the api-server, scheduler, dag-processor and two Celery workers run as
subprocesses sharing one MIA_HOME (several machines would share it over a network file system or
move the stores to S3). The workers' task queue is private to the test, so another user of the
same Redis is neither disturbed nor competing. ``mia_retrain`` is triggered with a REST call
(two weeks of data, 1,024 steps per fold — one PPO rollout: the verdict is not the point here)
and the mapped training tasks must have run on both workers: each worker names itself through
``MIA_WORKER_NAME`` (mia.orchestration.worker_hostname), which Airflow stores in the task
instance's ``hostname``. Skipped, with the reason, where Postgres or Redis is absent, or where the
installed Celery provider cannot start (requirements.lock pins celery 5.7.0, which removed a
function apache-airflow-providers-celery 3.26.0 imports).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

from mia.orchestration import airflow_env
from tests.e2e.test_dag_retrain import tiny_params
from tests.integration.conftest import BIN

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
WORKERS = ("mia-worker-1", "mia-worker-2")


def _listening(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


class Api:
    """Airflow's REST API (v2) on the test's api-server."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - localhost
                raw = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def wait(self, path: str, until, what: str, timeout: float, procs) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.call("GET", path)
            if status == 200 and until(body):
                return body
            dead = [name for name, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead} exited while waiting for {what}"
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({path})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    for name, addr in (("Postgres", PG), ("Redis", REDIS)):
        if not _listening(addr):
            pytest.skip(f"{name} is not listening on {addr[0]}:{addr[1]}: the Celery + Postgres "
                        "scale-out test needs both (docker/ compose brings them up)")
    # the Celery provider must import with the installed celery (provider 3.26.0 imports
    # `celery.backends.database.retry`, which celery 5.7 removed)
    probe = subprocess.run([sys.executable, "-c",
                            "import airflow.providers.celery.executors.celery_executor"],
                           capture_output=True, text=True, timeout=120, check=False)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"the Celery executor cannot start with this stack ({last}); pin a celery "
                    "the installed apache-airflow-providers-celery supports (celery<5.7 for "
                    "3.26.0) in requirements.in and re-lock")
    root = tmp_path_factory.mktemp("scale_out")
    tag = uuid.uuid4().hex[:10]
    af_db, ml_db, queue = f"mia_airflow_{tag}", f"mia_mlflow_{tag}", f"mia-scale-out-{tag}"
    _pg(f"CREATE DATABASE {af_db}")
    _pg(f"CREATE DATABASE {ml_db}")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = root / "logs"
    logs.mkdir()
    port = _free_port()
    home = root / "mia"
    env = airflow_env(root / "airflow", executor="CeleryExecutor", mia_home=home,
                      params=_small_params(root / "params.yaml"),
                      database_url=f"postgresql://postgres@{PG[0]}:{PG[1]}/{af_db}",
                      broker_url=f"redis://{REDIS[0]}:{REDIS[1]}/0", api_port=port)
    env.update({
        "MLFLOW_TRACKING_URI": f"postgresql+psycopg2://postgres@{PG[0]}:{PG[1]}/{ml_db}",
        "MIA_ARTIFACT_ROOT": str(root / "artifacts"),
        "MIA_MLFLOW_UI_URL": "http://mlflow.test:5000",
        "MIA_TORCH_THREADS": "1",
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        # only the REST-triggered run: unpausing must not also start the latest CME session's
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    })
    try:
        out = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        from mlflow.tracking import MlflowClient

        # create MLflow's schema once, before two workers race to create it
        MlflowClient(env["MLFLOW_TRACKING_URI"]).search_experiments()
        commands = {
            "api-server": ["api-server", "--port", str(port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            **{w: ["celery", "worker", "--concurrency", "1", "--queues", queue,
                   "--celery-hostname", f"{w}@%h", "--pid", str(root / f"{w}.pid"),
                   "--skip-serve-logs", "--without-mingle", "--without-gossip"]
               for w in WORKERS},
        }
        for name, args in commands.items():
            log = (logs / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args], stdout=log, stderr=subprocess.STDOUT,
                env={**env, "MIA_WORKER_NAME": name}, cwd=root, start_new_session=True)
        api = Api(f"http://127.0.0.1:{port}")
        api.wait("/api/v2/monitor/health", lambda b: True, "the api-server", 120, procs)
        yield api, env, procs, queue, logs
    finally:
        for p in procs.values():  # each was started in its own session: its group is its pid
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        _pg(f"DROP DATABASE IF EXISTS {af_db} WITH (FORCE)")
        _pg(f"DROP DATABASE IF EXISTS {ml_db} WITH (FORCE)")
        import redis

        redis.Redis(*REDIS).delete(queue, f"_kombu.binding.{queue}")


def _small_params(path):
    # tiny_params on two weeks (test_dvc.py's walk-forward): the Celery fan-out is under test,
    # not the verdict, so fewer bars to build, select and score
    p = yaml.safe_load(tiny_params(path).read_text())
    p["data"]["end"] = "2024-01-16"
    p["walk_forward"].update(train_bars=3000, validation_bars=1500, folds=2, holdout_bars=1000)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def test_retrain_triggered_by_rest_runs_mapped_training_on_both_celery_workers(cluster):
    api, env, procs, queue, logs = cluster
    api.wait("/api/v2/dags/mia_retrain", lambda b: True, "the DAG to be parsed", 180, procs)
    status, body = api.call("PATCH", "/api/v2/dags/mia_retrain", {"is_paused": False})
    assert status == 200, body
    status, run = api.call("POST", "/api/v2/dags/mia_retrain/dagRuns", {
        "logical_date": None, "conf": {"symbols": ["ES"], "timesteps": 1024}})
    assert status == 200, run
    run_id = run["dag_run_id"]  # type: ignore[index]
    path = f"/api/v2/dags/mia_retrain/dagRuns/{run_id}"
    try:
        final = api.wait(path, lambda b: b["state"] in ("success", "failed"), "the run", 900,
                         procs)
    except AssertionError:
        tails = {n: (logs / f"{n}.log").read_text(errors="replace")[-1500:] for n in procs}
        raise AssertionError(json.dumps(tails, indent=1)) from None
    _, tis = api.call("GET", f"{path}/taskInstances?limit=100")
    instances = tis["task_instances"]  # type: ignore[index]
    states = {(t["task_id"], t["map_index"]): t["state"] for t in instances}
    assert final["state"] == "success", states  # type: ignore[index]
    train = [t for t in instances if t["task_id"] == "train"]
    assert len(train) == 10
    assert {t["hostname"] for t in train} == set(WORKERS), [t["hostname"] for t in train]
    assert {t["queue"] for t in instances} == {queue}
    # the task's MLflow link, resolved by the plugin inside the api-server
    _, links = api.call("GET", f"{path}/taskInstances/start_walk_forward/links?map_index=0")
    url = links["extra_links"]["MLflow run"]  # type: ignore[index]
    assert url.startswith("http://mlflow.test:5000/#/experiments/")
    # the DAG run's MLflow tab (the plugin's FastAPI app) and the version on Postgres MLflow
    status, page = api.call("GET", f"/mia/mlflow/mia_retrain/{run_id}")
    assert status == 200
    assert url in str(page)
    from mlflow.tracking import MlflowClient

    versions = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_model_versions("name='mia-ES'")
    assert [str(v.version) for v in versions] == ["1"]
