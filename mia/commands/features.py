"""``mia features build|list|select``, ``mia regimes fit``, ``mia validate``, ``mia drift``."""

from __future__ import annotations

import argparse

from mia.commands import load, progress


def cmd_features_build(args: argparse.Namespace) -> int:
    """Build every buildable feature for the configured symbols and store them."""
    from mia.pipelines import features

    cfg = load(args)
    result = features.run(cfg, symbols=args.symbol, progress=progress())
    for sym, lines in result.lines.items():
        print(f"{sym}: " + "\n    ".join(lines))
    print(f"stored under {result.store}; report {result.report}")
    return 0


def cmd_features_list(args: argparse.Namespace) -> int:
    """List registered features (or a stored spec) with family, parameters, groups, warm-up."""
    from mia.features.registry import registry
    from mia.features.spec import make_spec

    reg = registry()
    if args.stored:
        from mia.pipelines.features import feature_store

        spec = feature_store(load(args)).spec(args.stored)
        print(
            f"# stored spec of {args.stored}: {len(spec.names)} features, sha256 "
            f"{spec.sha256[:16]}, warm-up {spec.warmup} bars"
        )
    else:
        names = [
            n
            for n, d in reg.items()
            if args.group is None or args.group in (d.groups or ("ohlcv",))
        ]
        spec = make_spec([n for n in names if "regime" not in reg[n].groups])
    print(f"{'name':<28}{'family':<24}{'groups':<12}{'warm-up':>8}  params")
    for name, warm in zip(spec.names, spec.warmups, strict=True):
        d = reg[name]
        params = ", ".join(f"{k}={v}" for k, v in d.params.items())
        print(f"{name:<28}{d.family:<24}{','.join(d.groups) or 'ohlcv':<12}{warm:>8}  {params}")
    print(f"{len(spec.names)} features")
    return 0


def cmd_features_select(args: argparse.Namespace) -> int:
    """SHAP-select the configured number of features per symbol and write the selected spec."""
    from mia.pipelines import select

    result = select.run(load(args), symbols=args.symbol, progress=progress())
    for sym, path in result.specs.items():
        stab, chance = result.stability[sym]
        print(f"{sym}: fold stability {stab:.2f} (chance level {chance:.2f})")
        print(f"    top 10: {', '.join(result.top[sym])}")
        print(f"    spec {path}\n    ranking plot {result.reports[sym]['ranking']}")
    return 0


def cmd_regimes_fit(args: argparse.Namespace) -> int:
    """Fit the 3-state HMM per symbol on the first training window."""
    from mia.pipelines import regimes

    result = regimes.run(load(args), symbols=args.symbol)
    for sym, share in result.shares.items():
        text = ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        print(f"{sym}: {text} of training bars (forward-filtered) -> {result.paths[sym]}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Run the Great Expectations suite on raw bars or built features."""
    from mia.pipelines import validate

    for sym, summary in validate.run(load(args), args.what, symbols=args.symbol).items():
        print(summary.describe(f"{sym} {args.what}"))
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """Evidently drift report (recent vs reference window) and the PSI reference."""
    from mia.pipelines import drift

    drift.print_result(drift.run(load(args), symbols=args.symbol))
    return 0


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``features`` to the ``mia`` parser.

    :param top: the top-level subparsers.
    :param common: parent parser with ``--params`` and ``--home``.
    """
    feats = top.add_parser("features", help="build, list and select features")
    sub = feats.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sub.add_parser("build", parents=[common], help="build features from the raw store")
    build.add_argument(
        "--symbol", action="append", choices=["ES", "MNQ"], help="default: params.yaml data.symbols"
    )
    build.set_defaults(func=cmd_features_build)
    ls = sub.add_parser("list", parents=[common], help="the feature registry or a stored spec")
    ls.add_argument(
        "--group",
        choices=["ohlcv", "orderflow", "options", "gamma", "vix", "news", "cross", "regime"],
    )
    ls.add_argument("--stored", choices=["ES", "MNQ"], help="show the stored spec of a symbol")
    ls.set_defaults(func=cmd_features_list)
    sel = sub.add_parser("select", parents=[common], help="SHAP selection over walk-forward folds")
    sel.add_argument("--symbol", action="append", choices=["ES", "MNQ"])
    sel.set_defaults(func=cmd_features_select)

    reg = top.add_parser("regimes", help="HMM market regimes")
    reg_sub = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = reg_sub.add_parser(
        "fit", parents=[common], help="fit the HMM on the first training window"
    )
    fit.add_argument("--symbol", action="append", choices=["ES", "MNQ"])
    fit.set_defaults(func=cmd_regimes_fit)

    val = top.add_parser(
        "validate", parents=[common], help="Great Expectations suites on raw bars or features"
    )
    val.add_argument("what", choices=["raw", "features"])
    val.add_argument("--symbol", action="append", choices=["ES", "MNQ"])
    val.set_defaults(func=cmd_validate)

    dr = top.add_parser("drift", parents=[common], help="Evidently drift report + PSI reference")
    dr.add_argument("--symbol", action="append", choices=["ES", "MNQ"])
    dr.set_defaults(func=cmd_drift)
