"""``python -m executor`` (also the ``mia-executor`` script).

- ``python -m executor --config executor.yaml``: the live process (systemd: ``Type=notify``).
  SIGTERM / SIGINT stop it gracefully: no new orders, working orders cancelled, optional
  flatten (``flatten_on_stop``), a final snapshot.
- ``python -m executor --replay --bundle DIR --start D --end D [--symbol ES] [--cross MNQ]
  [--canary DIR --canary-share 0.05]``:
  the same loop over the data store as fast as possible; prints the summary and writes every
  decision to ``--out`` (CSV).
- ``python -m executor release --config executor.yaml --cause kill_switch --by NAME --why TEXT``:
  asks the executor to release a latched hold (executor.release); applied between bars, or at
  the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any


def _usage() -> str:
    """:return: the module docstring as ``--help`` shows it: the three ways to run the executor."""
    text = (__doc__ or "").replace("``", "")
    return text.replace("the mia-executor script).", "the mia-executor script), three ways:", 1)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m executor", description=_usage(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="executor.yaml (the live process)")
    p.add_argument("--params", type=Path, default=None, help="params.yaml (default ./params.yaml)")
    p.add_argument("--home", type=Path, default=None, help="MIA_HOME")
    p.add_argument("--replay", action="store_true", help="replay history with a local bundle")
    p.add_argument("--bundle", type=Path, help="bundle directory (replay)")
    p.add_argument("--canary", type=Path, default=None,
                   help="a canary bundle directory (replay: its own book)")
    p.add_argument("--canary-share", type=float, default=0.05,
                   help="the canary's capital share (replay; default 0.05)")
    p.add_argument("--symbol", default="ES", choices=["ES", "MNQ"])
    p.add_argument("--cross", default=None, choices=["ES", "MNQ"],
                   help="the other symbol (when the bundle has cross features)")
    p.add_argument("--start", type=date.fromisoformat, help="first trade date (replay)")
    p.add_argument("--end", type=date.fromisoformat, help="last trade date (replay)")
    p.add_argument("--warm-start", type=date.fromisoformat, default=None,
                   help="first date warming the features (default: just enough before --start)")
    p.add_argument("--state", type=Path, default=None, help="state directory (replay: a temp)")
    p.add_argument("--out", type=Path, default=None, help="decisions CSV (replay)")
    return p


def _config(args: argparse.Namespace) -> Any:
    import os

    from mia.config import load_config

    env = dict(os.environ)
    if args.home is not None:
        env["MIA_HOME"] = str(args.home)
    return load_config(args.params, env=env)


def _replay(args: argparse.Namespace) -> int:
    from executor.app import replay

    if args.bundle is None or args.start is None or args.end is None:
        print("error: --replay needs --bundle, --start and --end", file=sys.stderr)
        return 2
    if not 0.0 < args.canary_share < 1.0:
        print(f"error: --canary-share {args.canary_share} is outside (0, 1)", file=sys.stderr)
        return 2
    cfg = _config(args)
    with tempfile.TemporaryDirectory() as tmp:
        stats = replay(cfg, bundle=args.bundle, symbol=args.symbol, cross=args.cross,
                       start=args.start, end=args.end, state_dir=args.state or Path(tmp) / "s",
                       warm_start=args.warm_start, canary=args.canary,
                       canary_share=args.canary_share)
    import numpy as np

    lat = np.asarray(stats.latency_ns, dtype=np.float64) / 1e3
    q = np.percentile(lat, [50, 99]) if lat.size else [float("nan")] * 2
    print(f"replay {args.symbol} {args.start}..{args.end}: {stats.bars} bars, {stats.faults} "
          f"faults, {stats.orders} orders, {stats.fills} fills; tick-to-decision p50 "
          f"{q[0]:.1f} us, p99 {q[1]:.1f} us")
    if args.out is not None:
        lines = ["ts_ns,book,target"] + [f"{t},{b},{x}" for t, b, x in stats.decisions]
        args.out.write_text("\n".join(lines) + "\n")
        print(f"decisions {args.out}")
    return 0


def _live(args: argparse.Namespace) -> int:
    from executor import systemd
    from executor.app import live
    from executor.feeds.base import Idle
    from executor.settings import load_settings

    settings = load_settings(args.config)
    cfg = _config(args)
    ex = live(settings, cfg)
    feed = _feed(settings, cfg, ex)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ex.request_stop())
    if ex.svc.watcher is not None:
        ex.svc.watcher.start()
    systemd.notify("READY=1")
    log = logging.getLogger("mia.executor")
    models = {n: None if s is None else s.version for n, s in ex.slots.items()}
    log.info("ready: %s, models %s, routing %s (canary share %g), feed %s, state %s",
             settings.symbol, models, ex.routing.mode, ex.routing.share, settings.feed.kind,
             settings.state_path)
    interval = systemd.watchdog_interval_s()

    def events() -> Any:
        import time

        last = time.monotonic()
        for event in feed:
            yield event
            if interval is not None and time.monotonic() - last > interval:
                systemd.notify("WATCHDOG=1")  # a hung loop stops pinging: systemd restarts it
                last = time.monotonic()
            if ex.stop_event.is_set() and isinstance(event, Idle):
                break

    ex.run(events())
    systemd.notify("STOPPING=1")
    feed.close()
    if ex.svc.watcher is not None:
        ex.svc.watcher.stop()
    books = {f"{b}/{sym}": pos.quantity for (b, sym), pos in sorted(ex.state.books.items())}
    log.info("stopped: %d bars this run (%d caught up on after the start), %d orders, %d fills;"
             " positions %s; state in %s", ex.stats.bars + ex.stats.backlog, ex.stats.backlog,
             ex.stats.orders, ex.stats.fills, books or "flat", settings.state_path)
    return 0


def _feed(settings: Any, cfg: Any, ex: Any) -> Any:
    f = settings.feed
    symbols = [settings.symbol] + ([settings.cross_symbol] if settings.cross_symbol else [])
    # resume after the newest journaled bar, the cross symbol's too: its bars up to that one
    # completed bars already traded (the journal records the traded symbol's bars only)
    last = ex.state.last_bar_ns.get(settings.symbol)
    after = {} if last is None else dict.fromkeys(symbols, last)
    if f.kind == "replay":
        from executor.feeds.replay import ReplayFeed

        return ReplayFeed(cfg.endpoints.mia_home / "data" / "raw", symbols,
                          date.fromisoformat(f.start) if f.start else None,
                          date.fromisoformat(f.end) if f.end else None,
                          speed=f.speed or None, start_after=after)
    import os

    from executor.feeds.redis_stream import RedisStreamFeed

    return RedisStreamFeed(f.redis_url(os.environ), symbols, prefix=f.prefix, group=f.group,
                           consumer=f.consumer)


def _release_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m executor release",
                                description="release a latched hold (kill switch, data quality, "
                                            "drawdown): applied by the executor between bars")
    p.add_argument("--config", type=Path, required=True, help="executor.yaml")
    p.add_argument("--cause", required=True,
                   help="the hold: kill_switch, breaker.<name> or limit.<name> (GET /status)")
    p.add_argument("--by", required=True, help="your name (journaled)")
    p.add_argument("--why", required=True, help="why it may be released (journaled)")
    return p


def _release(args: argparse.Namespace) -> int:
    from executor import release
    from executor.settings import load_settings
    from mia.errors import ConfigError

    settings = load_settings(args.config)
    request = release.ReleaseRequest(args.cause, args.by, args.why)
    if request.cause == "kill_switch" and settings.kill_file \
            and Path(settings.kill_file).exists():
        raise ConfigError(f"release: the kill file {settings.kill_file} still exists; it would "
                          "kill again at the next tick. Move it aside first")
    target = release.write(settings.state_path, request)
    print(f"release of {request.cause} requested by {request.by}: {target}\n"
          "a running executor applies it between bars (a stopped one at its start); "
          "the journal's risk_event and GET /status show the result")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m executor`` and ``mia-executor``."""
    from mia.exits import run_guarded

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["release"]:
        rargs = _release_parser().parse_args(argv[1:])
        return run_guarded(lambda: _release(rargs))
    args = _parser().parse_args(argv)
    if args.replay:
        return run_guarded(lambda: _replay(args))
    if args.config is None:
        print("error: pass --config executor.yaml, or --replay", file=sys.stderr)
        return 2
    _no_jit_cache()
    return run_guarded(lambda: _live(args))


def _no_jit_cache() -> None:
    """The live process reads no numba cache: its files are pickles (mia._jit). Set before any
    kernel is imported; ``MIA_JIT_CACHE=on`` in the environment keeps the cache (faster starts,
    for a host where only the executor's user can write the cache folder)."""
    import os

    os.environ.setdefault("MIA_JIT_CACHE", "off")
    jit = sys.modules.get("mia._jit")
    if jit is not None and jit.JIT_CACHE and os.environ["MIA_JIT_CACHE"] == "off":
        logging.getLogger(__name__).warning(
            "the kernels were imported before the live start: they keep numba's on-disk cache")


if __name__ == "__main__":
    raise SystemExit(main())
