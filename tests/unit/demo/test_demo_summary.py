"""What `mia demo` prints after the run (mia.commands.demo_summary)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from mia.commands.demo_replay import Books, Replay, Window
from mia.commands.demo_summary import (
    Registered,
    airflow_run_url,
    data_lines,
    gate_lines,
    holdout_lines,
    replay_lines,
    where_lines,
)
from mia.errors import OperationalError
from mia.registry.canary import BookStats


def _metrics(sharpe: float, ret: float, trades: int) -> dict[str, float]:
    return {"holdout/n_bars": 2760.0, "holdout/sharpe": sharpe, "holdout/total_return": ret,
            "holdout/max_drawdown": 0.0011, "holdout/n_trades": trades,
            "holdout/deflated_sharpe": math.nan if trades == 0 else 0.87}


REPORT = {
    "gate": {"passed": True, "reasons": [], "reference": "baseline flat",
             "checks": ["pass: out-of-sample Sharpe 12.991 beats best baseline (flat) 0.000 + "
                        "margin 0.1 = 0.100", "pass: max drawdown 0.0011 <= limit 0.2"]},
    "holdout": {"bundle": _metrics(12.99, 0.0016, 51), "solo sac": _metrics(17.25, 0.0023, 52)},
    "baselines": {"flat": _metrics(0.0, 0.0, 0), "buy_and_hold": _metrics(-28.99, -0.0197, 107)},
}


def _registered(tmp_path: Path, passed: bool = True) -> Registered:
    report = tmp_path / "reports" / "register" / "ES" / "report.json"
    return Registered.from_xcom({
        "symbol": "ES", "version": "3", "passed": passed,
        "reasons": [] if passed else ["out-of-sample Sharpe -1.2 does not beat flat"],
        "moved": "mia-ES v3 passed the gate against baseline flat\nmia-ES: canary -> v3 at "
                 "share 0.05", "report": report.as_uri(),
        "mlflow_run": {"experiment_id": "1", "run_id": "abc"},
        "model_version": {"name": "mia-ES", "version": "3"}})


def test_the_register_xcom_is_read_with_its_report_path(tmp_path):
    reg = _registered(tmp_path)
    assert reg.report == tmp_path / "reports" / "register" / "ES" / "report.json"
    with pytest.raises(OperationalError, match="lacks 'version'"):
        Registered.from_xcom({"symbol": "ES"})


def test_the_gate_shows_its_verdict_checks_and_alias_moves(tmp_path):
    lines = gate_lines(_registered(tmp_path), REPORT)
    assert lines[0] == "ES: mia-ES v3 PASSED the promotion gate (reference: baseline flat)"
    assert "    pass: max drawdown 0.0011 <= limit 0.2" in lines
    assert lines[-1] == "    mia-ES: canary -> v3 at share 0.05"


def test_a_rejection_lists_its_reasons(tmp_path):
    lines = gate_lines(_registered(tmp_path, passed=False), {"gate": {"checks": []}})
    assert "REJECTED" in lines[0]
    assert "    reason: out-of-sample Sharpe -1.2 does not beat flat" in lines


def test_the_holdout_table_puts_the_candidate_beside_agents_and_baselines():
    lines = holdout_lines(REPORT, "3")
    assert "2,760 bars" in lines[0]
    assert lines[1].split() == ["Sharpe", "return", "max", "DD", "trades", "DSR"]
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:]}
    assert rows["candidate v3"] == ["12.99", "+0.16%", "0.11%", "51", "0.87"]
    assert rows["solo sac"][0] == "17.25"
    assert rows["baseline flat"][-1] == "-"  # a NaN is shown as a dash
    assert list(rows) == ["candidate v3", "solo sac", "baseline flat", "baseline buy_and_hold"]


def test_the_replay_shows_each_books_pnl_trades_and_holds():
    books = Books(production="1", canary="3", share=0.05, why="production v1 with canary v3")
    window = Window(start=date(2024, 1, 25), end=date(2024, 1, 26), first_ts=None,  # type: ignore[arg-type]
                    last_ts=None, whole=True)  # type: ignore[arg-type]
    replay = Replay(command=[], summary=["replay ES 2024-01-25..2024-01-26: 2760 bars",
                                         "decisions x"],
                    books={"production": BookStats(capital=237500.0, pnl=250.5, max_drawdown=0.001,
                                                   trades=60, position=0),
                           "canary": BookStats(capital=12500.0, pnl=-12.25, max_drawdown=0.002,
                                               trades=55, position=2)},
                    holds={"production": 6}, decisions=Path("d.csv"), journal=Path("j"),
                    log=Path("l"))
    lines = replay_lines(books, window, replay)
    assert lines[0] == ("  production v1 with canary v3; trade dates 2024-01-25..2024-01-26 "
                        "(held out)")
    assert lines[1] == "  executor: replay ES 2024-01-25..2024-01-26: 2760 bars"
    assert lines[2].startswith("  book production  95% of capital: PnL +250.50 USD (+0.11%), "
                               "60 round trips")
    assert lines[2].endswith("flat at the end; 6 risk hold(s)")
    assert "PnL -12.25 USD" in lines[3]
    assert "+2 contracts at the end; 0 risk hold(s)" in lines[3]


def test_data_lines_read_the_stage_reports(tmp_path):
    reports = tmp_path / "reports"
    (reports / "drift" / "ES").mkdir(parents=True)
    (reports / "ingest.json").write_text(json.dumps({
        "start": "2024-01-02", "end": "2024-01-26", "rows": {"ES": 24840},
        "sha256": {"ES": "79b88836a9272a45"}, "planted": "orderflow imbalance"}))
    (reports / "validation_raw.json").write_text(json.dumps({"ES": {"passed": True}}))
    (reports / "validation_features.json").write_text(json.dumps(
        {"ES": {"passed": False, "detail": "2 checks"}}))
    (reports / "features.json").write_text(json.dumps({"built": {"ES": 354}}))
    (reports / "drift" / "ES" / "drift.json").write_text(json.dumps(
        {"n_drifted": 3, "n_columns": 20, "dataset_drifted": False}))
    lines = data_lines(tmp_path, ["ES", "MNQ"])
    assert lines[0] == ("ES: 24,840 bars 2024-01-02..2024-01-26 (sha256 79b88836a927); raw bars "
                        "GX passed; 354 features built; features GX FAILED 2 checks")
    assert "3/20 features drifted, dataset drift no" in lines[1]
    assert lines[2].startswith("MNQ: no ingest report")
    assert lines[3] == "planted signal: orderflow imbalance"


def test_where_to_look_links_the_run_the_version_and_the_reports(tmp_path):
    run_id = "manual__2026-12-02T07:30:09.108740+00:00"
    assert airflow_run_url("http://127.0.0.1:8080/", "mia_retrain", run_id) == (
        "http://127.0.0.1:8080/dags/mia_retrain/runs/"
        "manual__2026-12-02T07%3A30%3A09.108740%2B00%3A00")
    text = "\n".join(where_lines(airflow="http://127.0.0.1:8080", mlflow="http://127.0.0.1:5000",
                                 dag_id="mia_retrain", run_id=run_id,
                                 registered=[_registered(tmp_path)], home=tmp_path,
                                 logs=tmp_path / "demo" / "logs",
                                 replays={"ES": tmp_path / "demo" / "replay" / "ES"}))
    assert "make ui" in text
    assert "http://127.0.0.1:5000/#/models/mia-ES/versions/3" in text
    assert "http://127.0.0.1:5000/#/experiments/1/runs/abc" in text
    assert str(tmp_path / "reports" / "register" / "ES" / "holdout.png") in text
    assert str(tmp_path / "demo" / "replay" / "ES" / "decisions.csv") in text
