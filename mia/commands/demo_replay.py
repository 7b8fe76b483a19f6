"""The demo's acceptance replay: the held-out sessions through the live executor, as a process.

design.md section 3, rule 4: ``mia`` never imports ``executor``; it runs ``python -m executor
--replay`` (the same loop, online features, risk gate and paper broker as live trading) and reads
what it did from the journal it leaves (:mod:`mia.pipelines.journal_reader`, the file contract).

What trades is what the executor would trade after the retrain: the registry's ``production``
bundle with the ``canary`` beside it at the canary's capital share (``--canary --canary-share``);
on a fresh installation, with no production yet, the canary alone on the whole book; a rejected
candidate with no production is replayed alone for inspection. Bundles are downloaded from the
registry, so the replay runs exactly the registered artifacts.

The window is the trade dates lying wholly inside the walk-forward holdout
(mia.training.layout: the last ``walk_forward.holdout_bars`` bars, which no training, selection
or weight fit read); the executor warms its features on the sessions before it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from mia.commands._stack import cwd
from mia.config import Config
from mia.errors import OperationalError


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    """The replayed trade dates and the market times around them.

    :param start: first trade date. :param end: last trade date.
    :param first_ts: close of the first replayed bar. :param last_ts: of the last one.
    :param whole: every date lies inside the holdout (False: the holdout is shorter than one
        session and the last session is replayed whole).
    """

    start: date
    end: date
    first_ts: datetime
    last_ts: datetime
    whole: bool


def held_out_dates(days: Sequence[date], holdout_bars: int) -> tuple[list[date], bool]:
    """The trade dates whose every bar lies in the last ``holdout_bars`` bars.

    :param days: the trade date of each bar, in bar order.
    :param holdout_bars: the holdout's length (``walk_forward.holdout_bars``).
    :return: those dates, and True; or the last date and False when no date fits whole.
    :raises OperationalError: no bars.
    """
    if not days:
        raise OperationalError("no bars in the raw store for the replay; run the ingest first")
    start = max(len(days) - holdout_bars, 0)
    first_row: dict[date, int] = {}
    for i, d in enumerate(days):
        first_row.setdefault(d, i)
    inside = sorted(d for d, i in first_row.items() if i >= start)
    return (inside, True) if inside else ([days[-1]], False)


def replay_window(cfg: Config, symbol: str) -> Window:
    """:return: the held-out window of ``symbol`` over ``data.start..data.end`` (module doc)."""
    import pandas as pd

    from mia.data.calendar import trade_dates
    from mia.pipelines.ingest import raw_store

    p = cfg.params
    ts = pd.DatetimeIndex(raw_store(cfg).read(symbol, p.data.start, p.data.end)["ts"])
    days = [d for d in trade_dates(ts)]
    dates, whole = held_out_dates(days, p.walk_forward.holdout_bars)
    rows = [i for i, d in enumerate(days) if dates[0] <= d <= dates[-1]]
    return Window(start=dates[0], end=dates[-1], first_ts=ts[rows[0]].to_pydatetime(),
                  last_ts=ts[rows[-1]].to_pydatetime(), whole=whole)


@dataclass(frozen=True, kw_only=True, slots=True)
class Books:
    """Which registered versions the replay trades.

    :param production: the version of the ``production`` book (the whole book without canary).
    :param canary: the canary's version, or None. :param share: the canary's capital share.
    :param why: one line on the choice.
    """

    production: str
    canary: str | None
    share: float
    why: str


def choose_books(*, production: str | None, canary: str | None, share: float,
                 candidate: str, default_share: float) -> Books:
    """What the executor trades after the retrain (module doc).

    :param production: the ``production`` alias's version, or None.
    :param canary: the ``canary`` alias's version, or None.
    :param share: the canary's ``canary_share`` tag (NaN when missing).
    :param candidate: the version this retrain registered.
    :param default_share: ``executor.canary_share``, for a canary without its tag.
    """
    if production is not None:
        if canary is None or canary == production:
            return Books(production=production, canary=None, share=0.0,
                         why=f"production v{production} alone (no canary)")
        s = default_share if math.isnan(share) else share
        if not 0.0 < s < 1.0:
            return Books(production=canary, canary=None, share=0.0,
                         why=f"canary v{canary} at share {s:g}: it holds the whole book")
        return Books(production=production, canary=canary, share=s,
                     why=f"production v{production} with canary v{canary} at {s:.0%} of capital")
    if canary is not None:
        return Books(production=canary, canary=None, share=0.0,
                     why=f"canary v{canary} on the whole book (no production version yet)")
    return Books(production=candidate, canary=None, share=0.0,
                 why=f"rejected candidate v{candidate} alone, for inspection (it holds no alias)")


def fetch_bundle(uri: str, into: Path) -> Path:
    """Download a registered bundle (``models:/mia-ES/3``). :return: its folder (bundle.json)."""
    import mlflow

    from mia.registry.tracking import mlflow_errors

    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with mlflow_errors(mlflow.get_tracking_uri(), f"downloading {uri}"):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))
    found = sorted(p.parent for p in local.rglob("bundle.json"))
    if not found:
        raise OperationalError(f"{uri} holds no bundle.json (downloaded to {local})")
    return found[0]


def needs_cross(bundles: Sequence[Path]) -> bool:
    """:return: whether a bundle's features read the other symbol (input group ``cross``)."""
    from mia.registry.bundle import read_bundle

    return any("cross" in read_bundle(b).spec.groups for b in bundles)


@dataclass(frozen=True, kw_only=True)
class Replay:
    """A finished replay: the executor's summary line and the books from its journal.

    :param command: the command run. :param summary: the executor's printed lines.
    :param books: book -> BookStats (mia.registry.canary), capital as routed.
    :param holds: risk holds engaged, per book. :param decisions: the decisions CSV.
    :param journal: the journal file. :param log: the executor's whole output.
    """

    command: list[str]
    summary: list[str]
    books: dict[str, Any]
    holds: dict[str, int]
    decisions: Path
    journal: Path
    log: Path


def replay_command(cfg: Config, symbol: str, cross: str | None, window: Window,
                   production: Path, canary: Path | None, share: float,
                   folder: Path) -> list[str]:
    """:return: the ``python -m executor --replay …`` command line (executor/__main__.py)."""
    cmd = [sys.executable, "-m", "executor", "--replay", "--params", str(cfg.params_path),
           "--home", str(cfg.endpoints.mia_home), "--bundle", str(production),
           "--symbol", symbol, "--start", window.start.isoformat(),
           "--end", window.end.isoformat(), "--state", str(folder / "state"),
           "--out", str(folder / "decisions.csv")]
    if cross is not None:
        cmd += ["--cross", cross]
    if canary is not None:
        cmd += ["--canary", str(canary), "--canary-share", f"{share:g}"]
    return cmd


def run_replay(cfg: Config, symbol: str, command: list[str], window: Window, share: float,
               folder: Path) -> Replay:
    """Run the executor and read its journal.

    :param share: the canary's share (0 without canary): the books' capital.
    :param folder: the replay's folder (state, decisions, log), emptied first: a journal left
        by an earlier replay would be recovered as this one's positions.
    :raises OperationalError: the executor failed (its last lines are in the message).
    """
    from mia.data.contracts import contract
    from mia.pipelines.journal_reader import window as journal_window

    shutil.rmtree(folder / "state", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "executor.log"
    done = subprocess.run(command, cwd=cwd(), capture_output=True, text=True,  # noqa: S603
                          check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise OperationalError(f"the executor replay failed (exit {done.returncode}):\n{tail}\n"
                               f"command: {' '.join(command)}\nfull log: {log}")
    equity = cfg.params.env.initial_equity
    capital = {"production": equity * (1.0 - share)}
    if share > 0:
        capital["canary"] = equity * share
    journal = folder / "state" / "journal.sqlite"
    seen = journal_window(journal, symbol, since=window.first_ts - timedelta(seconds=30),
                          until=window.last_ts, capital=capital,
                          multiplier=contract(symbol).multiplier)
    holds: dict[str, int] = {}
    for book, _ in seen.holds:
        holds[book] = holds.get(book, 0) + 1
    return Replay(command=command, summary=[x for x in done.stdout.splitlines() if x.strip()],
                  books=dict(seen.books), holds=holds, decisions=folder / "decisions.csv",
                  journal=journal, log=log)


def replay_symbol(cfg: Config, symbol: str, candidate: str,
                  folder: Path) -> tuple[Books, Window, Replay]:
    """Choose the books from the registry, download them, replay the held-out window.

    :param candidate: the version this retrain registered. :param folder: the replay's folder.
    """
    from mia.registry.models import status
    from mia.registry.tracking import configure

    configure(cfg)  # the downloads below use MLflow's process-wide tracking URI
    aliases = {a.alias: a for a in status(cfg, symbol).aliases}
    canary = aliases["canary"]
    books = choose_books(production=aliases["production"].version, canary=canary.version,
                         share=math.nan if canary.share is None else canary.share,
                         candidate=candidate, default_share=cfg.params.executor.canary_share)
    model = f"models:/mia-{symbol}"
    prod = fetch_bundle(f"{model}/{books.production}", folder / "bundles" / "production")
    second = None if books.canary is None else \
        fetch_bundle(f"{model}/{books.canary}", folder / "bundles" / "canary")
    others = [s for s in cfg.params.data.symbols if s != symbol]
    cross = others[0] if others and needs_cross([b for b in (prod, second) if b]) else None
    window = replay_window(cfg, symbol)
    command = replay_command(cfg, symbol, cross, window, prod, second, books.share, folder)
    return books, window, run_replay(cfg, symbol, command, window, books.share, folder)
