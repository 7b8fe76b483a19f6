"""The machinery of the chaos, stress and fuzz suite (``tests/e2e/test_chaos_*.py``).

Everything here is small and seeded, so the suite runs in seconds on two cores and imports no
training stack (no torch, no SB3):

- :func:`tiny_bundle` writes a real, verified bundle (``mia.registry.bundle_writer``) whose one
  agent is a hand-built ONNX graph, ``action = tanh(gain * z(ret_1))``: it follows the last bar's
  move, so it wants a new position on most bars (entries, flips and exits to watch), and its
  risk features (``atr_14``, ``atr_dynamic``) warm up in 375 bars;
- :func:`market` generates one-minute ES bars on CME session minutes (a seeded random walk);
- :func:`build_rig` builds the executor's loop the way ``executor.app.open_state`` and
  ``tests/unit/executor/conftest.py`` do: the real journal, paper broker, snapshots and recovery
  in a state directory, the loop in replay mode (a bar's ``ts`` is "now"), warmed on history;
- :class:`TcpProxy` is a network path that can be cut and restored (Redis, MLflow);
- :func:`record_case` merges one case's figures into ``tests/benchmarks/results/chaos.json``
  (the results folder's format, ``tests.benchmarks.common.record``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import selectors
import socket
import sqlite3
import struct
import subprocess
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from executor.feeds.base import FeedItem
from executor.journal import Journal
from mia.types import Bar

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"
MODEL_FEATURES = ("ret_1", "ret_5", "rsi_14")
RISK_FEATURES = ("atr_14", "atr_dynamic")
WARM_BARS = 500  # history bars before the traded ones (the features need 375)
ES_MULTIPLIER = 50.0


# --- configuration -------------------------------------------------------------------------------

def params(**risk: Any) -> Any:
    """The repo's ``params.yaml`` with $1M of equity (ES up to 4 contracts at 1x leverage).

    :param risk: ``risk.*`` overrides (e.g. ``data_fault_limit``).
    """
    from mia.config import load_config

    p = load_config(REPO / "params.yaml", env={}).params
    return dataclasses.replace(p, env=dataclasses.replace(p.env, initial_equity=1_000_000.0),
                               risk=dataclasses.replace(p.risk, **risk))


# --- data ----------------------------------------------------------------------------------------

def session_minutes(n: int, start: date = date(2024, 1, 2)) -> list[int]:
    """:return: the first ``n`` one-minute bar closes (ns, UTC) of the sessions from ``start``."""
    import pandas as pd

    from mia.data.calendar import session_index

    days = n // 1380 + 2
    idx = session_index(start, start + timedelta(days=days * 7 // 5 + 4))
    out = pd.DatetimeIndex(idx).asi8[:n].tolist()
    if len(out) < n:
        raise ValueError(f"only {len(out)} session minutes from {start}; ask for fewer bars")
    return [int(t) for t in out]


def bar_at(ts_ns: int, o: float, h: float, lo: float, c: float, v: float,
           symbol: str = "ES") -> Bar:
    """:return: a Bar at ``ts_ns`` (exact to the microsecond, as the wire format)."""
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_ns // 1000)
    return Bar(ts, symbol, o, h, lo, c, v)


def market(n: int, seed: int, *, price: float = 4800.0, vol: float = 1.0,
           start: date = date(2024, 1, 2)) -> list[Bar]:
    """Seeded one-minute ES bars: a random walk in ticks of 0.25 with consistent OHLC.

    :param n: bars. :param seed: RNG seed. :param price: first open.
    :param vol: standard deviation of a bar's close-to-close move, points.
    """
    rng = np.random.default_rng(seed)
    out = []
    for ts in session_minutes(n, start):
        o = price
        c = max(0.25, round((o + float(rng.normal(0.0, vol))) * 4) / 4)
        h = max(o, c) + 0.25 * int(rng.integers(0, 4))
        lo = max(0.25, min(o, c) - 0.25 * int(rng.integers(0, 4)))
        out.append(bar_at(ts, o, h, lo, c, float(rng.integers(1, 900))))
        price = c
    return out


def feed_items(bars: Iterable[Bar]) -> Iterator[FeedItem]:
    """:return: replay-style feed items (``source_id`` ``"ES:<ts_ns>"``, no ack)."""
    from executor.rows import ts_ns

    for b in bars:
        t = ts_ns(b)
        yield FeedItem(b, None, f"{b.symbol}:{t}", t)


# --- a bundle without the training stack ---------------------------------------------------------

def _agent_graph(n_obs: int, gain: float, col: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((n_obs, 1), dtype=np.float32)
    w[col, 0] = gain
    graph = helper.make_graph(
        nodes=[helper.make_node("MatMul", ["obs", "w"], ["z"]),
               helper.make_node("Tanh", ["z"], ["action"])],
        name="follow_the_last_bar",
        inputs=[helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_obs])],
        outputs=[helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="mia-chaos")
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def _fused(agent: bytes) -> bytes:
    # what mia.registry.onnx_export.fuse does for one agent, without importing torch
    import onnx
    from onnx import compose, helper

    m = compose.add_prefix(onnx.load_from_string(agent), "sac/", rename_inputs=False)
    g = m.graph
    fused = helper.make_model(
        helper.make_graph(list(g.node), "mia_policy", [g.input[0]], list(g.output),
                          list(g.initializer)),
        opset_imports=m.opset_import, ir_version=m.ir_version, producer_name="mia")
    helper.set_model_props(fused, {"mia.agents": "sac"})
    onnx.checker.check_model(fused, full_check=True)
    return bytes(fused.SerializeToString())


def tiny_bundle(path: Path, p: Any, *, seed: int = 0, gain: float = 3.0,
                label: str = "chaos") -> Path:
    """Write a verified one-agent bundle (module doc) and return its directory.

    :param path: the bundle directory to create. :param p: MIA parameters (risk, env).
    :param seed: seed of the bars the normaliser is fitted on. :param gain: the agent's gain on
        the normalised ``ret_1`` (negative: it fades the last move instead).
    :param label: its data hash (two bundles of one spec differ by it).
    """
    from executor.rows import input_row
    from mia.features.batch import run_program
    from mia.features.normalize import Normalizer
    from mia.features.spec import make_spec
    from mia.registry.bundle import AgentGraph
    from mia.registry.bundle_writer import write_bundle

    spec, risk_spec = make_spec(list(MODEL_FEATURES)), make_spec(list(RISK_FEATURES))
    bars = market(3000, seed)
    inputs = np.array([input_row(b, None) for b in bars])
    raw = run_program(spec, inputs)
    ready = max(spec.warmup, risk_spec.warmup) + 1
    norm = Normalizer.fit(raw, spec.names, slice(ready, len(raw)))
    n_obs = len(spec.names) + 1
    agent = _agent_graph(n_obs, gain, spec.names.index("ret_1"))
    graph = AgentGraph(name="sac", algorithm="SAC", kind="continuous", obs_size=n_obs,
                       n_quantiles=None, onnx=agent)
    ensemble = {"weights": {"sac": 1.0}, "threshold": 0.55, "lagrangian_scale": False,
                "quantile_confidence": False, "fit": {"how": "chaos suite: one agent"}}
    return write_bundle(path, symbol="ES", spec=spec, normalizer=norm, agents=[graph],
                        graph=_fused(agent), ensemble=ensemble, hmm=None, drift=None,
                        risk=p.risk, env=p.env, metrics={"wf/sharpe": 1.0}, data_hash=label,
                        git_sha="chaos", created_at=datetime(2024, 1, 1, tzinfo=UTC),
                        risk_spec=risk_spec).path


# --- the loop ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Rig:
    """One executor over one state directory (close it with :meth:`close`)."""

    executor: Any
    journal: Journal
    broker: Any
    snapshots: Any
    recovered: Any
    state_dir: Path

    def close(self) -> None:
        """Release the broker's and the journal's files (the journal's writer lock too)."""
        self.broker.close()
        self.journal.close()


def build_rig(state_dir: Path, p: Any, bundle: Path, bars: Sequence[Bar], *,
              max_bytes: int | None = None, metrics: Any = None, version: str = "1",
              snapshot_ns: int = 30 * 60_000_000_000, watcher: Any = None) -> Rig:
    """The loop on a real journal (``sync=normal``, as live), paper broker and snapshots,
    recovered (every start is a recovery), in replay mode, warmed.

    A fresh directory warms on the first :data:`WARM_BARS` of ``bars``; a restart warms on
    ``bars`` up to the newest journaled one, as ``executor.app.warm_live`` does from the store.

    :param bars: the session's bars, warm-up first. :param max_bytes: the journal's disk
        budget (a write beyond it fails as on a full disk). :param metrics: an
        ``ExecutorMetrics`` or None. :param version: the slot's version label.
    :param snapshot_ns: the loop's snapshot cadence on the bars' clock (default 30 bars).
    :param watcher: a ``ModelWatcher`` or None.
    """
    from executor.broker.paper import PaperBroker
    from executor.journal import private_dir
    from executor.loop import Executor, Services
    from executor.recovery import recover
    from executor.router import Routing
    from executor.settings import RollbackSettings
    from executor.slot import ModelSlot
    from executor.snapshots import SnapshotStore
    from mia.data.contracts import contract
    from mia.envs.costs import CostModel

    root = private_dir(state_dir)  # what executor.app.open_state does, plus a disk budget
    journal = Journal(root / "journal.sqlite", sync="normal", max_bytes=max_bytes)
    broker = PaperBroker(root / "paper_broker.sqlite",
                         {"ES": CostModel.from_config(contract("ES"), p.env)},
                         max_order_contracts=2 * p.risk.max_contracts, sync="normal")
    snapshots = SnapshotStore(root / "snapshots", keep=p.executor.snapshots_kept)
    rec = recover(journal, broker, snapshots, multipliers={"ES": ES_MULTIPLIER})
    ex = Executor(symbol="ES", cross_symbol=None, params=p, state=rec.state,
                  slots={"production": ModelSlot.load(bundle, version), "canary": None},
                  services=Services(journal=journal, broker=broker, snapshots=snapshots,
                                    metrics=metrics, watcher=watcher),
                  routing=Routing(share=0.0), rollback=RollbackSettings(),
                  capital=p.env.initial_equity, record=True, replay=True,
                  snapshot_ns=snapshot_ns)
    last = rec.state.last_bar_ns.get("ES")
    items = list(feed_items(bars))
    ex.warm(items[:WARM_BARS] if last is None else [i for i in items if i.ts_ns <= last])
    return Rig(ex, journal, broker, snapshots, rec, state_dir)


def rest(rig: Rig, bars: Sequence[Bar]) -> list[FeedItem]:
    """:return: the feed items of ``bars`` the rig has still to trade (after its warm-up, or
    after the newest journaled bar)."""
    last = rig.executor.state.last_bar_ns.get("ES")
    items = list(feed_items(bars))
    return items[WARM_BARS:] if last is None else [i for i in items if i.ts_ns > last]


# --- what a journal holds ------------------------------------------------------------------------

def audit(state_dir: Path) -> dict[str, Any]:
    """Read a state directory back the way recovery does and check it is consistent.

    :return: ``integrity`` (SQLite's integrity_check), bar keys, orders, fills, the books the
        journal replays to, the broker's positions and orders, fault and risk-event counts.
    """
    from executor.broker.paper import PaperBroker
    from executor.state import LiveState
    from mia.data.contracts import contract
    from mia.envs.costs import CostModel

    db = sqlite3.connect(f"{(state_dir / 'journal.sqlite').resolve().as_uri()}?mode=ro",
                         uri=True)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    j = Journal(state_dir / "journal.sqlite", readonly=True)
    p = params()
    broker = PaperBroker(state_dir / "paper_broker.sqlite",
                         {"ES": CostModel.from_config(contract("ES"), p.env)},
                         max_order_contracts=2 * p.risk.max_contracts)
    try:
        state = LiveState({"ES": ES_MULTIPLIER})
        for r in j.read():
            state.replay(r)
        orders = [r.payload for r in j.read("order") if r.payload["action"] == "submit"]
        fills = [r.payload for r in j.read("fill")]
        by_book: Counter[str] = Counter()
        for f in fills:
            by_book[f["book"]] += int(f["quantity"])
        return {
            "integrity": integrity,
            "bars": [str(r.key) for r in j.read("bar")],
            "bar_sources": [str(r.payload["source_id"]) for r in j.read("bar")],
            "orders": orders, "fills": fills,
            "fill_positions": {b: q for b, q in by_book.items() if q},
            "journal_positions": {b: p_.quantity for (b, _), p_ in state.books.items()
                                  if p_.quantity},
            "broker_positions": broker.positions(),
            "broker_orders": [o.client_id for o in broker.orders()],
            "broker_fills": [f[0] for f in broker.fills()],
            "faults": Counter(r.payload["code"] for r in j.read("alert")
                              if str(r.payload["code"]).startswith("data_")),
            "risk_events": [r.payload for r in j.read("risk_event")],
            "states": [r.payload["to"] for r in j.read("state")],
            "alerts": [r.payload for r in j.read("alert")],
        }
    finally:
        broker.close()
        j.close()


def inconsistencies(a: dict[str, Any]) -> list[str]:
    """What disagrees in an :func:`audit`: journal vs broker orders and fills, positions by
    the journal's replay vs the sum of its fills vs the broker's. :return: [] when none."""
    out = []
    if a["integrity"] != "ok":
        out.append(f"integrity_check: {a['integrity']}")
    if [o["client_id"] for o in a["orders"]] != a["broker_orders"]:
        out.append("the journal's orders are not the broker's")
    if [f["fill_id"] for f in a["fills"]] != a["broker_fills"]:
        out.append("the journal's fills are not the broker's")
    if a["journal_positions"] != a["fill_positions"]:
        out.append(f"positions {a['journal_positions']} are not the fills' "
                   f"{a['fill_positions']}")
    net = sum(a["fill_positions"].values())
    if a["broker_positions"].get("ES", 0) != net:
        out.append(f"the broker holds {a['broker_positions']}, the journal {net:+d}")
    if len(set(a["bars"])) != len(a["bars"]):
        out.append("a bar is journaled twice")
    return out


def quantiles_us(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """:return: p50, p99 and max of durations given in ns, in microseconds (rounded)."""
    a = np.asarray(ns, dtype=np.float64) / 1e3
    if not a.size:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan")}
    p50, p99 = np.percentile(a, [50, 99])
    return {"p50_us": round(float(p50), 1), "p99_us": round(float(p99), 1),
            "max_us": round(float(a.max()), 1)}


# --- a network path that can be cut --------------------------------------------------------------

class TcpProxy:
    """A TCP forwarder on 127.0.0.1 whose path can be cut (:meth:`down`) and restored (:meth:`up`).

    Down closes every forwarded connection (the client sees its socket reset mid-command) and
    the listening socket (new connections are refused), as a dead link or a stopped server
    looks from the client; up listens again on the same port.

    :param target: ``(host, port)`` to forward to.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._swallow = False
        self.cuts = 0
        self.accepted = 0  # connections forwarded
        self.up()

    @property
    def address(self) -> str:
        """:return: ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        """Accept and forward connections (again), replies included."""
        self._swallow = False
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(64)
            self._listener = s
        self._thread = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Cut the path: reset every forwarded connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                # close with RST, not FIN: the client sees a dead link, not a polite close
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
        self.cuts += 1
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop forwarding for good."""
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down(): the listener is closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def swallow(self, on: bool = True) -> None:
        """Keep the connections open but drop every byte the server sends back: requests
        arrive and act, their replies are lost (a half-dead link; the client waits for its
        socket timeout, or for :meth:`down`)."""
        self._swallow = on

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, (server, False))
        sel.register(server, selectors.EVENT_READ, (client, True))
        try:
            while True:
                for key, _ in sel.select(timeout=1.0):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    dst, reply = key.data
                    if reply and self._swallow:
                        continue
                    dst.sendall(data)
        except (OSError, ValueError):
            return  # a side closed (or down() reset it)
        finally:
            sel.close()
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.close()


# --- Redis ---------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("MIA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_or_skip() -> Any:
    """:return: a client of the test Redis (``MIA_TEST_REDIS_URL``, default 127.0.0.1:6379/0);
    the test is skipped, with the reason, when none answers."""
    import pytest

    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); start redis-server or set "
                    "MIA_TEST_REDIS_URL")
    return client


@contextlib.contextmanager
def private_prefix(client: Any, name: str) -> Iterator[str]:
    """A stream prefix of its own for one test; every key under it is deleted afterwards."""
    prefix = f"mia-chaos:{name}:{os.urandom(6).hex()}:bars"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


def publish(client: Any, key: str, bars: Iterable[Bar]) -> list[bytes]:
    """XADD each bar in the wire format (one pipeline). :return: the entry ids."""
    from executor.rows import ts_ns
    from mia.data.stream import encode_bar

    pipe = client.pipeline(transaction=False)
    for b in bars:
        pipe.xadd(key, encode_bar(ts_ns(b), b))
    return list(pipe.execute())


def kill_clients(client: Any, name: str) -> int:
    """CLIENT KILL every connection named ``name``. :return: how many."""
    killed = 0
    for c in client.client_list():
        if c["name"] == name:
            client.client_kill_filter(_id=c["id"])
            killed += 1
    return killed


def entry_ns(source_id: str) -> int:
    """:param source_id: a Redis feed item's id, ``ES/<ms>-<seq>``.
    :return: when Redis added the entry, ns since the epoch (its id's milliseconds)."""
    return int(source_id.split("/", 1)[1].split("-", 1)[0]) * 1_000_000


# --- MLflow --------------------------------------------------------------------------------------

# The tracking server's Flask app served by werkzeug: the REST API the executor's watcher talks
# to, without `mlflow server`'s uvicorn and job workers (tens of seconds to start on two cores).
_MLFLOW_SERVER = """
import os, sys
db, port = sys.argv[1], int(sys.argv[2])
os.environ["_MLFLOW_SERVER_FILE_STORE"] = db
os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = db
os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "false"
from mlflow.server import app
from werkzeug.serving import make_server
make_server("127.0.0.1", port, app, threaded=True).serve_forever()
"""


def start_mlflow(db_uri: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start a tracking server on ``db_uri`` (its artifacts stay where the runs put them).

    :return: the process (stop it with ``terminate``) and its port, once ``/health`` answers.
    :raises RuntimeError: it exited or did not answer within two minutes.
    """
    import sys
    import time
    import urllib.request

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _MLFLOW_SERVER, db_uri, str(port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MLflow server exited ({proc.returncode}): "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the MLflow server did not answer in 120 s: "
                       f"{log.read_text(errors='replace')[-2000:]}")


# --- figures -------------------------------------------------------------------------------------

def record_case(case: str, figures: dict[str, Any]) -> Path:
    """Merge one case's figures into ``tests/benchmarks/results/chaos.json``.

    The file has the results folder's layout (``tests.benchmarks.common.record``): benchmark,
    measured_at, git_sha, machine, results; ``results`` maps case -> figures, and each case
    carries its own ``measured_at`` and ``git_sha`` (cases run in separate tests).

    :param case: the case name. :param figures: JSON-able figures.
    :return: the file.
    """
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "chaos.json"
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False, cwd=REPO).stdout.strip()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        doc = json.loads(path.read_text())
        results = dict(doc["results"])
    except (OSError, ValueError, KeyError, TypeError):
        results = {}
    results[case] = {"measured_at": now, "git_sha": sha, **figures}
    doc = {"benchmark": "chaos", "measured_at": now, "git_sha": sha,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()},
           "results": dict(sorted(results.items()))}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
