"""What ``mia demo`` prints after the DAG: the data stages, the gate, the holdout, the replay.

Everything is read back from what the run left behind — the stages' reports under
``MIA_HOME``, the ``package_register`` task's XCom, the register report
(``reports/register/<SYMBOL>/report.json``: the gate's checks and the holdout table of the
candidate, each agent alone, production and the baselines) and the replay's journal — so the
summary shows what the Airflow and MLflow UIs show. Pure formatting apart from reading files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from mia.errors import OperationalError


@dataclass(frozen=True, kw_only=True, slots=True)
class Registered:
    """``package_register``'s XCom for one symbol (mia.pipelines.retrain.Registered.to_xcom)."""

    symbol: str
    version: str
    passed: bool
    reasons: tuple[str, ...]
    moved: str
    report: Path
    run: Mapping[str, str]

    @classmethod
    def from_xcom(cls, value: Any) -> Registered:
        """:raises OperationalError: the value is not package_register's."""
        try:
            return cls(symbol=str(value["symbol"]), version=str(value["version"]),
                       passed=bool(value["passed"]), reasons=tuple(value["reasons"]),
                       moved=str(value["moved"]), report=file_path(str(value["report"])),
                       run=dict(value["mlflow_run"]))
        except (KeyError, TypeError) as exc:
            raise OperationalError(f"package_register returned {value!r}, which lacks {exc}; "
                                   "the DAG and this mia disagree: update both") from None


def file_path(uri: str) -> Path:
    """:return: the local path of a ``file://`` URI (XCom carries URIs)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise OperationalError(f"{uri} is not a local file; the demo reads local reports")
    return Path(unquote(parsed.path))


def read_json(path: Path) -> dict[str, Any] | None:
    """:return: the JSON object in ``path``, or None when the file is missing."""
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def data_lines(home: Path, symbols: Sequence[str]) -> list[str]:
    """The data stages of the run, one block per symbol, from their reports under ``home``."""
    reports = home / "reports"
    ingest = read_json(reports / "ingest.json") or {}
    raw = read_json(reports / "validation_raw.json") or {}
    feats = read_json(reports / "validation_features.json") or {}
    built = (read_json(reports / "features.json") or {}).get("built", {})
    out = []
    for sym in symbols:
        rows = ingest.get("rows", {}).get(sym)
        sha = str(ingest.get("sha256", {}).get(sym, ""))[:12]
        out.append(f"{sym}: {rows:,} bars {ingest.get('start')}..{ingest.get('end')} "
                   f"(sha256 {sha}); raw bars GX {_gx(raw.get(sym))}; {built.get(sym, '?')} "
                   f"features built; features GX {_gx(feats.get(sym))}" if rows is not None
                   else f"{sym}: no ingest report in {reports}")
        sel = read_json(home / "models" / "selection" / sym / "selection.json")
        if sel is not None:
            top = ", ".join(sel["selected"][:8])
            out.append(f"    selected {sel['n_selected']} of {sel['n_features']} by SHAP "
                       f"(stability {sel['stability']:.2f}, chance {sel['chance_stability']:.2f})"
                       f": {top}, …")
        drift = read_json(reports / "drift" / sym / "drift.json")
        if drift is not None:
            out.append(f"    drift (Evidently, recent vs reference window): {drift['n_drifted']}/"
                       f"{drift['n_columns']} features drifted, dataset drift "
                       f"{'YES' if drift['dataset_drifted'] else 'no'}")
    if ingest.get("planted"):
        out.append(f"planted signal: {ingest['planted']}")
    return out


def _gx(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return "not run"
    return "passed" if entry.get("passed") else f"FAILED {entry.get('detail', '')}".strip()


def gate_lines(reg: Registered, report: Mapping[str, Any]) -> list[str]:
    """The gate's verdict, its checks and what moved in the registry."""
    word = "PASSED" if reg.passed else "REJECTED"
    gate = report.get("gate", {})
    out = [f"{reg.symbol}: mia-{reg.symbol} v{reg.version} {word} the promotion gate "
           f"(reference: {gate.get('reference', '?')})"]
    out += [f"    {c}" for c in gate.get("checks", [])]
    checks = " ".join(gate.get("checks", []))
    out += [f"    reason: {r}" for r in reg.reasons if r not in checks]
    out += [f"    {m}" for m in reg.moved.splitlines()]
    return out


_COLUMNS = (("sharpe", "Sharpe", "{:>7.2f}"), ("total_return", "return", "{:>+8.2%}"),
            ("max_drawdown", "max DD", "{:>7.2%}"), ("n_trades", "trades", "{:>6.0f}"),
            ("deflated_sharpe", "DSR", "{:>5.2f}"))


def holdout_lines(report: Mapping[str, Any], version: str) -> list[str]:
    """The holdout table: the candidate, production (if any), each agent alone, the baselines."""
    holdout: Mapping[str, Mapping[str, float]] = report.get("holdout", {})
    baselines: Mapping[str, Mapping[str, float]] = report.get("baselines", {})
    rows: list[tuple[str, Mapping[str, float]]] = []
    if "bundle" in holdout:
        rows.append((f"candidate v{version}", holdout["bundle"]))
    if "production" in holdout:
        rows.append(("production", holdout["production"]))
    rows += [(n, m) for n, m in holdout.items() if n.startswith("solo ")]
    rows += [(f"baseline {n}", m) for n, m in baselines.items()]
    bars = next((m.get("holdout/n_bars") for _, m in rows), None)
    head = f"    {'':<30}" + "".join(f" {title:>{len(fmt.format(0.0))}}"
                                    for _, title, fmt in _COLUMNS)
    out = [f"  out of sample: the holdout ({bars:,.0f} bars no stage trained on), risk-gated, "
           "after costs" if bars else "  out of sample: no holdout metrics in the report", head]
    for name, m in rows:
        out.append(f"    {name:<30}" + "".join(" " + _cell(m.get(f"holdout/{k}"), fmt)
                                              for k, _, fmt in _COLUMNS))
    return out


def _cell(value: float | None, fmt: str) -> str:
    width = len(fmt.format(0.0))
    if value is None or not math.isfinite(value):
        return f"{'-':>{width}}"
    return fmt.format(value)


def replay_lines(books: Any, window: Any, replay: Any) -> list[str]:
    """The replay: what traded, the executor's own summary, PnL and trades per book.

    :param books: mia.commands.demo_replay.Books. :param window: its Window.
    :param replay: its Replay.
    """
    share = books.share
    span = f"{window.start}..{window.end}" if window.start != window.end else f"{window.start}"
    where = "held out" if window.whole else "the last session (the holdout is shorter than one)"
    out = [f"  {books.why}; trade dates {span} ({where})"]
    out += [f"  executor: {line}" for line in replay.summary if not line.startswith("decisions ")]
    for book, stats in replay.books.items():
        part = share if book == "canary" else 1.0 - share
        pnl = stats.pnl
        ret = pnl / stats.capital if stats.capital else math.nan
        holds = replay.holds.get(book, 0)
        out.append(f"  book {book:<10} {part:>4.0%} of capital: PnL {pnl:+,.2f} USD ({ret:+.2%}), "
                   f"{stats.trades} round trips, max drawdown {stats.max_drawdown:.2%}, "
                   f"{'flat' if stats.position == 0 else f'{stats.position:+d} contracts'} at the "
                   f"end; {holds} risk hold(s)")
    return out


def airflow_run_url(base: str, dag_id: str, run_id: str) -> str:
    """:return: the Airflow 3 UI page of one DAG run."""
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def where_lines(*, airflow: str, mlflow: str, dag_id: str, run_id: str | None,
                registered: Sequence[Registered], home: Path, logs: Path,
                replays: Mapping[str, Path]) -> list[str]:
    """Where to look: the two UIs (``make ui`` serves them), the reports, the logs."""
    from mia.orchestration import model_version_url, run_url

    out = ["  'make ui' starts both UIs on localhost (no login: Airflow's simple auth manager",
           "  makes every local request an admin); Ctrl-C there stops them",
           f"  Airflow UI   {airflow}"
           + (f"\n    this run   {airflow_run_url(airflow, dag_id, run_id)}" if run_id else ""),
           f"  MLflow UI    {mlflow}"]
    for r in registered:
        page = model_version_url(mlflow, f"mia-{r.symbol}", r.version)
        out.append(f"    mia-{r.symbol} v{r.version}  {page}")
        out.append(f"    register run {run_url(mlflow, r.run['experiment_id'], r.run['run_id'])}")
    for r in registered:
        folder = r.report.parent
        out.append(f"  {r.symbol} reports   {r.report} and {folder / 'holdout.png'}")
        out.append(f"               drift {home / 'reports' / 'drift' / r.symbol / 'drift.html'};"
                   f" selection {home / 'models' / 'selection' / r.symbol}")
    for sym, folder in replays.items():
        out.append(f"  {sym} replay    {folder / 'decisions.csv'}; journal {folder / 'state'}; "
                   f"log {folder / 'executor.log'}")
    out.append(f"  DAG logs     {logs / 'dags_test.log'}; one per task in {logs / 'tasks'}")
    out.append("  data docs    great_expectations/uncommitted/data_docs/local_site/index.html")
    return out
