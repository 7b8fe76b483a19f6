"""``mia demo`` (``make demo``): the main job on embedded defaults, end to end.

1. **data**: the synthetic ES + MNQ market into the raw store (``mia data generate``);
2. **retrain**: ``airflow db migrate``, then ``airflow dags test mia_retrain`` on SQLite under
   ``<MIA_HOME>/airflow`` — validation, features, selection, drift, walk-forward training,
   ensemble, registration and the gate, which gives a passing candidate ``canary``; the run is
   in the metadata database, so ``make ui`` shows it with links to MLflow;
3. **replay**: the held-out sessions through ``python -m executor --replay`` (production with the
   canary beside it, or the canary alone on a fresh installation; mia.commands.demo_replay);
4. **summary**: the gate's verdict and checks, the holdout metrics against the baselines, the
   replay's PnL and trades, and where to look.

Profiles. By default the quick profile: ``params.demo.yaml`` laid over ``params.yaml`` into
``<MIA_HOME>/demo/params.yaml`` (smaller data, networks and budgets, a planted signal), ES
trained, about seven minutes on 2 cores. ``--full`` runs ``params.yaml`` as it is, every symbol.
A failed DAG run exits non-zero naming the failed task, its exception and its log.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from mia.commands import load, progress
from mia.commands._stack import DAG_ID, airflow_url, demo_dir, demo_params, migrate, stack_env
from mia.config import Config
from mia.errors import ConfigError, OperationalError

STAGES: Final[int] = 4


def overlay_path() -> Path:
    """:return: the quick profile's overlay, ``params.demo.yaml`` of the checkout."""
    from mia.orchestration import REPO

    return REPO / "params.demo.yaml"


def overlay_onto(base: Mapping[str, Any], overlay: Mapping[str, Any], *, source: str,
                 path: str = "") -> dict[str, Any]:
    """``base`` with ``overlay``'s values: mappings merge key by key, anything else replaces.

    :param source: the overlay's name, for errors.
    :raises ConfigError: an overlay key ``base`` does not have (a typo would be ignored
        otherwise), or a mapping where ``base`` has a value.
    """
    out = dict(base)
    for key, value in overlay.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"{source}: {where}: params.yaml has no such key; the overlay may "
                              "only change existing keys (known here: "
                              f"{', '.join(map(str, base))})")
        if isinstance(value, Mapping):
            if not isinstance(base[key], Mapping):
                raise ConfigError(f"{source}: {where}: a mapping, but params.yaml holds a value "
                                  "there; give a value")
            out[key] = overlay_onto(base[key], value, source=source, path=f"{where}.")
        else:
            out[key] = value
    return out


def write_profile(base: Path, overlay: Path, out: Path) -> Path:
    """Lay ``overlay`` over ``base`` into ``out`` and check the result loads.

    :return: ``out``. :raises ConfigError: a bad overlay key, or merged params that fail
        :mod:`mia.config`'s checks (naming ``out``; fix the overlay).
    """
    import yaml

    from mia.config import load_params
    from mia.config.loader import read_yaml

    doc, over = read_yaml(base), read_yaml(overlay)
    if not isinstance(doc, Mapping) or not isinstance(over, Mapping):
        raise ConfigError(f"{base} and {overlay} must each hold a mapping of sections")
    merged = overlay_onto(doc, over, source=str(overlay))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# written by `mia demo`: {base} with {overlay} laid over it; edit those, "
                   "not this file\n" + yaml.safe_dump(merged, sort_keys=False))
    load_params(out)
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job (module docstring)."""
    import os

    from mia.config import load_config

    began = time.monotonic()
    base = load(args)
    home = base.endpoints.mia_home
    if args.full:
        params, profile = base.params_path, f"full: {base.params_path} as it is"
    else:
        params = write_profile(base.params_path, overlay_path(), demo_params(home))
        profile = f"quick: {base.params_path} + {overlay_path().name} -> {params}"
    cfg = load_config(params, env={**os.environ, "MIA_HOME": str(home)})
    symbols = list(args.symbol or (cfg.params.data.symbols if args.full
                                   else cfg.params.data.symbols[:1]))
    unknown = [s for s in symbols if s not in cfg.params.data.symbols]
    if unknown:
        raise ConfigError(f"--symbol {unknown}: not in data.symbols {list(cfg.params.data.symbols)}"
                          f" of {params}")
    print(f"MIA demo — MIA_HOME={home}\n  profile  {profile}\n  trains   {', '.join(symbols)}",
          flush=True)
    _stage(1, "data: the synthetic market into the raw store", began)
    _generate(cfg)
    _stage(2, f"retrain: airflow dags test {DAG_ID} (Airflow on SQLite)", began)
    env = stack_env(home, params)
    logs = demo_dir(home) / "logs"
    migrate(env, logs / "airflow_db_migrate.log")
    print(f"  AIRFLOW_HOME {env['AIRFLOW_HOME']} (metadata database migrated)\n"
          f"  logs         {logs / 'dags_test.log'}, one file per task in {logs / 'tasks'}",
          flush=True)
    run = _retrain(env, symbols, logs)
    from mia.commands.demo_summary import Registered, data_lines

    print("\n  data stages (from their reports):")
    print("\n".join(f"    {line}" for line in data_lines(home, cfg.params.data.symbols)))
    registered = [Registered.from_xcom(v) for v in run.progress.returned("package_register")]
    if not registered:
        raise OperationalError(f"the run made no package_register result; see {run.log}")
    _stage(3, "replay: the held-out sessions through the executor (python -m executor --replay)",
           began)
    replays = _replays(cfg, registered)
    _stage(4, "summary", began)
    _summary(cfg, env, run.run_id, registered, replays, logs)
    print(f"\ndemo done in {_clock(time.monotonic() - began)}", flush=True)
    return 0


def _stage(n: int, title: str, began: float) -> None:
    print(f"\n== [{n}/{STAGES}] {title}   (+{_clock(time.monotonic() - began)})", flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def _generate(cfg: Config) -> None:
    from mia.data.report import print_summary
    from mia.pipelines import ingest

    d = cfg.params.data
    result = ingest.run(cfg, progress=progress())
    print(f"  {d.source} {', '.join(result.hashes)} {d.start}..{d.end} seed={d.seed}; "
          f"planted: {result.planted}", flush=True)
    print_summary(ingest.raw_store(cfg), list(result.hashes), d.start, d.end)


def _retrain(env: dict[str, str], symbols: list[str], logs: Path) -> Any:
    from mia.commands.demo_dag import TaskRun, run_dag

    tty = progress()
    count = 0

    def show(event: str, task: TaskRun) -> None:
        nonlocal count
        if event == "start":
            if tty:
                print(f"  ▸ {task.label} …", end="", flush=True)
            return
        count += 1
        mark = "✓" if task.state == "success" else "✗"
        line = f"  {mark} [{count:>2}] {task.label:<34} {task.state:<8} {task.seconds:>6.1f} s"
        print(("\r\033[K" if tty else "") + f"{line}  {task.note}".rstrip(), flush=True)

    run = run_dag(env, {"symbols": symbols}, logs, show=show,
                  airflow_logs=Path(env["AIRFLOW_HOME"]) / "logs")
    if not run.ok:
        raise OperationalError(run.failure())
    print(f"  {DAG_ID} run {run.run_id}: {run.state}, {len(run.progress.tasks)} task instances "
          f"in {_clock(run.seconds)}", flush=True)
    return run


def _replays(cfg: Config, registered: list[Any]) -> dict[str, Any]:
    from mia.commands.demo_replay import replay_symbol

    out = {}
    for reg in registered:
        folder = demo_dir(cfg.endpoints.mia_home) / "replay" / reg.symbol
        books, window, replay = replay_symbol(cfg, reg.symbol, reg.version, folder)
        out[reg.symbol] = (books, window, replay, folder)
        print(f"  {reg.symbol}: {books.why}\n  $ python " + " ".join(replay.command[1:]))
        print("\n".join(f"  {line}" for line in replay.summary), flush=True)
    return out


def _summary(cfg: Config, env: dict[str, str], run_id: str | None, registered: list[Any],
             replays: Mapping[str, Any], logs: Path) -> None:
    from mia.commands.demo_summary import (
        gate_lines,
        holdout_lines,
        read_json,
        replay_lines,
        where_lines,
    )
    from mia.registry.models import status

    for reg in registered:
        report = read_json(reg.report) or {}
        print("\n".join(gate_lines(reg, report)))
        print("\n".join(holdout_lines(report, reg.version)))
        print("  registry now:")
        print("\n".join(f"    {line}" for line in status(cfg, reg.symbol).lines()))
        if reg.symbol in replays:
            books, window, replay, _ = replays[reg.symbol]
            print("  replay through the executor:")
            print("\n".join(f"  {line}" for line in replay_lines(books, window, replay)))
    print("\n== where to look")
    print("\n".join(where_lines(airflow=airflow_url(env), mlflow=env["MIA_MLFLOW_UI_URL"],
                                dag_id=DAG_ID, run_id=run_id, registered=registered,
                                home=cfg.endpoints.mia_home, logs=logs,
                                replays={s: r[3] for s, r in replays.items()})), flush=True)


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``demo`` to the ``mia`` parser.

    :param top: the top-level subparsers. :param common: parent with ``--params``, ``--home``.
    """
    demo = top.add_parser(
        "demo", parents=[common],
        help="the main job: data, the retrain DAG, gate, executor replay, summary",
        description="Generate data, run the mia_retrain DAG (airflow dags test, SQLite), gate "
                    "and register, replay the held-out session through the executor, print a "
                    "summary. Default: the quick profile (params.demo.yaml over params.yaml).")
    demo.add_argument("--full", action="store_true",
                      help="run params.yaml as it is (hours) instead of the quick profile "
                           "(params.demo.yaml laid over it, about seven minutes)")
    demo.add_argument("--symbol", action="append", choices=["ES", "MNQ"],
                      help="symbols to train and replay (repeatable; default: ES, or every "
                           "data.symbols with --full)")
    demo.set_defaults(func=cmd_demo)
