"""The registry layer against a real MLflow (SQLite store and artifacts in a tmp dir)."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import warnings
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from mia.clock import TestClock
from mia.config import load_config
from mia.errors import OperationalError, TemporaryError
from mia.registry import aliases as moves
from mia.registry.gate import GateMetrics, GateVerdict, evaluate_gate
from mia.registry.models import alias_metrics, apply_gate, register, status
from mia.registry.tracking import configure

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAME = "mia-ES"
WRITES = frozenset({"set_registered_model_alias", "delete_registered_model_alias",
                    "set_model_version_tag", "delete_model_version_tag",
                    "set_registered_model_tag", "delete_registered_model_tag"})
GOOD = {"wf/sharpe": 1.3, "holdout/sharpe": 1.5, "holdout/deflated_sharpe": 0.97,
        "holdout/max_drawdown": 0.06, "holdout/cvar_95": 0.012}


@contextmanager
def mlflow_uri_restored():
    """mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI to os.environ (so subprocesses
    inherit it): put both the module global and the variable back for the tests that follow."""
    from mlflow.tracking._tracking_service import utils

    env, global_uri = os.environ.get("MLFLOW_TRACKING_URI"), utils._tracking_uri
    try:
        yield
    finally:
        mlflow.set_tracking_uri(global_uri)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


class Echo(mlflow.pyfunc.PythonModel):
    """A real pyfunc model that returns its input: enough to register and alias."""

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return model_input


class Writes:
    """The MLflow client, counting registry writes; raises instead of the ``fail_on``-th one."""

    def __init__(self, inner, fail_on: int | None = None) -> None:
        self.inner, self.fail_on, self.count = inner, fail_on, 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            self.count += 1
            if self.count == self.fail_on:
                raise MlflowException(f"injected failure on write {self.count} ({name})")
            return attr(*args, **kwargs)

        return write


@pytest.fixture(scope="module", autouse=True)
def _sqlite_without_fsync():
    """These tests check the moves' logic, not surviving a power cut: SQLite's fsync per commit
    dominates their hundreds of small transactions on a busy disk, so skip it (this module)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def no_sync(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    event.listen(Engine, "connect", no_sync)
    yield
    event.remove(Engine, "connect", no_sync)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("registry") / "home"
    cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)})
    with mlflow_uri_restored():
        t = configure(cfg, experiment="registry-test")
        runs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's advice on type hints and cloudpickle
            for i in range(4):
                with mlflow.start_run(experiment_id=t.experiment_id) as run:
                    mlflow.set_tags({"mia.data_hash": f"data{i}", "mia.git_sha": f"sha{i}"})
                    mlflow.pyfunc.log_model(name="bundle", python_model=Echo(),
                                            pip_requirements=[])
                runs.append(run.info.run_id)
        yield SimpleNamespace(cfg=cfg, client=t.client, runs=runs, home=home, tracking=t)


@pytest.fixture
def w(world):
    """A world whose mia-ES is deleted: each test registers the versions it needs."""
    try:
        world.client.delete_registered_model(NAME)
    except MlflowException:
        pass
    world.clock = TestClock(datetime(2025, 1, 6, 21, 0, tzinfo=UTC))
    world.kw = {"client": world.client, "clock": world.clock, "user": "alice"}
    return world


def versions(w, n: int) -> list[str]:
    return [register(w.cfg, run, "bundle", "ES", metrics=GOOD, client=w.client)
            for run in w.runs[:n]]


def aliases(w) -> dict[str, str]:
    return {a: str(v) for a, v in w.client.get_registered_model(NAME).aliases.items()}


def tags(w, version: str) -> dict[str, str]:
    return dict(w.client.get_model_version(NAME, version).tags)


def history(w, version: str) -> list[dict]:
    return json.loads(tags(w, version).get("audit/history", "[]"))


def test_register_tags_the_version_with_metrics_lineage_and_the_verdict(w):
    verdict = evaluate_gate(GateMetrics.from_metrics(GOOD), None,
                            {"buy_and_hold": GateMetrics.from_metrics({"holdout/sharpe": 0.4})},
                            w.cfg.params.gate, True)
    v = register(w.cfg, w.runs[0], "bundle", "ES", metrics={**GOOD, "wf/flat": math.nan},
                 gate_verdict=verdict, tags={"note": "first"}, client=w.client)
    assert v == "1"
    mv = w.client.get_model_version(NAME, v)
    assert mv.run_id == w.runs[0]
    assert mv.source == f"models:/{mlflow.get_run(w.runs[0]).outputs.model_outputs[0].model_id}"
    t = dict(mv.tags)
    assert (t["wf/sharpe"], t["holdout/deflated_sharpe"], t["wf/flat"]) == ("1.3", "0.97", "nan")
    assert (t["lineage/data_hash"], t["lineage/git_sha"]) == ("data0", "sha0")
    assert (t["lineage/run_id"], t["lineage/model"], t["note"]) == (w.runs[0], "bundle", "first")
    assert t["gate/passed"] == "true"
    assert t["gate/reference"] == "baseline buy_and_hold"
    assert json.loads(t["gate/reasons"]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{v}")
    assert model.predict([1.5, 2.5]) == [1.5, 2.5]


def test_registering_the_same_run_again_returns_its_version_and_finishes_its_tags(w):
    first = register(w.cfg, w.runs[0], "bundle", "ES", metrics=GOOD, client=w.client)
    w.client.delete_model_version_tag(NAME, first, "lineage/git_sha")  # an interrupted write
    assert register(w.cfg, w.runs[0], "bundle", "ES", metrics=GOOD, client=w.client) == first
    assert tags(w, first)["lineage/git_sha"] == "sha0"
    assert len(w.client.search_model_versions(f"name='{NAME}'")) == 1
    assert register(w.cfg, w.runs[1], "bundle", "ES", metrics=GOOD, client=w.client) == "2"
    with pytest.raises(OperationalError, match=r"wf/sharpe=1.3 \(now 9.0\); a new evaluation"):
        register(w.cfg, w.runs[0], "bundle", "ES", metrics={**GOOD, "wf/sharpe": 9.0},
                 client=w.client)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"metrics": {"sharpe": 1.0}}, "use a namespaced key like 'wf/sharpe'"),
    ({"metrics": {"audit/x": 1.0}}, "use a namespaced key"),
    ({"metrics": {"wf/sharpe": "high"}}, "is not a number"),
    ({"tags": {"canary_share": "1"}}, "written by mia itself"),
    ({"symbol": "SPX"}, "use one of ES, MNQ"),
    ({"artifact_path": "policy"}, r"logged no model named 'policy' \(its models: bundle\)"),
    ({"run_id": "0" * 32}, "no MLflow run 0000"),
])
def test_register_refuses_bad_inputs_with_what_to_fix(w, kwargs, message):
    args = {"run_id": w.runs[0], "artifact_path": "bundle", "symbol": "ES", "metrics": GOOD,
            **kwargs}
    with pytest.raises(OperationalError, match=message):
        register(w.cfg, args.pop("run_id"), args.pop("artifact_path"), args.pop("symbol"),
                 client=w.client, **args)


def test_a_canary_the_gate_rejected_is_a_persons_override_and_says_so(w):
    verdict = GateVerdict(passed=False, reasons=("too slow",), checks=(), reference="production")
    v = register(w.cfg, w.runs[0], "bundle", "ES", metrics=GOOD, gate_verdict=verdict,
                 client=w.client)
    out = moves.set_canary(w.cfg, "ES", v, reason="a person's call", **w.kw)
    assert out.message.startswith(f"mia-ES: canary -> v{v} at share 0.05")
    assert f"the promotion gate rejected v{v}; this canary is a person's override" in out.message


def test_canary_promote_and_rollback_move_the_aliases_and_audit_every_version(w):
    v1, v2, v3 = versions(w, 3)
    out = moves.set_canary(w.cfg, "ES", v1, reason="first bundle", **w.kw)
    assert out.message == "mia-ES: canary -> v1 at share 0.05"
    assert tags(w, v1)["canary_share"] == "0.05"  # executor.canary_share
    w.clock.advance(3600)
    assert moves.promote(w.cfg, "ES", reason="canary held", **w.kw).message == \
        "mia-ES: promoted v1 to production; canary cleared"
    moves.set_canary(w.cfg, "ES", v2, share=0.15, reason="retrain", **w.kw)
    w.clock.advance(3600)
    assert moves.set_share(w.cfg, "ES", 0.5, reason="step up", **w.kw).message == \
        "mia-ES: canary v2 share 0.15 -> 0.5"
    w.clock.advance(3600)
    assert moves.promote(w.cfg, "ES", reason="held two weeks", **w.kw).message == \
        "mia-ES: promoted v2 to production; v1 is previous-production; canary cleared"
    assert aliases(w) == {"production": v2, "previous-production": v1}
    assert "canary_share" not in tags(w, v2)
    moves.set_canary(w.cfg, "ES", v3, reason="next", **w.kw)
    w.clock.advance(60)
    out = moves.rollback(w.cfg, "ES", reason="drawdown breach", user="bob",
                         client=w.client, clock=w.clock)
    assert out.message == ("mia-ES: rolled back production to v1; v2 isolated for the "
                           "post-mortem; canary v3 kept")
    assert aliases(w) == {"production": v1, "canary": v3}
    assert (tags(w, v2)["isolated"], tags(w, v2)["isolated_reason"]) == ("true",
                                                                          "drawdown breach")
    assert [(e["action"], e["changes"], e["by"], e["at"], e["reason"]) for e in history(w, v2)] \
        == [("set_canary", ["+canary", "share 0.15"], "alice", "2025-01-06T22:00:00Z", "retrain"),
            ("set_share", ["share 0.15 -> 0.5"], "alice", "2025-01-06T23:00:00Z", "step up"),
            ("promote", ["-canary", "+production"], "alice", "2025-01-07T00:00:00Z",
             "held two weeks"),
            ("rollback", ["-production", "isolated"], "bob", "2025-01-07T00:01:00Z",
             "drawdown breach")]
    assert tags(w, v2)["audit/last"] == ("2025-01-07T00:01:00Z bob rollback -production "
                                         "isolated: drawdown breach")
    assert [e["changes"] for e in history(w, v1)] == [
        ["+canary", "share 0.05"], ["-canary", "+production"],
        ["-production", "+previous-production"], ["-previous-production", "+production"]]
    with pytest.raises(OperationalError, match="v2 was isolated by a rollback"):
        moves.set_canary(w.cfg, "ES", v2, reason="retry", **w.kw)
    assert w.client.get_model_version_by_alias(NAME, "production").version == int(v1)
    st = status(w.cfg, "ES", client=w.client)
    assert [(a.alias, a.version, a.share, a.note) for a in st.aliases] == [
        ("production", v1, 0.95, None), ("canary", v3, 0.05, None),
        ("previous-production", None, None, None)]
    assert st.pending is None
    text = "\n".join(st.lines())
    assert ("  production           v1 share 0.95\n"
            "                       holdout sharpe 1.5 dsr 0.97 mdd 0.06 cvar95 0.012 | "
            "wf sharpe 1.3\n") in text
    assert "last: 2025-01-07T00:01:00Z bob rollback -previous-production +production" in text
    w.client.set_registered_model_alias(NAME, "previous-production", v2)  # by hand, in the UI
    assert "  previous-production  v2 ISOLATED  [moved outside mia (mia left it unset)]" in \
        status(w.cfg, "ES", client=w.client).lines()
    with pytest.raises(OperationalError, match="v2 was isolated by a rollback"):
        moves.rollback(w.cfg, "ES", reason="back to v2?", **w.kw)


def test_repeating_a_finished_move_is_a_no_op_that_writes_nothing(w):
    v1, v2, _ = versions(w, 3)

    def twice(move, *args, **kwargs):
        first = move(w.cfg, "ES", *args, **{**w.kw, **kwargs})
        counting = Writes(w.client)
        again = move(w.cfg, "ES", *args, **{**w.kw, **kwargs, "client": counting})
        assert (first.changed, again.changed, counting.count) == (True, False, 0), again.message
        return again.message

    assert twice(moves.set_canary, v1, reason="a") == \
        "mia-ES: nothing to do: canary v1 already has share 0.05"
    assert twice(moves.promote, reason="b") == \
        "mia-ES: nothing to do: v1 is production since 2025-01-06T21:00:00Z (promoted by alice)"
    moves.set_canary(w.cfg, "ES", v2, reason="c", **w.kw)
    assert twice(moves.set_share, 0.15, reason="d") == \
        "mia-ES: nothing to do: canary v2 already has share 0.15"
    assert twice(moves.clear_canary, reason="e") == "mia-ES: nothing to do: no canary alias"
    moves.set_canary(w.cfg, "ES", v2, reason="f", **w.kw)
    moves.promote(w.cfg, "ES", reason="g", **w.kw)
    assert twice(moves.rollback, reason="h").startswith("mia-ES: nothing to do: rolled back to v1")


def test_missing_alias_unknown_version_and_missing_reason_are_refused(w):
    with pytest.raises(OperationalError, match="no registered model mia-ES in MLflow at sqlite"):
        status(w.cfg, "ES", client=w.client)
    v1, _ = versions(w, 2)
    cases = [
        (lambda: moves.promote(w.cfg, "ES", reason="x", **w.kw), "has no canary alias"),
        (lambda: moves.rollback(w.cfg, "ES", reason="x", **w.kw),
         "has no previous-production alias: nothing to roll back to"),
        (lambda: moves.set_share(w.cfg, "ES", 0.5, reason="x", **w.kw),
         "has no canary alias: no share to change"),
        (lambda: moves.set_canary(w.cfg, "ES", "9", reason="x", **w.kw),
         "mia-ES has no version 9"),
        (lambda: moves.set_canary(w.cfg, "ES", "v1", reason="x", **w.kw),
         "'v1' is not a version number like 3"),
        (lambda: moves.set_canary(w.cfg, "ES", v1, share=1.5, reason="x", **w.kw),
         r"must be in \(0, 1\]"),
        (lambda: moves.set_canary(w.cfg, "ES", v1, reason=" ", **w.kw), "a reason is required"),
    ]
    for call, message in cases:
        with pytest.raises(OperationalError, match=message):
            call()
    moves.set_canary(w.cfg, "ES", v1, reason="x", **w.kw)
    moves.promote(w.cfg, "ES", reason="x", **w.kw)
    with pytest.raises(OperationalError, match="v1 is production; a canary must be another"):
        moves.set_canary(w.cfg, "ES", v1, reason="x", **w.kw)
    assert aliases(w) == {"production": v1}


def test_status_reads_the_aliases_and_flags_moves_made_in_the_mlflow_ui(w):
    v1, v2, v3 = versions(w, 3)
    moves.set_canary(w.cfg, "ES", v1, reason="x", **w.kw)
    moves.promote(w.cfg, "ES", reason="x", **w.kw)
    w.client.set_registered_model_alias(NAME, "production", v3)  # by hand, no tags
    w.client.set_registered_model_alias(NAME, "canary", v2)
    st = {a.alias: a for a in status(w.cfg, "ES", client=w.client).aliases}
    assert st["production"].note == "moved outside mia (mia left it v1)"
    assert st["canary"].note == "moved outside mia (mia left it unset)"
    assert math.isnan(st["canary"].share)  # no canary_share tag: executors cannot size it
    assert st["production"].last is None
    # a mia move on top adopts the hand-set aliases, but their versions still lack the entry
    moves.set_share(w.cfg, "ES", 0.15, reason="size the hand-set canary", **w.kw)
    st = {a.alias: a for a in status(w.cfg, "ES", client=w.client).aliases}
    assert st["canary"].share == 0.15
    assert st["canary"].note == st["production"].note == \
        "moved outside mia (no audit entry gives this version the alias)"
    w.client.delete_registered_model_alias(NAME, "canary")
    st = {a.alias: a for a in status(w.cfg, "ES", client=w.client).aliases}
    assert (st["canary"].version, st["canary"].note) == (None, "moved outside mia (mia left it v2)")
    assert "  canary               unset  [moved outside mia (mia left it v2)]" in \
        status(w.cfg, "ES", client=w.client).lines()


def test_a_passing_candidate_gets_the_canary_and_a_rejected_one_leaves_production(w):
    v1, v2, v3 = versions(w, 3)
    moves.set_canary(w.cfg, "ES", v1, reason="x", **w.kw)
    moves.promote(w.cfg, "ES", reason="x", **w.kw)
    production = alias_metrics(w.cfg, "ES", client=w.client)
    assert production == GateMetrics.from_metrics(GOOD)
    better = GateMetrics.from_metrics({**GOOD, "holdout/sharpe": 1.8})
    passed = evaluate_gate(better, production, {}, w.cfg.params.gate, True)
    out = apply_gate(w.cfg, "ES", v2, passed, **w.kw)
    assert out.message == ("mia-ES v2 passed the gate against production\n"
                           "mia-ES: canary -> v2 at share 0.05")
    assert aliases(w) == {"production": v1, "canary": v2}
    assert history(w, v2)[-1]["reason"] == ("v2 passed the promotion gate against production "
                                            "(gate.auto_canary)")
    out = apply_gate(w.cfg, "ES", v3, passed, **w.kw)  # never cuts a running canary short
    assert out.message.endswith("canary v2 is still under observation; `mia registry "
                                "set-canary 3 --reason …` replaces it")
    assert aliases(w) == {"production": v1, "canary": v2}
    worse = GateMetrics.from_metrics({**GOOD, "holdout/max_drawdown": 0.3})
    rejected = evaluate_gate(worse, production, {}, w.cfg.params.gate, True)
    out = apply_gate(w.cfg, "ES", v3, rejected, **w.kw)
    assert out.message.endswith("\nproduction (v1) untouched")
    assert aliases(w) == {"production": v1, "canary": v2}
    t = tags(w, v3)
    assert t["gate/passed"] == "false"
    assert json.loads(t["gate/reasons"]) == [
        "out-of-sample Sharpe 1.500 does not beat production 1.500 + margin 0.1 = 1.600",
        "max drawdown 0.3000 > limit 0.2"]
    assert t["gate/at"] == "2025-01-06T21:00:00Z"
    manual = replace(w.cfg, params=replace(w.cfg.params,
                                           gate=replace(w.cfg.params.gate, auto_canary=False)))
    moves.clear_canary(w.cfg, "ES", reason="x", **w.kw)
    out = apply_gate(manual, "ES", v2, passed, **w.kw)
    assert "gate.auto_canary is off: `mia registry set-canary 2" in out.message
    assert aliases(w) == {"production": v1}


def snapshot(w) -> dict:
    """Aliases and tags, audit ids dropped (a rerun's move id differs from the reference's)."""
    def norm(key: str, value: str):
        if key == "audit/history":
            return [{k: v for k, v in e.items() if k != "id"} for e in json.loads(value)]
        if key == "mia/last_move":
            return {k: v for k, v in json.loads(value).items() if k != "id"}
        return value

    rm = w.client.get_registered_model(NAME)
    found = [str(mv.version) for mv in w.client.search_model_versions(f"name='{NAME}'")]
    return {"aliases": {a: str(v) for a, v in rm.aliases.items()},
            "model": {k: norm(k, v) for k, v in rm.tags.items()},
            "versions": {v: {k: norm(k, x) for k, x in tags(w, v).items()} for v in found}}


def raw_state(w) -> tuple[dict, dict, dict]:
    rm = w.client.get_registered_model(NAME)
    return ({a: str(v) for a, v in rm.aliases.items()}, dict(rm.tags),
            {str(v): tags(w, str(v)) for v in range(1, 5)})


def start_state(w) -> None:
    """production v2, canary v3 at 0.05, previous-production v1, spare v4; set without mia.

    Built once, then restored by undoing the differences (faster than registering again).
    """
    w.clock = TestClock(datetime(2025, 1, 6, 21, 0, tzinfo=UTC))
    c = w.client
    if w.start is None:  # the fixture `w` deleted mia-ES
        v1, v2, v3, _ = versions(w, 4)
        for alias, v in (("previous-production", v1), ("production", v2), ("canary", v3)):
            c.set_registered_model_alias(NAME, alias, v)
        c.set_model_version_tag(NAME, v3, "canary_share", "0.05")
        w.start = raw_state(w)
        return
    (want_aliases, want_model, want_versions), (now_aliases, now_model, now_versions) = \
        w.start, raw_state(w)
    for alias in ("production", "canary", "previous-production"):
        if alias not in want_aliases:
            c.delete_registered_model_alias(NAME, alias)
        elif now_aliases.get(alias) != want_aliases[alias]:
            c.set_registered_model_alias(NAME, alias, want_aliases[alias])
    for key in now_model.keys() - want_model.keys():
        c.delete_registered_model_tag(NAME, key)
    for v, want in want_versions.items():
        for key in now_versions[v].keys() - want.keys():
            c.delete_model_version_tag(NAME, v, key)
        for key, value in want.items():
            if now_versions[v].get(key) != value:
                c.set_model_version_tag(NAME, v, key, value)
    assert raw_state(w) == w.start


def assert_valid(w) -> None:
    al = aliases(w)
    assert "production" in al, "production was emptied"
    for v in al.values():
        assert w.client.get_model_version(NAME, v) is not None
    if "canary" in al:
        assert 0 < float(tags(w, al["canary"])["canary_share"]) <= 1


MOVES = {
    "promote": lambda w, **kw: moves.promote(w.cfg, "ES", reason="held", **kw),
    "rollback": lambda w, **kw: moves.rollback(w.cfg, "ES", reason="breach", **kw),
    "set_canary": lambda w, **kw: moves.set_canary(w.cfg, "ES", "4", share=0.15, reason="new",
                                                   **kw),
    "clear_canary": lambda w, **kw: moves.clear_canary(w.cfg, "ES", reason="stop", **kw),
    "set_share": lambda w, **kw: moves.set_share(w.cfg, "ES", 0.5, reason="step", **kw),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MOVES))
def test_a_move_interrupted_after_any_write_leaves_a_valid_state_and_a_rerun_finishes_it(
        w, name):
    move = MOVES[name]
    w.start = None
    start_state(w)
    reference = Writes(w.client)
    move(w, client=reference, clock=w.clock, user="alice")
    expected, total = snapshot(w), reference.count
    assert total >= 5  # plan, at least one alias or share write, audit, last move, plan cleared
    for k in range(1, total + 1):
        start_state(w)
        with pytest.raises(TemporaryError, match="injected failure") as err:
            move(w, client=Writes(w.client, fail_on=k), clock=w.clock, user="alice")
        assert "rerun" in str(err.value)
        assert_valid(w)
        pending = status(w.cfg, "ES", client=w.client).pending
        assert (pending is None) == (k == 1), (k, pending)  # the plan is the first write
        done = move(w, client=w.client, clock=w.clock, user="alice")
        assert done.changed
        assert snapshot(w) == expected, f"write {k} of {total}"


def test_an_interrupted_move_blocks_other_moves_until_its_rerun(w):
    w.start = None
    start_state(w)
    with pytest.raises(TemporaryError):
        moves.promote(w.cfg, "ES", reason="held", client=Writes(w.client, fail_on=3),
                      clock=w.clock, user="alice")
    st = status(w.cfg, "ES", client=w.client)
    assert st.pending is not None
    assert st.pending.startswith("promote started 2025-01-06T21:00:00Z by alice (held)")
    assert {a.alias: a.note for a in st.aliases}["production"].startswith("move in progress")
    with pytest.raises(OperationalError, match=r"an interrupted promote \(started 2025-01-06T"
                       r"21:00:00Z by alice: held\) must finish first; run `mia registry "
                       r"promote --symbol ES --reason …`"):
        moves.rollback(w.cfg, "ES", reason="x", **w.kw)
    out = moves.promote(w.cfg, "ES", reason="held again", **w.kw)
    assert out.message.startswith("mia-ES: finished the interrupted promote started "
                                  "2025-01-06T21:00:00Z by alice: promoted v3")
    assert aliases(w) == {"production": "3", "previous-production": "2"}
    assert [e["reason"] for e in history(w, "3")] == ["held"]  # the original why, recorded once


def test_configure_keeps_artifacts_under_the_artifact_root_never_in_the_cwd(world, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = configure(world.cfg, experiment="registry-test")
    assert t.experiment_id == world.tracking.experiment_id
    assert t.artifact_location == (world.home / "mlartifacts" / "registry-test").as_uri()
    other = configure(world.cfg, experiment="elsewhere")
    with mlflow.start_run(experiment_id=other.experiment_id) as run:
        mlflow.log_text("x", "note.txt")
    assert run.info.artifact_uri.startswith((world.home / "mlartifacts" / "elsewhere").as_uri())
    assert not (tmp_path / "mlruns").exists()
    configure(world.cfg, experiment="registry-test")


def test_an_unreachable_tracking_server_is_a_temporary_error_naming_the_uri(world, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{port}"
    cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(world.home),
                                                  "MLFLOW_TRACKING_URI": uri})
    before = mlflow.get_tracking_uri()
    with pytest.raises(TemporaryError, match=rf"MLflow at {uri} is unreachable \(Connection "
                                             r"refused\).*MLFLOW_TRACKING_URI"):
        configure(cfg, fail_fast=True)
    assert mlflow.get_tracking_uri() == before  # a failed check changes nothing
