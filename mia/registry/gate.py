"""The promotion gate: may a candidate bundle become the canary? Pure code, no MLflow.

A candidate passes when every rule holds (``params.yaml: gate``):

1. **Out-of-sample Sharpe** beats the reference by ``sharpe_margin``:
   ``candidate.sharpe - reference >= sharpe_margin``. The reference is production's Sharpe, or,
   when nothing is in production yet, the best baseline's (flat, buy-and-hold, SMA crossover …
   scored on the same folds and costs; a NaN baseline Sharpe, e.g. flat's zero-variance returns,
   is not a reference).
2. **Deflated Sharpe** ``>= min_deflated_sharpe``. The DSR is a probability (Bailey & López de
   Prado, 2014, *The Deflated Sharpe Ratio*): the chance the Sharpe is above what the best of
   the unskilled trials would show, so a high margin alone cannot pass a lucky search.
3. **Max drawdown** ``<= max_drawdown`` and 4. **CVaR 95 %** ``<= max_cvar``, both positive
   fractions of equity (``mia.backtest.metrics.PerformanceSummary`` conventions).
5. **No failed data validation** on the data the candidate was trained and scored on.

Every failed rule is one reason with its numbers; a NaN (missing or not computable) metric fails
its rule, never passes it. The verdict is stored on the model version by
:func:`mia.registry.models.apply_gate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from mia.config import GateConfig
from mia.errors import OperationalError

GATE_NAMESPACE = "holdout"  # the bundle evaluation over the holdout is the number the gate uses


@dataclass(frozen=True, kw_only=True, slots=True)
class GateMetrics:
    """The out-of-sample metrics the gate reads (annualised Sharpe; fractions of equity).

    :param sharpe: annualised out-of-sample Sharpe ratio.
    :param deflated_sharpe: deflated Sharpe ratio, a probability in [0, 1].
    :param max_drawdown: deepest fall from peak equity, positive fraction (0.08 = 8 %).
    :param cvar_95: CVaR at 95 % of per-bar losses, positive fraction of equity.
    """

    sharpe: float
    deflated_sharpe: float
    max_drawdown: float
    cvar_95: float

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, object],
                     namespace: str = GATE_NAMESPACE) -> GateMetrics:
        """Read ``<namespace>/<field>`` keys (MLflow metrics or version tags); missing -> NaN.

        :param metrics: flat ``{"holdout/sharpe": 1.3, …}`` (floats or their text).
        :param namespace: metric namespace, e.g. ``holdout`` or ``wf``.
        :return: the record; a missing or unparsable value is NaN, which fails its rule.
        """
        values: dict[str, float] = {}
        for f in fields(cls):
            raw = metrics.get(f"{namespace}/{f.name}")
            try:
                values[f.name] = float(raw) if isinstance(raw, int | float | str) else math.nan
            except ValueError:
                values[f.name] = math.nan
        return cls(**values)


@dataclass(frozen=True, kw_only=True, slots=True)
class GateVerdict:
    """The gate's decision.

    :param passed: every rule held.
    :param reasons: one line per failed rule, with the numbers; empty when ``passed``.
    :param checks: one line per rule, passed or not, for the record.
    :param reference: what the Sharpe was compared with (``production`` or ``baseline <name>``).
    """

    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[str, ...]
    reference: str


def evaluate_gate(candidate: GateMetrics, production: GateMetrics | None,
                  baselines: Mapping[str, GateMetrics], cfg: GateConfig,
                  validation_ok: bool) -> GateVerdict:
    """Decide whether ``candidate`` may become the canary.

    :param candidate: the candidate's out-of-sample metrics.
    :param production: the production version's metrics, or ``None`` when there is none.
    :param baselines: baseline name -> metrics on the same folds; the reference without production.
    :param cfg: the ``gate`` section of ``params.yaml``.
    :param validation_ok: ``False`` if any data validation on the candidate's data failed.
    :return: the verdict with a reason per failed rule.
    :raises OperationalError: if there is neither a production nor any baseline to compare with.
    """
    if production is None and not baselines:
        raise OperationalError("gate: no production version and no baselines to compare the "
                               "candidate with; pass the walk-forward baselines")
    checks: list[tuple[bool, str]] = [_sharpe_rule(candidate, production, baselines, cfg)]
    checks.append(_rule("deflated Sharpe", candidate.deflated_sharpe, ">=",
                        cfg.min_deflated_sharpe, probability=True))
    checks.append(_rule("max drawdown", candidate.max_drawdown, "<=", cfg.max_drawdown))
    checks.append(_rule("CVaR 95%", candidate.cvar_95, "<=", cfg.max_cvar))
    checks.append((validation_ok, "data validation passed" if validation_ok else
                   "data validation failed on the candidate's data; fix the data and retrain"))
    reference = "production" if production is not None else f"baseline {_best(baselines)[0]}"
    return GateVerdict(passed=all(ok for ok, _ in checks),
                       reasons=tuple(text for ok, text in checks if not ok),
                       checks=tuple(("pass: " if ok else "FAIL: ") + text for ok, text in checks),
                       reference=reference)


def _best(baselines: Mapping[str, GateMetrics]) -> tuple[str, float]:
    finite = {n: m.sharpe for n, m in baselines.items() if math.isfinite(m.sharpe)}
    if not finite:
        return "none", math.nan
    name = max(finite, key=lambda n: finite[n])
    return name, finite[name]


def _sharpe_rule(candidate: GateMetrics, production: GateMetrics | None,
                 baselines: Mapping[str, GateMetrics], cfg: GateConfig) -> tuple[bool, str]:
    if production is not None:
        label, ref = "production", production.sharpe
    else:
        name, ref = _best(baselines)
        label = f"best baseline ({name})"
    need = ref + cfg.sharpe_margin
    if math.isnan(candidate.sharpe):
        return False, "out-of-sample Sharpe is NaN (missing or not computable)"
    if math.isnan(ref):
        why = ("production's Sharpe is NaN (its version carries no finite metric); "
               "re-evaluate production" if production is not None else
               f"no baseline has a finite Sharpe ({', '.join(sorted(baselines))})")
        return False, f"out-of-sample Sharpe {candidate.sharpe:.3f} has no reference: {why}"
    ok = candidate.sharpe >= need
    rel = "beats" if ok else "does not beat"
    return ok, (f"out-of-sample Sharpe {candidate.sharpe:.3f} {rel} {label} {ref:.3f} "
                f"+ margin {cfg.sharpe_margin:g} = {need:.3f}")


def _rule(name: str, value: float, op: str, limit: float,
          probability: bool = False) -> tuple[bool, str]:
    if math.isnan(value):
        return False, f"{name} is NaN (missing or not computable)"
    if probability and not 0.0 <= value <= 1.0:
        return False, f"{name} {value:.3f} is not a probability in [0, 1]; check the DSR inputs"
    if not probability and value < 0:
        # drawdown and CVaR are positive loss fractions; a negative one is a sign-convention bug
        return False, f"{name} {value:.4f} is negative; pass it as a positive fraction of equity"
    ok = value >= limit if op == ">=" else value <= limit
    return ok, f"{name} {value:.4f} {op if ok else _negate(op)} limit {limit:g}"


def _negate(op: str) -> str:
    return {">=": "<", "<=": ">"}[op]
