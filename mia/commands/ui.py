"""``mia ui`` (``make ui``): the Airflow UI and the MLflow UI of this MIA_HOME, on localhost.

Four processes, each in its own session (so one Ctrl-C reaches ``mia ui`` only, which then stops
them in order): ``airflow api-server`` (the UI and the execution API), ``airflow scheduler``,
``airflow dag-processor`` — all three with the environment ``mia demo`` runs ``airflow dags
test`` with (mia.commands._stack), so the demo's run is there — and ``mlflow server`` on the
store of ``MLFLOW_TRACKING_URI`` (default ``<MIA_HOME>/mlflow.db``). A tracking URI that is a
server already is only printed. Each process logs to ``<MIA_HOME>/ui/logs/<name>.log``; if one
dies, the others are stopped and the command fails with its log's tail.

Login: none. Airflow runs its simple auth manager with every request an admin
(``airflow_env(all_admins=True)``), which is for a UI on 127.0.0.1 only; MLflow has no auth.
Tasks triggered in the UI read ``--params``, else the demo's quick-profile params when the demo
wrote them, else ``$MIA_PARAMS`` / ``./params.yaml``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from mia.commands._stack import (
    AIRFLOW_PORT,
    DAG_ID,
    HOST,
    MLFLOW_PORT,
    airflow_url,
    cwd,
    demo_params,
    migrate,
    stack_env,
    tail,
    tool,
)
from mia.errors import ConfigError, OperationalError

STOP_SECONDS: Final[float] = 20.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Service:
    """One process of the UI stack.

    :param name: its name (and log file). :param command: its command line.
    :param health: a URL answering 200 once it serves, or None (no HTTP).
    """

    name: str
    command: tuple[str, ...]
    health: str | None = None


def port_free(port: int, host: str = HOST) -> bool:
    """:return: whether ``host:port`` can be listened on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Supervisor:
    """Starts services, watches them, stops them all (reverse order: SIGTERM, then SIGKILL).

    :param env: their environment. :param logs: the folder of their log files.
    :param sleep: the pause between checks (injectable for tests).
    :param grace: seconds a service gets to stop on SIGTERM before SIGKILL.
    """

    def __init__(self, env: Mapping[str, str], logs: Path, *,
                 sleep: Callable[[float], None] = time.sleep,
                 grace: float = STOP_SECONDS) -> None:
        self.env, self.logs, self._sleep, self._grace = dict(env), logs, sleep, grace
        self.running: list[tuple[Service, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, service: Service) -> None:
        """Start one service in a new session, its output to ``<logs>/<name>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{service.name}.log").open("wb")
        proc = subprocess.Popen(list(service.command), env=self.env, cwd=cwd(),  # noqa: S603
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.running.append((service, proc, out))

    def dead(self) -> list[tuple[Service, int]]:
        """:return: the services that exited, with their exit codes."""
        return [(s, code) for s, p, _ in self.running if (code := p.poll()) is not None]

    def wait_healthy(self, timeout: float) -> None:
        """Wait until every service with a health URL answers 200.

        :raises OperationalError: one exited, or did not answer within ``timeout`` seconds.
        """
        waiting = [s for s, _, _ in self.running if s.health]
        deadline = time.monotonic() + timeout
        while waiting:
            self._raise_if_dead()
            waiting = [s for s in waiting if not _answers(s.health or "")]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(f"{s.name} ({s.health})" for s in waiting)
                raise OperationalError(f"{names} did not answer within {timeout:.0f} s; see "
                                       f"{self.logs}")
            if waiting:
                self._sleep(1.0)

    def watch(self) -> None:
        """Return when interrupted (Ctrl-C, SIGTERM). :raises OperationalError: one exited."""
        try:
            while True:
                self._raise_if_dead()
                self._sleep(1.0)
        except KeyboardInterrupt:
            return

    def _raise_if_dead(self) -> None:
        for service, code in self.dead():
            log = self.logs / f"{service.name}.log"
            raise OperationalError(f"{service.name} exited with code {code}:\n{tail(log)}\n"
                                   f"full log: {log}")

    def stop(self) -> list[str]:
        """Stop every service, the last started first. :return: one line per service."""
        lines = []
        for service, proc, out in reversed(self.running):
            lines.append(f"{service.name}: {_stop(proc, self._grace)}")
            out.close()
        self.running = []
        return lines


def _stop(proc: subprocess.Popen[bytes], grace: float) -> str:
    # the service's own session: its process group holds it and the workers it forked
    if proc.poll() is not None:
        return f"had exited ({proc.returncode})"
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            return "stopped" if sig == signal.SIGTERM else "killed (did not stop on SIGTERM)"
        except subprocess.TimeoutExpired:
            continue
    return "stopped"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own localhost URL
            return int(r.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def services(env: Mapping[str, str], tracking_uri: str, artifact_root: str, *,
             api_port: int, mlflow_port: int) -> list[Service]:
    """The processes of the UI stack (module docstring). :param tracking_uri: MLflow's store."""
    airflow = tool("airflow")
    out = [Service(name="api-server", command=(airflow, "api-server", "--host", HOST, "--port",
                                               str(api_port)),
                   health=f"{airflow_url(dict(env))}/api/v2/monitor/health"),
           Service(name="scheduler", command=(airflow, "scheduler")),
           Service(name="dag-processor", command=(airflow, "dag-processor"))]
    if not tracking_uri.startswith(("http://", "https://")):
        out.append(Service(name="mlflow", command=(
            tool("mlflow"), "server", "--backend-store-uri", tracking_uri,
            "--artifacts-destination", artifact_root, "--host", HOST, "--port", str(mlflow_port),
            "--workers", "1"), health=f"http://{HOST}:{mlflow_port}/health"))
    return out


def ui_params(explicit: Path | None, home: Path, env: Mapping[str, str]) -> Path | None:
    """The params the UI's tasks read (module docstring); None: the usual resolution."""
    if explicit is not None:
        return explicit
    demo = demo_params(home)
    return demo if demo.is_file() and not env.get("MIA_PARAMS") else None


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve both UIs until Ctrl-C (module docstring)."""
    from mia.commands import load

    args.params = ui_params(args.params, _home(args), os.environ)
    cfg = load(args)
    home = cfg.endpoints.mia_home
    busy = [p for p in (args.airflow_port, args.mlflow_port) if not port_free(p)]
    if busy:
        raise ConfigError(f"port(s) {busy} on {HOST} are in use (another 'make ui'?); stop what "
                          "holds them or pass --airflow-port / --mlflow-port")
    env = stack_env(home, cfg.params_path, api_port=args.airflow_port,
                    mlflow_port=args.mlflow_port)
    logs = home / "ui" / "logs"
    migrate(env, logs / "airflow_db_migrate.log")
    sup = Supervisor(env, logs)
    procs = services(env, cfg.endpoints.mlflow_tracking_uri, cfg.endpoints.mlflow_artifact_root,
                     api_port=args.airflow_port, mlflow_port=args.mlflow_port)
    print(f"starting {', '.join(s.name for s in procs)} (logs in {logs}) …", flush=True)
    # Ctrl-C, `kill` and a closed terminal all stop the services; SIGINT explicitly, since a
    # shell starting us in the background leaves it ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        for service in procs:
            sup.start(service)
        sup.wait_healthy(args.timeout)
        print("\n".join(_banner(env, cfg.endpoints.mlflow_tracking_uri, cfg.params_path, logs)),
              flush=True)
        sup.watch()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan them
        print("stopping …", flush=True)
        for line in sup.stop():
            print(f"  {line}", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _banner(env: Mapping[str, str], tracking_uri: str, params: Path, logs: Path) -> list[str]:
    airflow, mlflow = airflow_url(dict(env)), env["MIA_MLFLOW_UI_URL"]
    served = "" if tracking_uri.startswith(("http://", "https://")) else \
        f"   (store {tracking_uri})"
    return [f"  Airflow UI  {airflow}   DAG: {airflow}/dags/{DAG_ID}",
            "              login: none (simple auth manager, every local request is an admin)",
            f"  MLflow UI   {mlflow}{served}",
            "              login: none",
            f"  AIRFLOW_HOME {env['AIRFLOW_HOME']}; tasks triggered here read {params}",
            f"  logs        {logs}",
            "Ctrl-C stops them all."]


def _home(args: argparse.Namespace) -> Path:
    from mia.config import load_endpoints

    env = dict(os.environ)
    if args.home is not None:
        env["MIA_HOME"] = str(args.home)
    return load_endpoints(env).mia_home


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``ui`` to the ``mia`` parser.

    :param top: the top-level subparsers. :param common: parent with ``--params``, ``--home``.
    """
    ui = top.add_parser("ui", parents=[common],
                        help="serve the Airflow UI and the MLflow UI on localhost until Ctrl-C")
    ui.add_argument("--airflow-port", type=int, default=AIRFLOW_PORT, dest="airflow_port")
    ui.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT, dest="mlflow_port")
    ui.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for the servers to answer (default 180)")
    ui.set_defaults(func=cmd_ui)
