"""Risk: sizing, stops, limits, circuit breakers and trading states, shared by backtest and live.

Pure code over small typed records: numpy and the standard library only, no I/O, no clock reads
(time comes in as ``now_ns``), no pandas or torch (an import-linter contract holds it). Every
number comes from ``params.yaml: risk`` through :class:`RiskRules`. docs/risk.md lists each rule
with its line in reference.md and its key.

- :func:`mia.risk.gate.check` — the pre-trade check: policy target -> the allowed order, with
  reasons; :class:`RiskEngine` — the per-bar loop around it (breakers, stops, limits, states).
"""

from mia.risk.breakers import BreakerState
from mia.risk.engine import BarRisk, RiskEngine
from mia.risk.gate import Book, Decision, check
from mia.risk.inputs import RISK_FEATURES, FeatureTap, RiskFeatures
from mia.risk.limits import EquityTrack, notional_contracts, position_cap
from mia.risk.reasons import Reason
from mia.risk.rules import RiskRules
from mia.risk.sizing import Sizing, classify_regime, leverage, size_entry, trend_confirmed
from mia.risk.snapshot import restore, snapshot
from mia.risk.state import Hold, Mode, RiskEvent, RiskInputError, TradingState
from mia.risk.stops import EntryPlan, Exit, TradeRisk, apply_fill, bar_exits, trail

__all__ = [
    "RISK_FEATURES",
    "BarRisk",
    "Book",
    "BreakerState",
    "Decision",
    "EntryPlan",
    "EquityTrack",
    "Exit",
    "FeatureTap",
    "Hold",
    "Mode",
    "Reason",
    "RiskEngine",
    "RiskEvent",
    "RiskFeatures",
    "RiskInputError",
    "RiskRules",
    "Sizing",
    "TradeRisk",
    "TradingState",
    "apply_fill",
    "bar_exits",
    "check",
    "classify_regime",
    "leverage",
    "notional_contracts",
    "position_cap",
    "restore",
    "size_entry",
    "snapshot",
    "trail",
    "trend_confirmed",
]
