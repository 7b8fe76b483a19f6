"""Security of the live process (issue 8, item 5): no unpickling, private state files, local
binds, the admin token.

One live executor runs in a subprocess exactly as systemd starts it (``python -m executor
--config executor.yaml``: a local one-agent bundle, a replay feed of one stored trade day, the
metrics server, the admin endpoint with its token, the live feature log) under a permissive
umask (0000) and three watchers installed before anything is imported: ``pickle`` / ``_pickle``
``load``, ``loads`` and ``Unpickler`` replaced by guards that record and refuse, an audit hook on
``pickle.find_class`` (fired by any unpickler resolving a global, C or Python), and
``socket.bind`` recording every address bound. Then:

- nothing unpickled at all, numba's JIT cache included (the live start sets
  ``MIA_JIT_CACHE=off``: mia._jit), no pickle-based
  stack (torch, joblib, dill, SB3, scikit-learn) imported, and it traded (the path ran);
- every file under ``state_dir`` (journal and its -wal/-shm, the writer lock, the paper broker,
  snapshots) is 0600 and every folder 0700, whatever the umask;
- the feature log under ``$MIA_HOME/live`` likewise;
- every TCP bind is 127.0.0.1: the metrics and the admin endpoints' defaults.

Already covered elsewhere, not repeated: the bundle reader and ONNX acting never unpickle
(tests/unit/registry/test_bundle.py), each state file's mode with the default umask
(test_journal.py, test_state.py, test_paper_broker.py, test_admin.py, test_release.py), the
admin endpoint refusing a missing or wrong token with 401 and killing nothing, and binding
127.0.0.1 (test_admin.py), the metrics server's default host (test_metrics.py).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.e2e import chaos_support as cs

REPO = Path(__file__).resolve().parents[3]
TOKEN = "chaos-security-token-0123456789abcdef"  # noqa: S105 - a test's own admin token

GUARDED = r"""
import json, os, socket, sys
out_path, argv = sys.argv[1], sys.argv[2:]
os.umask(0)  # the most permissive: every mode the process gets is the one it asks for
calls, numba_cache, binds = [], [], []

def _from_numba_cache(frame):
    # numba's on-disk JIT cache (numba.core.caching) loads its index and code with pickle
    while frame is not None:
        if frame.f_globals.get("__name__", "") == "numba.core.caching":
            return True
        frame = frame.f_back
    return False

def audit(event, args):
    if event == "pickle.find_class":
        where = numba_cache if _from_numba_cache(sys._getframe(1)) else calls
        where.append(f"pickle.find_class {args[0]}.{args[1]}")

sys.addaudithook(audit)
import pickle, _pickle

def refuse(name, real):
    def guard(*a, **k):
        if _from_numba_cache(sys._getframe(1)):
            numba_cache.append(name)
            return real(*a, **k)
        calls.append(name)
        raise RuntimeError(f"{name} called on the live path")
    return guard

for mod in (pickle, _pickle):
    for fn in ("load", "loads"):
        setattr(mod, fn, refuse(f"{mod.__name__}.{fn}", getattr(mod, fn)))

    class Guarded(mod.Unpickler):  # a class still: a library may subclass it at import
        def __init__(self, *a, _name=f"{mod.__name__}.Unpickler", **k):
            if not _from_numba_cache(sys._getframe(1)):
                calls.append(_name)
                raise RuntimeError(f"{_name} used on the live path")
            numba_cache.append(_name)
            super().__init__(*a, **k)

    mod.Unpickler = Guarded
real_bind = socket.socket.bind

def bind(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        binds.append(list(address)[:2])
    return real_bind(self, address)

socket.socket.bind = bind

def report():
    # not cloudpickle: pyarrow imports it if installed, and its loads is pickle's (guarded)
    heavy = sorted(m for m in ("torch", "joblib", "dill", "stable_baselines3", "sklearn")
                   if m in sys.modules)
    jit = sys.modules.get("mia._jit")
    with open(out_path, "w") as fh:
        json.dump({"calls": calls, "numba_cache": numba_cache, "binds": binds, "heavy": heavy,
                   "numba_cache_dir": str(jit.CACHE_DIR) if jit else None}, fh)

import atexit
atexit.register(report)
import runpy
sys.argv = ["python -m executor", *argv]
runpy.run_module("executor", run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The guarded live process over one stored trade day (module doc)."""
    from mia.data.store import BarStore

    root = tmp_path_factory.mktemp("security")
    home = root / "home"
    bars = cs.market(2 * 1380, seed=71)  # 2024-01-02 warms the features, 01-03 is traded
    BarStore(home / "data" / "raw").write(pd.DataFrame(
        {"ts": [b.ts for b in bars], "symbol": "ES", "open": [b.open for b in bars],
         "high": [b.high for b in bars], "low": [b.low for b in bars],
         "close": [b.close for b in bars], "volume": [b.volume for b in bars]}))
    bundle = cs.tiny_bundle(root / "bundle", cs.params())
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["executor"]["metrics_port"] = _free_port()
    doc.setdefault("env", {})["initial_equity"] = 1_000_000.0
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(doc))
    state = root / "state"
    config = root / "executor.yaml"
    config.write_text(yaml.safe_dump({
        "symbol": "ES", "state_dir": str(state),
        "feed": {"kind": "replay", "start": "2024-01-03", "end": "2024-01-03"},
        "models": {"source": "local", "production": str(bundle)},
        "warmup_days": 1, "kill_file": str(state / "KILL"), "admin_port": _free_port()}))
    out = root / "guards.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIA_ADMIN_TOKEN": TOKEN,
           "MIA_HOME": str(home)}
    env.pop("MIA_ALERT_WEBHOOK", None)
    env.pop("MIA_JIT_CACHE", None)  # the live start's own default (off) is what is tested
    done = subprocess.run([sys.executable, "-c", GUARDED, str(out), "--config", str(config),
                           "--params", str(params), "--home", str(home)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    from executor.journal import Journal

    with Journal(state / "journal.sqlite", readonly=True) as j:
        journaled = {"bars": j.count("bar"), "orders": j.count("order"), "fills": j.count("fill")}
    return SimpleNamespace(guards=json.loads(out.read_text()), state=state, home=home,
                           journaled=journaled, stderr=done.stderr)


@pytest.mark.slow  # the live process in a subprocess: ~10 s (module fixture)
def test_the_live_process_unpickles_nothing_but_numbas_cache_and_loads_no_pickle_stack(
        live_run):
    assert live_run.journaled["bars"] >= 1000
    assert live_run.journaled["orders"] > 0
    assert live_run.guards["calls"] == []  # bundle, journal, snapshots, config, feed: no pickle
    assert live_run.guards["heavy"] == []
    assert TOKEN not in live_run.stderr  # the admin token is never logged


@pytest.mark.slow  # the live process in a subprocess: ~10 s (module fixture)
def test_the_live_process_never_unpickles_at_all(live_run):
    assert live_run.guards["numba_cache"] == []


def _modes(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)) or ".": ("dir" if p.is_dir() else "file", _mode(p))
            for p in [root, *root.rglob("*")]}


@pytest.mark.slow  # the live process in a subprocess: ~10 s (module fixture)
def test_state_files_are_private_under_a_permissive_umask(live_run):
    modes = _modes(live_run.state)
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite.lock",
                 "paper_broker.sqlite"):
        assert name in modes, sorted(modes)
    assert any(n.startswith("snapshots/snapshot-") for n in modes), sorted(modes)
    loose = {n: oct(m) for n, (kind, m) in modes.items()
             if m != (0o700 if kind == "dir" else 0o600)}
    assert loose == {}


@pytest.mark.slow  # the live process in a subprocess: ~10 s (module fixture)
def test_the_feature_log_is_private_under_a_permissive_umask(live_run):
    root = live_run.home / "live"
    modes = _modes(root)
    assert any(kind == "file" for kind, _ in modes.values()), sorted(modes)
    loose = {n: oct(m) for n, (kind, m) in modes.items()
             if m != (0o700 if kind == "dir" else 0o600)}
    assert loose == {}


@pytest.mark.slow  # the live process in a subprocess: ~10 s (module fixture)
def test_the_live_process_binds_metrics_and_admin_to_localhost_only(live_run):
    binds: list[list[Any]] = live_run.guards["binds"]
    assert len(binds) >= 2  # the metrics server and the admin endpoint
    assert {host for host, _ in binds} == {"127.0.0.1"}


def test_the_default_bind_addresses_are_localhost(tmp_path):
    import inspect

    from executor.metrics import MetricsServer
    from executor.settings import load_settings
    from mia.config import load_config

    cfg = load_config(REPO / "params.yaml", env={})
    assert cfg.params.executor.metrics_host == "127.0.0.1"
    assert inspect.signature(MetricsServer).parameters["host"].default == "127.0.0.1"
    # the admin endpoint has no host setting at all: an executor.yaml cannot expose it
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump({
        "symbol": "ES", "state_dir": str(tmp_path / "s"), "feed": {"kind": "replay"},
        "models": {"source": "local", "production": str(tmp_path / "b")},
        "admin_host": "0.0.0.0"}))  # noqa: S104 - the setting that must not exist
    with pytest.raises(Exception, match="admin_host"):
        load_settings(path)
