"""The admin HTTP endpoint: an authenticated kill switch and a read-only status (issue 7, item 5).

Served by the standard library's :class:`~http.server.ThreadingHTTPServer` from a daemon thread,
bound to ``127.0.0.1:<admin_port>`` (``executor.yaml``), so it is reachable from the host only
(an SSH tunnel or a local reverse proxy for anything else). Every request needs
``Authorization: Bearer <token>``; the token is the value of the environment variable named by
``admin_token_env`` and is compared with :func:`hmac.compare_digest` (constant time: the
comparison leaks no prefix). Without that variable the endpoint is off, with a warning: the
kill file and SIGTERM still work.

=================  ============================================================================
``POST /kill``     creates ``kill_file`` (body: optional ``{"reason": "..."}``), which the loop
                   checks between bars: every book goes HALTED and flattens, latched. 202.
``GET /status``    the loop's state as JSON: trading state, positions and cash per book, risk
                   modes and holds, model versions, canary share, the kill file. 200.
=================  ============================================================================

There is no ``/resume``: a kill is a latch a person releases, by restarting the executor after
removing the kill file (docs/executor.md, "Kill switch"); an HTTP call that can undo a kill
would make a stolen token worth more than one that can only stop trading.

Audit: every call is one log line (``mia.executor.admin``: method, path, peer, status; a
refused token at WARNING). The token is never logged. The endpoint never writes the journal
(the loop is its one writer): the kill reaches it as the file, the loop journals the risk event.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from mia.clock import Clock, SystemClock
from mia.errors import ConfigError, OperationalError

if TYPE_CHECKING:
    from executor.alerts import Alerter
    from executor.loop import Executor
    from executor.settings import ExecutorSettings

log = logging.getLogger("mia.executor.admin")
ENV_NAME: Final = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MIN_TOKEN_CHARS: Final[int] = 16
MAX_BODY_BYTES: Final[int] = 4096
ROUTES: Final[dict[str, str]] = {"/kill": "POST", "/status": "GET"}
RESUME: Final[str] = ("resume is not offered over HTTP (the halt is a latch; a restart keeps it): "
                      "move the kill file away, then 'python -m executor release --config "
                      "executor.yaml --cause kill_switch --by NAME --why TEXT' "
                      "(docs/operations.md, 'Releasing a latch')")

Status = Callable[[], Mapping[str, Any]]


def executor_status(ex: Executor) -> dict[str, Any]:
    """The loop's state for ``GET /status``, read from the admin thread without a lock.

    Safe while the loop runs: each container is copied in one C-level call (atomic under the
    GIL) and every value read is immutable (``BookPosition``, ``Routing``, ``TradingState``,
    ``str``); nothing here calls a method that changes state.

    :param ex: the running executor.
    :return: JSON-able data.
    """
    books: dict[str, dict[str, dict[str, float]]] = {}
    for (book, symbol), pos in dict(ex.state.books).items():
        books.setdefault(book, {})[symbol] = {"position": pos.quantity, "cash_usd": pos.cash}
    risk = {key: {"mode": engine.state.mode.name,
                  "holds": [h.cause for h in engine.state.holds]}
            for key, engine in dict(ex.engines).items()}
    for key in risk:  # a book that has not traded yet is flat, and says so
        book, _, symbol = key.partition("/")
        books.setdefault(book, {}).setdefault(symbol, {"position": 0, "cash_usd": 0.0})
    routing = ex.routing
    kill = ex.kill_file
    return {"symbol": ex.symbol, "trading_state": ex.phase, "books": books, "risk": risk,
            "models": {name: None if slot is None else slot.version
                       for name, slot in dict(ex.slots).items()},
            "routing": routing.mode, "canary_share": routing.share,
            "kill_file": None if kill is None else {"path": str(kill), "exists": kill.exists()},
            "last_bar_ns": dict(ex.state.last_bar_ns),
            "counts": {"bars": ex.stats.bars, "faults": ex.stats.faults,
                       "orders": ex.stats.orders, "fills": ex.stats.fills}}


def start_admin(settings: ExecutorSettings, status: Status, *, alerter: Alerter | None = None,
                env: Mapping[str, str] | None = None, host: str = "127.0.0.1",
                port: int | None = None, clock: Clock | None = None) -> AdminServer | None:
    """Start the endpoint if its token is configured (module doc).

    :param settings: ``executor.yaml`` (``admin_token_env``, ``admin_port``, ``kill_file``).
    :param status: returns the status document (:func:`executor_status` of the loop).
    :param alerter: sends the ``kill_switch`` alert when ``POST /kill`` pulls the switch.
    :param env: where to read the token; default :data:`os.environ`.
    :param host: bind address; keep the default unless a proxy on this host fronts it.
    :param port: TCP port; default ``settings.admin_port`` (0: any free port, for tests).
    :param clock: time written into the kill file.
    :return: the running server, or ``None`` (with a warning) when the token variable is unset.
    :raises ConfigError: the variable's name is not a name, the token is shorter than
        :data:`MIN_TOKEN_CHARS`, or ``kill_file`` is unset (the endpoint could not kill).
    """
    name = settings.admin_token_env
    if not ENV_NAME.match(name):
        # never echo it: a token pasted here by mistake must not reach the logs
        raise ConfigError("executor.yaml admin_token_env must be the NAME of an environment "
                          "variable (A-Z, 0-9, _; e.g. MIA_ADMIN_TOKEN), not the token; put "
                          "the token in that variable (systemd: /etc/mia/executor.env)")
    token = (os.environ if env is None else env).get(name, "").strip()
    if not token:
        log.warning("admin endpoint disabled: environment variable %s is not set; set it to "
                    "a random token (openssl rand -hex 32) to serve POST /kill and GET /status "
                    "(the kill file and SIGTERM work without it)", name)
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{name} holds a {len(token)}-character token; use a random one of "
                          f"at least {MIN_TOKEN_CHARS} (openssl rand -hex 32)")
    if settings.kill_file is None:
        raise ConfigError(f"executor.yaml kill_file is not set, and the admin endpoint kills "
                          f"by creating it: set kill_file (e.g. {settings.state_dir}/KILL), or "
                          f"unset {name} to run without the endpoint")
    return AdminServer(kill_file=Path(settings.kill_file), status=status, token=token,
                       host=host, port=settings.admin_port if port is None else port,
                       alerter=alerter, clock=clock)


class AdminServer:
    """The endpoint, serving from a daemon thread as soon as it is built.

    :param kill_file: the file ``POST /kill`` creates (the loop's ``kill_file``).
    :param status: returns the ``GET /status`` document.
    :param token: the bearer token.
    :param host: bind address. :param port: TCP port (0 picks a free one).
    :param alerter: sends the ``kill_switch`` alert on a kill, or None.
    :param clock: time written into the kill file.
    :raises OperationalError: the address cannot be bound.
    """

    def __init__(self, *, kill_file: Path, status: Status, token: str, host: str = "127.0.0.1",
                 port: int = 9109, alerter: Alerter | None = None,
                 clock: Clock | None = None) -> None:
        self.kill_file = Path(kill_file)
        self._status, self._token = status, token.encode()
        self._alerter, self._clock = alerter, clock or SystemClock()
        self._lock = threading.Lock()  # two kills at once create one file
        try:
            self._server = _Server((host, port), _Handler, self)
        except OSError as exc:
            raise OperationalError(f"admin: cannot serve on {host}:{port} ({exc}); set "
                                   "admin_port in executor.yaml to a free port") from exc
        self.host, self.port = host, int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mia-admin",
                                        daemon=True)
        self._thread.start()
        log.info("admin endpoint on http://%s:%d (POST /kill, GET /status)", host, self.port)

    @property
    def url(self) -> str:
        """:return: the base URL."""
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def authorized(self, header: str | None) -> bool:
        """:param header: the request's ``Authorization`` value. :return: a valid bearer token."""
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                  self._token)

    def status(self) -> Mapping[str, Any]:
        """:return: the loop's status document."""
        return self._status()

    def kill(self, reason: str, by: str) -> bool:
        """Create the kill file (atomically: the loop never sees a half-written one).

        :param reason: why, as the caller gave it. :param by: who (the peer address).
        :return: ``True`` if this call created it, ``False`` if it existed already.
        :raises OSError: the file cannot be created.
        """
        with self._lock:
            if self.kill_file.exists():
                return False
            self.kill_file.parent.mkdir(parents=True, exist_ok=True)
            body = {"by": f"admin-http {by}", "reason": reason,
                    "at": self._clock.now().isoformat()}
            tmp = self.kill_file.with_name(f".{self.kill_file.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(body) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.kill_file)
        if self._alerter is not None:
            self._alerter.alert("kill_switch", f"kill switch pulled over HTTP by {by}: "
                                f"{reason or 'no reason given'}; every book halts and flattens "
                                "at the next tick", int(self._clock.now().timestamp() * 1e9))
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 admin: AdminServer) -> None:
        self.admin = admin
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "mia-admin"
    sys_version = ""
    timeout = 10.0  # a client that stalls mid-request frees its thread
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin http: " + format, *args)  # the audit lines are _serve's

    def _serve(self, method: str) -> None:
        admin, peer = self.server.admin, self.client_address[0]
        path = urlsplit(self.path).path
        if not admin.authorized(self.headers.get("Authorization")):
            log.warning("admin audit: REFUSED %s %s from %s: missing or wrong bearer token",
                        method, path, peer)
            self._reply(401, {"error": "a valid 'Authorization: Bearer <token>' is required"},
                        {"WWW-Authenticate": 'Bearer realm="mia-admin"'})
            return
        code, doc, note = self._route(method, path, admin, peer)
        log.log(logging.WARNING if path == "/kill" and code == 202 else logging.INFO,
                "admin audit: %s %s from %s -> %d%s", method, path, peer, code, note)
        self._reply(code, doc, {"Allow": ROUTES[path]} if code == 405 else None)

    def _route(self, method: str, path: str, admin: AdminServer,
               peer: str) -> tuple[int, Mapping[str, Any], str]:
        if path == "/resume":
            return 404, {"error": RESUME}, ""
        if path not in ROUTES:
            return 404, {"error": f"no route {path}; routes: POST /kill, GET /status"}, ""
        if method != ROUTES[path]:
            return 405, {"error": f"{path} takes {ROUTES[path]}"}, ""
        if path == "/status":
            try:
                return 200, _finite(admin.status()), ""
            except Exception as exc:  # noqa: BLE001 - a status bug must not look like a hang
                log.exception("admin: the status callable failed")
                return 500, {"error": f"status unavailable ({type(exc).__name__})"}, ""
        code, reason = self._reason()
        if code != 200:
            return code, {"error": reason}, ""
        try:
            created = admin.kill(reason, peer)
        except OSError as exc:
            log.critical("admin: could not create the kill file %s (%s): trading is NOT "
                         "halted; create it by hand or stop the service", admin.kill_file, exc)
            return 500, {"error": f"could not create {admin.kill_file} ({exc.strerror}); "
                                  "trading is NOT halted: create the file by hand or stop "
                                  "the service"}, ""
        doc = {"killed": True, "created": created, "kill_file": str(admin.kill_file),
               "note": f"every book halts and flattens at the next tick; {RESUME}"}
        return 202, doc, f" reason={reason!r}" + ("" if created else " (kill file existed)")

    def _reason(self) -> tuple[int, str]:
        # :return: (200, the reason) or (the error status, what is wrong with the body)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 400, "Content-Length is not a number"
        if length > MAX_BODY_BYTES:
            return 413, f"body of {length} bytes; send at most {MAX_BODY_BYTES}"
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return 200, ""
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return 400, 'body must be JSON, e.g. {"reason": "feed looks wrong"}'
        if not isinstance(doc, dict) or not isinstance(doc.get("reason", ""), str):
            return 400, 'body must be a JSON object with a string "reason"'
        return 200, str(doc.get("reason", ""))[:500]

    def _reply(self, code: int, doc: Mapping[str, Any],
               headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(doc, allow_nan=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _finite(doc: Any) -> Any:
    # JSON has no NaN: a not-yet-marked value reads as null
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, Mapping):
        return {str(k): _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc
