"""Releasing a latch: `python -m executor release` writes a request, the loop applies it between
bars (a running executor) or at its start (a stopped one); a bad request releases nothing."""

from __future__ import annotations

from itertools import islice
from typing import Any

import pytest
import yaml

from executor import release
from executor.__main__ import main
from mia.errors import ConfigError
from mia.risk import Mode
from tests.unit.executor.test_loop import es_bars, kill_when_holding, submits


def _config(tmp_path: Any, state_dir: Any, kill: Any) -> Any:
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump({
        "symbol": "ES", "state_dir": str(state_dir), "kill_file": str(kill),
        "feed": {"kind": "replay"}, "models": {"source": "local", "production": "/nowhere"}}))
    return path


def _risk_events(journal: Any, cause: str) -> list[dict[str, Any]]:
    return [r.payload["event"] for r in journal.read("risk_event")
            if r.payload["event"]["cause"] == cause]


def _alerts(journal: Any, code: str) -> list[str]:
    return [r.payload["message"] for r in journal.read("alert") if r.payload["code"] == code]


def _killed(world: Any, make_executor: Any, tmp_path: Any) -> tuple[Any, Any, Any, Any]:
    kill, state_dir = tmp_path / "KILL", tmp_path / "state"
    ex, st = make_executor(kill_file=kill, state_dir=state_dir)
    feed = world.replay()
    ex.run(kill_when_holding(es_bars(600, feed), ex, kill))
    assert ex.engines["production/ES"].mode is Mode.HALTED
    return ex, st, kill, state_dir


def test_a_release_from_the_cli_resumes_a_running_executor_between_bars(world, make_executor,
                                                                       tmp_path, capsys):
    ex, st, kill, state_dir = _killed(world, make_executor, tmp_path)
    kill.unlink()
    assert main(["release", "--config", str(_config(tmp_path, state_dir, kill)),
                 "--cause", "kill_switch", "--by", "alice", "--why", "feed checked"]) == 0
    assert "release of kill_switch requested by alice" in capsys.readouterr().out
    assert (state_dir / release.FILE).stat().st_mode & 0o777 == 0o600
    seq = max(r.seq for r in st.journal.read("order"))
    ex.run(islice(world.replay(), 1200, 2400))  # later bars of the same replay
    released = [e for e in _risk_events(st.journal, "kill_switch") if e["action"] == "release"]
    assert len(released) == 1
    assert released[0]["by"] == "alice"
    assert released[0]["why"] == "feed checked"
    assert released[0]["to"] == "RUNNING"
    assert not (state_dir / release.FILE).exists()  # applied once
    assert ex.engines["production/ES"].mode is Mode.RUNNING
    assert "kill_switch released by alice" in " ".join(_alerts(st.journal, "hold_released"))
    assert any(o["reason"] not in ("flatten",) for o in submits(st.journal, since_seq=seq))


def test_the_cli_refuses_while_the_kill_file_exists_and_for_a_bad_request(tmp_path, capsys):
    state_dir, kill = tmp_path / "state", tmp_path / "KILL"
    state_dir.mkdir()
    kill.write_text("x")
    cfg = str(_config(tmp_path, state_dir, kill))
    base = ["release", "--config", cfg]
    assert main([*base, "--cause", "kill_switch", "--by", "bob", "--why", "w"]) == 2
    assert "kill file" in capsys.readouterr().err
    assert main([*base, "--cause", "everything", "--by", "bob", "--why", "w"]) == 2
    assert "is not a hold" in capsys.readouterr().err
    assert main([*base, "--cause", "breaker.data_quality", "--by", "risk", "--why", "w"]) == 2
    assert "reserved" in capsys.readouterr().err
    assert main([*base, "--cause", "breaker.data_quality", "--by", " ", "--why", "w"]) == 2
    assert "by is empty" in capsys.readouterr().err
    assert not (state_dir / release.FILE).exists()
    with pytest.raises(ConfigError, match="does not exist"):
        release.write(tmp_path / "missing", release.ReleaseRequest("kill_switch", "bob", "w"))


def test_a_request_is_refused_while_the_kill_file_exists_and_nothing_is_released(
        world, make_executor, tmp_path):
    ex, st, kill, state_dir = _killed(world, make_executor, tmp_path)
    release.write(state_dir, release.ReleaseRequest("kill_switch", "alice", "too early"))
    ex.run(islice(world.replay(), 1200, 1300))
    assert [e for e in _risk_events(st.journal, "kill_switch") if e["action"] == "release"] == []
    assert ex.engines["production/ES"].mode is Mode.HALTED
    assert any("still exists" in m for m in _alerts(st.journal, "release_refused"))
    assert not (state_dir / release.FILE).exists()


def test_a_request_for_a_hold_nobody_has_or_a_garbled_file_releases_nothing(
        world, make_executor, tmp_path):
    ex, st, kill, state_dir = _killed(world, make_executor, tmp_path)
    kill.unlink()
    release.write(state_dir, release.ReleaseRequest("limit.max_drawdown", "alice", "wrong one"))
    ex.run(islice(world.replay(), 1200, 1210))
    (state_dir / release.FILE).write_text('{"cause": "kill_switch"}')
    ex.run(islice(world.replay(), 1210, 1220))
    refused = _alerts(st.journal, "release_refused")
    assert any("no book holds 'limit.max_drawdown'" in m and "kill_switch" in m for m in refused)
    assert any("not a valid release request" in m for m in refused)
    assert ex.engines["production/ES"].mode is Mode.HALTED


def test_a_request_written_while_stopped_is_applied_at_the_next_start(world, make_executor,
                                                                     tmp_path):
    ex, st, kill, state_dir = _killed(world, make_executor, tmp_path)
    kill.unlink()
    st.journal.close()
    st.broker.close()
    release.write(state_dir, release.ReleaseRequest("kill_switch", "carol", "restarted clean"))
    again, st2 = make_executor(state_dir=state_dir, kill_file=kill, warm=False)
    assert again.engines["production/ES"].mode is Mode.HALTED  # latched across the restart
    again.run(islice(world.replay(), 1200, 1202))
    assert again.engines["production/ES"].mode is Mode.RUNNING
    assert [e["by"] for e in _risk_events(st2.journal, "kill_switch")
            if e["action"] == "release"] == ["carol"]
