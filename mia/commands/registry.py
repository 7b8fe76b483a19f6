"""``mia registry status | promote | rollback | set-canary | set-share | clear-canary``.

Each command prints what it did in one or two lines and exits 0 on success and on an idempotent
"nothing to do"; a missing alias or unknown version exits 2, an unreachable MLflow 75 (retry).
MLflow's HTTP retries are turned down so a dead server is reported in seconds (docs/registry.md).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mia.commands import load

if TYPE_CHECKING:
    from mia.config import Config
    from mia.registry.tracking import Tracking


def _connect(args: argparse.Namespace) -> tuple[Config, str, Tracking]:
    from mia.registry.tracking import configure

    cfg = load(args)
    symbol = args.symbol or cfg.params.data.symbols[0]
    return cfg, symbol, configure(cfg, fail_fast=True)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the three aliases with version, share, metrics and last audit entry."""
    from mia.registry.models import status

    cfg, symbol, t = _connect(args)
    print("\n".join(status(cfg, symbol, client=t.client).lines()))
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    """Run one alias move and print what it did."""
    from mia.registry import aliases

    cfg, symbol, t = _connect(args)
    who = {"reason": args.reason, "client": t.client, "user": args.user}
    if args.action == "promote":
        result = aliases.promote(cfg, symbol, **who)
    elif args.action == "rollback":
        result = aliases.rollback(cfg, symbol, **who)
    elif args.action == "set-canary":
        result = aliases.set_canary(cfg, symbol, args.version, share=args.share, **who)
    elif args.action == "set-share":
        result = aliases.set_share(cfg, symbol, args.share, **who)
    else:
        result = aliases.clear_canary(cfg, symbol, **who)
    print(result.message)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Bundle the fitted ensemble, score it on the holdout, register it and run the gate."""
    from mia.commands import load
    from mia.pipelines import register as stage

    stage.print_result(stage.run(load(args), symbol=args.symbol))
    return 0


def _share(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share like 0.05") from None


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``registry`` to the ``mia`` parser.

    :param top: the top-level subparsers.
    :param common: parent parser with ``--params`` and ``--home``.
    """
    base = argparse.ArgumentParser(add_help=False, parents=[common])
    base.add_argument("--symbol", choices=["ES", "MNQ"],
                      help="model mia-SYMBOL (default: first of params.yaml data.symbols)")
    move = argparse.ArgumentParser(add_help=False, parents=[base])
    move.add_argument("--reason", required=True, help="why (recorded on every version touched)")
    move.add_argument("--user", help="who (default: $MIA_USER or the login name)")

    reg = top.add_parser("registry", help="MLflow model aliases: status, promote, rollback, canary")
    sub = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser(
        "register", parents=[base],
        help="bundle the ensemble (after 'mia ensemble fit'), score it on the holdout, register "
             "it as a version and run the promotion gate (a pass gets the canary alias)",
    ).set_defaults(func=cmd_register)
    sub.add_parser("status", parents=[base],
                   help="the aliases, their versions, shares and audit").set_defaults(
        func=cmd_status)
    sub.add_parser("promote", parents=[move],
                   help="canary -> production, production -> previous-production").set_defaults(
        func=cmd_move)
    sub.add_parser("rollback", parents=[move],
                   help="previous-production -> production; isolate the faulty version"
                   ).set_defaults(func=cmd_move)
    canary = sub.add_parser("set-canary", parents=[move], help="give a version the canary alias")
    canary.add_argument("version", help="model version number, e.g. 4")
    canary.add_argument("--share", type=_share, default=None,
                        help="capital share in (0, 1] (default: executor.canary_share)")
    canary.set_defaults(func=cmd_move)
    share = sub.add_parser("set-share", parents=[move], help="step the canary's capital share")
    share.add_argument("share", type=_share, help="new share in (0, 1], e.g. 0.15")
    share.set_defaults(func=cmd_move)
    sub.add_parser("clear-canary", parents=[move],
                   help="remove the canary; production keeps all the capital").set_defaults(
        func=cmd_move)
