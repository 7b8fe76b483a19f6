"""``mia config …`` and ``mia data …`` (``mia demo`` is mia.commands.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mia.commands import load, parse_date, parse_mapping, progress


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the resolved configuration (params.yaml + environment endpoints) as YAML."""
    import yaml

    from mia.config import to_dict

    cfg = load(args)
    print(f"# params: {cfg.params_path}")
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def cmd_data_generate(args: argparse.Namespace) -> int:
    """Generate a synthetic market into the raw store and print its summary."""
    import pandas as pd

    from mia.data.report import print_summary
    from mia.data.synthetic import generate_market
    from mia.pipelines.ingest import raw_store

    cfg = load(args)
    d = cfg.params.data
    symbols = args.symbol or list(d.symbols)
    start, end = args.start or d.start, args.end or d.end
    seed = d.seed if args.seed is None else args.seed
    alpha = d.planted_alpha if args.planted_alpha is None else args.planted_alpha
    market = generate_market(
        symbols,
        start,
        end,
        seed,
        planted_alpha=alpha,
        random_walk=args.random_walk or d.random_walk,
        progress=progress(),
    )
    store = raw_store(cfg)
    report = store.write(
        pd.concat(market.bars.values(), ignore_index=True),
        where="synthetic market",
        progress=progress(),
    )
    print(f"generated {', '.join(symbols)} {start}..{end} seed={seed}; planted: {market.planted}")
    print(
        f"store {store.root}: {report.partitions} partitions written, "
        f"{report.unchanged} already identical"
    )
    print_summary(store, symbols, start, end)
    return 0


def cmd_data_ingest(args: argparse.Namespace) -> int:
    """Validate a CSV/Parquet bar file and write it into the raw store."""
    from mia.data.ingest import ingest_file
    from mia.data.report import print_summary
    from mia.pipelines.ingest import raw_store

    cfg = load(args)
    store = raw_store(cfg)
    drop = [c for part in args.drop for c in part.split(",") if c]
    report = ingest_file(
        store,
        args.file,
        symbol=args.symbol,
        column_map=dict(args.map),
        drop=drop,
        tz=args.tz,
        progress=progress(),
    )
    w = report.write
    print(
        f"ingested {report.rows_read} bars from {args.file} ({', '.join(w.symbols)}; "
        f"groups: {', '.join(w.groups) or 'OHLCV only'})"
    )
    print(f"store {store.root}: {w.partitions} partitions written, {w.unchanged} already identical")
    print_summary(store, list(w.symbols), None, None)
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    """Print what the raw store holds, with content hashes."""
    from mia.data.report import print_summary
    from mia.pipelines.ingest import raw_store

    store = raw_store(load(args))
    symbols = args.symbol or store.symbols()
    if not symbols:
        print(f"store {store.root} is empty; fill it with 'mia data generate' or 'mia data ingest'")
        return 0
    print_summary(store, symbols, args.start, args.end)
    return 0


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``config`` and ``data`` to the ``mia`` parser.

    :param top: the top-level subparsers.
    :param common: parent parser with ``--params`` and ``--home``.
    """
    cfg = top.add_parser("config", help="show the resolved configuration")
    cfg_sub = cfg.add_subparsers(dest="action", required=True, metavar="ACTION")
    cfg_sub.add_parser(
        "show", parents=[common], help="print params + endpoints as YAML"
    ).set_defaults(func=cmd_config_show)

    data = top.add_parser("data", help="market data: generate, ingest, inspect")
    data_sub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = data_sub.add_parser(
        "generate",
        parents=[common],
        help="generate a synthetic ES/MNQ market (defaults: params.yaml data)",
    )
    gen.add_argument(
        "--symbol",
        action="append",
        choices=["ES", "MNQ"],
        help="repeat for several; together they are correlated",
    )
    gen.add_argument("--start", type=parse_date, help="first trade date, e.g. 2024-01-02")
    gen.add_argument("--end", type=parse_date, help="last trade date (inclusive)")
    gen.add_argument("--seed", type=int)
    gen.add_argument(
        "--planted-alpha",
        type=float,
        dest="planted_alpha",
        help="plant a known signal of this strength (docs/data.md)",
    )
    gen.add_argument(
        "--random-walk", action="store_true", dest="random_walk", help="remove all predictability"
    )
    gen.set_defaults(func=cmd_data_generate)

    ing = data_sub.add_parser(
        "ingest", parents=[common], help="validate and store a CSV/Parquet file"
    )
    ing.add_argument("file", type=Path)
    ing.add_argument("--symbol", choices=["ES", "MNQ"], help="symbol of a file without one")
    ing.add_argument(
        "--map",
        type=parse_mapping,
        action="append",
        default=[],
        metavar="SOURCE=NAME",
        help="rename a source column (repeatable)",
    )
    ing.add_argument(
        "--drop", action="append", default=[], metavar="COL[,COL]", help="ignore source columns"
    )
    ing.add_argument("--tz", help="IANA zone of naive timestamps, e.g. America/Chicago")
    ing.set_defaults(func=cmd_data_ingest)

    info = data_sub.add_parser("info", parents=[common], help="what the store holds, with hashes")
    info.add_argument("--symbol", action="append", choices=["ES", "MNQ"])
    info.add_argument("--start", type=parse_date)
    info.add_argument("--end", type=parse_date)
    info.set_defaults(func=cmd_data_info)
