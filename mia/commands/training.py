"""``mia train`` (the walk-forward of the agents, tracked in MLflow) and ``mia ensemble fit``."""

from __future__ import annotations

import argparse

from mia.commands import load, progress

AGENT_CHOICES = ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn")


def cmd_train(args: argparse.Namespace) -> int:
    """Walk-forward the chosen agents on one symbol and print the out-of-sample table."""
    from mia.pipelines import train

    cfg = load(args)
    result = train.run(cfg, symbol=args.symbol, agents=args.agent, folds=args.folds,
                       timesteps=args.timesteps, workers=args.workers, progress=progress())
    train.print_summary(result, cfg.endpoints.mlflow_tracking_uri)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def register(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``train`` to the ``mia`` parser.

    :param top: the top-level subparsers.
    :param common: parent parser with ``--params`` and ``--home``.
    """
    tr = top.add_parser(
        "train", parents=[common],
        help="walk-forward training of the agents (MLflow parent + child runs)",
        description="Train each agent on each walk-forward fold's train rows and score it on "
        "the fold's validation rows, beside the baselines (flat, buy-and-hold, SMA crossover, "
        "logistic regression). Needs 'mia features build' and 'mia features select' first.",
    )
    tr.add_argument("--agent", action="append", choices=AGENT_CHOICES,
                    help="repeat for several; default: all five")
    tr.add_argument("--folds", type=_positive, help="default: params.yaml walk_forward.folds")
    tr.add_argument("--symbol", choices=["ES", "MNQ"], help="default: data.symbols[0]")
    tr.add_argument("--timesteps", type=_positive,
                    help="env steps per (agent, fold); default: each agent's total_timesteps")
    tr.add_argument("--workers", type=_positive, default=1,
                    help="processes training (agent, fold) tasks side by side (default 1)")
    tr.set_defaults(func=cmd_train)
    register_ensemble(top, common)


def cmd_ensemble_fit(args: argparse.Namespace) -> int:
    """Fit the ensemble's vote on the walk-forward's validation windows."""
    from mia.pipelines import ensemble

    ensemble.print_result(ensemble.run(load(args), symbol=args.symbol))
    return 0


def register_ensemble(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """Add ``ensemble fit`` to the ``mia`` parser."""
    ens = top.add_parser("ensemble", help="the agents' Bayesian vote")
    sub = ens.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = sub.add_parser(
        "fit", parents=[common],
        help="fit the vote's weights on the walk-forward's validation windows (after mia train)")
    fit.add_argument("--symbol", choices=["ES", "MNQ"], help="default: data.symbols[0]")
    fit.set_defaults(func=cmd_ensemble_fit)
