"""A :class:`~mia.risk.engine.RiskEngine`'s whole state as plain JSON-able data, and back.

The executor writes it with its snapshots (every ``executor.snapshot_seconds``) and restores it
at startup before replaying the journal, so holds, latches, breaker counters, the equity track
and the open trade's stop survive a restart. NaN becomes ``None`` (JSON has no NaN), modes their
names, dates ISO strings.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, Final, NamedTuple

from mia.risk.breakers import BreakerState
from mia.risk.cvar import TradeRecord
from mia.risk.engine import RiskEngine
from mia.risk.limits import EquityTrack
from mia.risk.rules import RiskRules
from mia.risk.state import Hold, Mode, RiskInputError, TradingState
from mia.risk.stops import EntryPlan, TradeRisk

SNAPSHOT_VERSION: Final[int] = 1


def _plain(record: NamedTuple | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: (None if isinstance(v, float) and math.isnan(v) else
                v.name if isinstance(v, Mode) else
                v.isoformat() if isinstance(v, date) else v)
            for k, v in record._asdict().items()}


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def snapshot(engine: RiskEngine) -> dict[str, Any]:
    """:param engine: the engine. :return: its whole state as JSON-able data."""
    return {
        "version": SNAPSHOT_VERSION, "symbol": engine.rules.symbol,
        "holds": [_plain(h) for h in engine.state.holds], "track": _plain(engine.track),
        "breakers": {n: _plain(b) for n, b in engine.breakers.items()},
        "trade": _plain(engine.trade), "plan": _plain(engine.plan),
        "last_close": None if math.isnan(engine.last_close) else engine.last_close,
        "last_atr": None if math.isnan(engine.last_atr) else engine.last_atr,
        "feed_ns": engine.feed_ns, "session_open": engine.session_open,
        "trade_returns": list(engine.record.returns), "trade_open_pnl": engine.record.open_pnl,
    }


def restore(rules: RiskRules, snap: dict[str, Any]) -> RiskEngine:
    """Rebuild an engine from :func:`snapshot`.

    :param rules: the contract's rules (from the current ``params.yaml``).
    :param snap: the snapshot.
    :return: the engine, in the state the snapshot recorded.
    :raises RiskInputError: another version or symbol, or a malformed snapshot.
    """
    if snap.get("version") != SNAPSHOT_VERSION or snap.get("symbol") != rules.symbol:
        raise RiskInputError(f"risk snapshot is version {snap.get('version')!r} for "
                             f"{snap.get('symbol')!r}; this engine reads version "
                             f"{SNAPSHOT_VERSION} for {rules.symbol}")
    try:
        t = snap["track"]
        track = EquityTrack(date.fromisoformat(t["trade_date"]), t["day_start"], t["peak"],
                            t["last"])
        eng = RiskEngine(rules, equity=track.last, trade_date=track.trade_date,
                         now_ns=int(snap["feed_ns"]))
        eng.track = track
        holds = tuple(Hold(**{**h, "mode": Mode[h["mode"]]}) for h in snap["holds"])
        eng.state = TradingState(holds, max((h.mode for h in holds), default=Mode.RUNNING))
        eng.breakers = {n: BreakerState(**b) for n, b in snap["breakers"].items()}
        eng.trade = TradeRisk(**snap["trade"]) if snap["trade"] else None
        eng.plan = EntryPlan(**snap["plan"]) if snap["plan"] else None
        eng.last_close, eng.last_atr = _float(snap["last_close"]), _float(snap["last_atr"])
        eng.session_open = bool(snap["session_open"])
        # absent from snapshots written before the CVaR was measured: an empty record
        c = rules.cfg
        eng.record = TradeRecord(c.cvar_trades, c.cvar_alpha, c.cvar_min_trades,
                                 returns=[float(r) for r in snap.get("trade_returns", [])],
                                 open_pnl=float(snap.get("trade_open_pnl", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise RiskInputError(f"risk snapshot is malformed ({exc!r}); restore from an older "
                             "snapshot or start flat and reconcile with the broker") from exc
    if set(eng.breakers) != set(rules.cfg.BREAKERS):
        raise RiskInputError(f"risk snapshot has breakers {sorted(eng.breakers)}; expected "
                             f"{sorted(rules.cfg.BREAKERS)}")
    return eng
