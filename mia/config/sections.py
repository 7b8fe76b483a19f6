"""One frozen dataclass per ``params.yaml`` section, and :class:`Params` holding them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mia.config._checks import (
    AGENT_NAMES,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    UNIT,
    Bound,
    _Checked,
    _exact_keys,
    _increasing,
)
from mia.config.agents import AgentsConfig
from mia.types import REGIMES, Regime, Symbol


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig(_Checked):
    """Where bars come from and which trade dates (inclusive) to build."""

    source: Literal["synthetic", "file"]
    symbols: tuple[Symbol, ...]
    start: date
    end: date
    seed: int = field(metadata=NON_NEGATIVE)
    planted_alpha: float = field(metadata=NON_NEGATIVE)
    random_walk: bool
    file: str | None
    column_map: dict[str, str]
    tz: str | None

    def _cross_checks(self) -> list[str]:
        out: list[str] = []
        if self.start > self.end:
            out.append(f"start: {self.start} is after end {self.end}; swap them")
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            out.append(f"symbols: need at least one symbol, no repeats; got {list(self.symbols)}")
        if self.source == "file" and not self.file:
            out.append("file: source is 'file' but file is null; set file: PATH")
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                out.append(f"tz: unknown time zone {self.tz!r}; use an IANA name like "
                           "'America/Chicago' (install tzdata if the system has none)")
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class FeaturesConfig(_Checked):
    """Feature build: label horizon, regime HMM, target feature count."""

    label_horizon: int = field(metadata=POSITIVE)
    regime_states: int = field(metadata=POSITIVE)
    regime_thresholds: dict[str, float] = field(metadata=UNIT)
    n_features_target: int = field(metadata=POSITIVE)

    def _cross_checks(self) -> list[str]:
        return _exact_keys("regime_thresholds", self.regime_thresholds, REGIMES)


@dataclass(frozen=True, kw_only=True, slots=True)
class SelectionConfig(_Checked):
    """SHAP feature selection."""

    n_selected: int = field(metadata=POSITIVE)
    folds: int = field(metadata=POSITIVE)
    model: Literal["lightgbm"]
    seed: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class DriftConfig(_Checked):
    """Drift detection thresholds."""

    psi_threshold: float = field(metadata=POSITIVE)
    drift_share: float = field(metadata=UNIT)
    reference_bars: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvConfig(_Checked):
    """Training environment: position limit, costs (USD, ticks), reward scale, episodes."""

    max_contracts: int = field(metadata=POSITIVE)
    commission_per_side: float = field(metadata=NON_NEGATIVE)
    slippage_ticks: float = field(metadata=NON_NEGATIVE)
    default_spread_ticks: float = field(metadata=NON_NEGATIVE)
    reward_scale: float = field(metadata=POSITIVE)
    episode_bars: int = field(metadata=POSITIVE)
    initial_equity: float = field(metadata=POSITIVE)



@dataclass(frozen=True, kw_only=True, slots=True)
class WalkForwardConfig(_Checked):
    """Walk-forward splits (purge + embargo, López de Prado, 2018, ch. 7), in bars."""

    scheme: Literal["rolling", "expanding"]
    folds: int = field(metadata=POSITIVE)
    train_bars: int = field(metadata=POSITIVE)
    validation_bars: int = field(metadata=POSITIVE)
    purge_bars: int = field(metadata=NON_NEGATIVE)
    embargo_bars: int = field(metadata=NON_NEGATIVE)
    holdout_bars: int = field(metadata=POSITIVE)
    seed: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnsembleConfig(_Checked):
    """Ensemble vote: prior weight per agent and the confidence needed to act."""

    prior_weights: dict[str, float] = field(metadata=NON_NEGATIVE)
    confidence_threshold: float = field(metadata=PROBABILITY)

    def _cross_checks(self) -> list[str]:
        out: list[str] = []
        unknown = sorted(set(self.prior_weights) - set(AGENT_NAMES))
        if unknown:
            out.append(f"prior_weights: unknown agents {unknown}; known: {', '.join(AGENT_NAMES)}")
        total = sum(self.prior_weights.values())
        if abs(total - 1.0) > 1e-9:
            out.append(f"prior_weights: weights sum to {total:.12g}, expected 1; rescale them")
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class GateConfig(_Checked):
    """Promotion gate a candidate bundle must pass before it gets the canary alias."""

    sharpe_margin: float
    min_deflated_sharpe: float = field(metadata=PROBABILITY)
    max_drawdown: float = field(metadata=UNIT)
    max_cvar: float = field(metadata=POSITIVE)
    auto_canary: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskConfig(_Checked):
    """Risk defaults shared by the backtest and the executor (fractions of equity, ATRs, R).

    Sizing reductions, leverage cuts, exits and circuit breakers follow reference.md "Position
    management" and "Monitoring and alerts"; docs/risk.md maps every key to its rule.
    """

    # the circuit breakers of mia.risk.breakers, the keys of ``breaker_actions``
    BREAKERS: ClassVar[tuple[str, ...]] = (
        "loss", "volatility", "latency", "data_quality", "stale_feed",
    )

    risk_per_trade: float = field(metadata=UNIT)
    max_leverage: dict[str, float] = field(metadata=POSITIVE)
    stop_atr: float = field(metadata=POSITIVE)
    trail_atr: float = field(metadata=POSITIVE)
    wide_stop_atr: float = field(metadata=POSITIVE)
    take_profit_r: tuple[float, ...] = field(metadata=POSITIVE)
    max_contracts: int = field(metadata=POSITIVE)
    daily_loss_limit: float = field(metadata=UNIT)
    max_drawdown: float = field(metadata=UNIT)
    # sizing: reduced risk per trade when volatility or flow run hot
    hot_atr_ratio: float = field(metadata=POSITIVE)
    hot_atr_risk: float = field(metadata=UNIT)
    hot_flow_imbalance: float = field(metadata=UNIT)
    hot_flow_aggressiveness: float = field(metadata=UNIT)
    hot_flow_risk: float = field(metadata=UNIT)
    hot_skew: float
    hot_skew_risk: float = field(metadata=UNIT)
    # leverage cut and the regime used when none is confirmed
    cut_leverage: float = field(metadata=POSITIVE)
    cut_vix_es_correlation: float = field(metadata=UNIT)
    cut_cvar_loss: float = field(metadata=POSITIVE)
    # the CVaR the cut reads: of the book's last closed trades (mia.risk.cvar.TradeRecord)
    cvar_trades: int = field(metadata=POSITIVE)
    cvar_alpha: float = field(metadata=UNIT)
    cvar_min_trades: int = field(metadata=POSITIVE)
    cut_bid_ask_imbalance: float = field(metadata=UNIT)
    fallback_regime: Regime
    # stops and take profit
    wide_stop_iv_term: float
    trend_adx: float = field(metadata={"bound": Bound(lo=0.0, hi=100.0)})
    take_profit_fractions: tuple[float, ...] = field(metadata=UNIT)
    early_take_profit_imbalance: float = field(metadata=UNIT)
    # exits
    exit_adx: float = field(metadata={"bound": Bound(lo=0.0, hi=100.0)})
    exit_spoofing: float = field(metadata=NON_NEGATIVE)
    exit_reversed_imbalance: float = field(metadata=UNIT)
    exit_opposite_aggressiveness: float = field(metadata=UNIT)
    exit_news_impact: float = field(metadata=NON_NEGATIVE)
    # circuit breakers
    loss_breaker: float = field(metadata=UNIT)
    volatility_breaker_atr: float = field(metadata=POSITIVE)
    latency_breaker_ms: float = field(metadata=POSITIVE)
    latency_breaches: int = field(metadata=POSITIVE)
    data_fault_limit: int = field(metadata=POSITIVE)
    stale_feed_seconds: float = field(metadata=POSITIVE)
    breaker_cooldown_bars: int = field(metadata=POSITIVE)
    breaker_actions: dict[str, Literal["reducing", "halted"]]

    def _cross_checks(self) -> list[str]:
        out = _exact_keys("max_leverage", self.max_leverage, REGIMES)
        out += _exact_keys("breaker_actions", self.breaker_actions, self.BREAKERS)
        if self.wide_stop_atr < self.stop_atr:
            out.append(f"wide_stop_atr: {self.wide_stop_atr} is below stop_atr {self.stop_atr}")
        if not self.take_profit_r or not _increasing(self.take_profit_r):
            out.append(f"take_profit_r: need increasing levels; got {list(self.take_profit_r)}")
        if len(self.take_profit_fractions) != len(self.take_profit_r):
            out.append(f"take_profit_fractions: need one share per take_profit_r level "
                       f"({len(self.take_profit_r)}); got {list(self.take_profit_fractions)}")
        if sum(self.take_profit_fractions) > 1.0 + 1e-9:
            out.append(f"take_profit_fractions: shares sum to {sum(self.take_profit_fractions):g}"
                       "; at most 1 (the rest rides the stop)")
        for key in ("hot_atr_risk", "hot_flow_risk", "hot_skew_risk"):
            if getattr(self, key) > self.risk_per_trade:
                out.append(f"{key}: {getattr(self, key)} is above risk_per_trade "
                           f"{self.risk_per_trade}; a reduction must not raise the risk")
        if self.loss_breaker >= self.daily_loss_limit:
            out.append(f"loss_breaker: {self.loss_breaker} must be below daily_loss_limit "
                       f"{self.daily_loss_limit} (the breaker reduces before the limit halts)")
        if self.cvar_min_trades > self.cvar_trades:
            out.append(f"cvar_min_trades: {self.cvar_min_trades} is above cvar_trades "
                       f"{self.cvar_trades} (the window); the CVaR would never be measured")
        if not self.cvar_alpha < 1.0:
            out.append(f"cvar_alpha: {self.cvar_alpha} must be below 1 (0.95: the mean of the "
                       "worst 5 % of trades)")
        if self.exit_adx > self.trend_adx:
            out.append(f"exit_adx: {self.exit_adx} is above trend_adx {self.trend_adx}; a "
                       "confirmed trend would exit at once")
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutorConfig(_Checked):
    """Live executor: canary schedule, polling and snapshot cadence (seconds), metrics port."""

    canary_share: float = field(metadata=UNIT)
    canary_steps: tuple[float, ...] = field(metadata=UNIT)
    poll_seconds: float = field(metadata=POSITIVE)
    snapshot_seconds: float = field(metadata=POSITIVE)
    snapshots_kept: int = field(metadata=POSITIVE)
    metrics_host: str
    metrics_port: int = field(metadata={"bound": Bound(lo=1, hi=65535)})

    def _cross_checks(self) -> list[str]:
        if not self.canary_steps or not _increasing(self.canary_steps):
            return [f"canary_steps: need increasing shares in (0, 1]; "
                    f"got {list(self.canary_steps)}"]
        return []


@dataclass(frozen=True, kw_only=True, slots=True)
class BackupConfig(_Checked):
    """S3 backups of journal, snapshots and checkpoints (minutes, days)."""

    bucket: str
    prefix: str
    upload_minutes: int = field(metadata=POSITIVE)
    checkpoint_minutes: int = field(metadata=POSITIVE)
    checkpoints_kept: int = field(metadata=POSITIVE)
    retention_days: int = field(metadata=POSITIVE)

    def _cross_checks(self) -> list[str]:
        return [] if self.bucket else ["bucket: must not be empty"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryReviewConfig(_Checked):
    """The daily canary review (``mia.pipelines.canary_review``): when the canary's share steps
    up (``executor.canary_steps``), when it is promoted, and what rolls it back.

    Days are CME trade dates the executor traded at the current share; trades are the canary
    book's round trips in that time (reference.md "Deployment, canary, rollback").
    """

    # risk holds the canary book can engage (mia.risk): limits, breakers, the kill switch
    CAUSES: ClassVar[tuple[str, ...]] = (
        "limit.daily_loss", "limit.max_drawdown", "kill_switch",
        *(f"breaker.{b}" for b in RiskConfig.BREAKERS),
    )

    journal: str
    step_days: int = field(metadata=POSITIVE)
    promote_days: int = field(metadata=POSITIVE)
    min_trades: int = field(metadata=NON_NEGATIVE)
    max_drawdown: float = field(metadata=UNIT)
    underperformance: float = field(metadata=NON_NEGATIVE)
    max_error_rate: float = field(metadata=PROBABILITY)
    min_bars: int = field(metadata=POSITIVE)
    rollback_causes: tuple[str, ...]

    def _cross_checks(self) -> list[str]:
        out = [] if self.journal.strip() else ["journal: must name the executor's journal file"]
        unknown = [c for c in self.rollback_causes if c not in self.CAUSES]
        if unknown:
            out.append(f"rollback_causes: {unknown} unknown; use some of {', '.join(self.CAUSES)}")
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Params(_Checked):
    """Everything in ``params.yaml``, one field per top-level section."""

    data: DataConfig
    features: FeaturesConfig
    selection: SelectionConfig
    drift: DriftConfig
    env: EnvConfig
    agents: AgentsConfig
    walk_forward: WalkForwardConfig
    ensemble: EnsembleConfig
    gate: GateConfig
    risk: RiskConfig
    executor: ExecutorConfig
    backup: BackupConfig
    canary_review: CanaryReviewConfig

    def _cross_checks(self) -> list[str]:
        out: list[str] = []
        horizon = self.features.label_horizon
        if self.walk_forward.purge_bars < horizon:
            # labels look `label_horizon` bars ahead: a shorter purge leaks validation into train
            out.append(f"walk_forward.purge_bars: {self.walk_forward.purge_bars} is below "
                       f"features.label_horizon {horizon}; set purge_bars >= {horizon}")
        if self.risk.max_contracts > self.env.max_contracts:
            # the agents observe position / env.max_contracts: a larger live position is a state
            # they never saw in training
            out.append(f"risk.max_contracts: {self.risk.max_contracts} exceeds env.max_contracts "
                       f"{self.env.max_contracts} (the largest position the agents trained "
                       "with); lower it or retrain with a larger env.max_contracts")
        if self.selection.n_selected > self.features.n_features_target:
            out.append(f"selection.n_selected: {self.selection.n_selected} exceeds "
                       f"features.n_features_target {self.features.n_features_target}")
        return out

