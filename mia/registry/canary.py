"""The canary review's rules: step the share up, hold, roll back or promote (pure, no MLflow).

Reference.md "Deployment, canary, rollback": a new model trades a small capital share beside
production, the share steps 5 → 15 → 50 → 100 % (``executor.canary_steps``), validated at each
step, and after the last step and an observation period it is promoted. A canary that
under-performs or breaks limits is rolled back with the reason.

:func:`review_canary` judges the evidence of the canary's *current step* (the time since its
version got its share; :mod:`mia.pipelines.canary_review` gathers it from the executor's
journal), in this order:

1. **roll back** when any trigger holds, every one listed in the reason: the executor already
   rolled the canary back (``executor.canary``); a risk hold of ``canary_review.rollback_causes``
   engaged on the canary book (daily loss, drawdown limit, loss breaker); the book's drawdown
   from its peak over ``canary_review.max_drawdown``; failed canary decisions per bar over
   ``max_error_rate`` (after ``min_bars`` bars); after ``min_trades`` round trips, a return on
   capital trailing the benchmark's by more than ``underperformance``. The benchmark is
   production's return on its capital over the same time, or flat (0) when production holds
   no capital (the canary at 100 %);
2. **hold** while the step is young: fewer than ``step_days`` trade dates at this share (or
   ``promote_days`` at the last step), or fewer than ``min_trades`` round trips;
3. **promote** at the last step; **step** to the next share of the schedule otherwise.

This is the daily, slower twin of the executor's per-bar automatic rollback
(``executor.canary.CanaryWatch``): the executor stops a canary at once on a sharp fall; the
review judges a whole step before giving it more capital.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mia.config import CanaryReviewConfig
from mia.errors import OperationalError

Action = Literal["hold", "step", "rollback", "promote"]
_EPS = 1e-9  # shares are tags written with %g: 0.15 read back is 0.15, but compare tolerantly


@dataclass(frozen=True, kw_only=True, slots=True)
class BookStats:
    """One book over the canary's current step.

    :param capital: the book's capital, USD (account capital x its share).
    :param pnl: USD earned over the step, net of costs (fills and fees; positions marked at the
        last price the journal holds).
    :param max_drawdown: largest fall from the book's peak equity, a fraction of that peak.
    :param trades: round trips closed (a position back to flat, or flipped).
    :param position: signed contracts held at the end of the step.
    """

    capital: float
    pnl: float
    max_drawdown: float
    trades: int
    position: int

    @property
    def ret(self) -> float:
        """Return on capital over the step; NaN for a book without capital."""
        return self.pnl / self.capital if self.capital > 0 else math.nan


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryEvidence:
    """What the executor's journal says about the canary's current step.

    :param days: CME trade dates with bars at this share.
    :param bars: bars processed.
    :param errors: canary decisions that failed (``canary_decision_failed`` alerts).
    :param canary: the canary book. :param production: the production book.
    :param limit_events: risk holds engaged on the canary book, ``"<cause>: <why>"``.
    :param executor_rollbacks: why the executor rolled the canary back, if it did.
    """

    days: int
    bars: int
    errors: int
    canary: BookStats
    production: BookStats
    limit_events: tuple[str, ...] = ()
    executor_rollbacks: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryDecision:
    """The review's verdict on one canary.

    :param action: ``hold``, ``step``, ``rollback`` or ``promote``.
    :param share: the canary's share now.
    :param to_share: the share after a step (``None`` otherwise).
    :param reasons: why: the triggers of a rollback, what a hold waits for, the checks a step
        or a promotion passed.
    """

    action: Action
    share: float
    to_share: float | None
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """The reasons as one line (the audit entry's why)."""
        return "; ".join(self.reasons)


def next_share(share: float, steps: Sequence[float]) -> float | None:
    """:param share: the canary's share. :param steps: ``executor.canary_steps``.
    :return: the next step above ``share``, or ``None`` at (or past) the last step."""
    return next((s for s in steps if s > share + _EPS), None)


def _triggers(e: CanaryEvidence, rules: CanaryReviewConfig) -> list[str]:
    out = [f"the executor rolled the canary back: {why}" for why in e.executor_rollbacks]
    out += [f"risk hold on the canary book: {ev}" for ev in e.limit_events]
    if e.canary.max_drawdown > rules.max_drawdown:
        out.append(f"canary drawdown {e.canary.max_drawdown:.2%} > canary_review.max_drawdown "
                   f"{rules.max_drawdown:.2%}")
    if e.bars >= rules.min_bars and e.errors / e.bars > rules.max_error_rate:
        out.append(f"canary decision errors {e.errors}/{e.bars} bars > "
                   f"canary_review.max_error_rate {rules.max_error_rate:.1%}")
    if e.canary.trades >= rules.min_trades and e.canary.capital > 0:
        bench, name = _benchmark(e.production)
        gap = e.canary.ret - bench
        if gap < -rules.underperformance:
            out.append(f"canary return on capital {e.canary.ret:+.2%} trails {name} "
                       f"{bench:+.2%} by {-gap:.2%} over {e.canary.trades} trades "
                       f"(> canary_review.underperformance {rules.underperformance:.2%})")
    return out


def _benchmark(production: BookStats) -> tuple[float, str]:
    # at 100 % production trades nothing: judge the canary against standing aside
    if production.capital > 0:
        return production.ret, "production's"
    return 0.0, "flat (production holds no capital)"


def review_canary(e: CanaryEvidence, *, share: float, steps: Sequence[float],
                  rules: CanaryReviewConfig) -> CanaryDecision:
    """Judge the canary's current step (module docstring for the order of the rules).

    :param e: the evidence of the step.
    :param share: the canary's share (its version's ``canary_share`` tag).
    :param steps: the share schedule, ``executor.canary_steps``.
    :param rules: ``canary_review`` of params.yaml.
    :return: the decision.
    :raises OperationalError: a share outside (0, 1] or evidence that cannot be right.
    """
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise OperationalError(f"canary share {share!r} must be in (0, 1]; fix the canary's "
                               "tag with `mia registry set-share S --reason …`")
    if min(e.days, e.bars, e.errors, e.canary.trades) < 0 or not math.isfinite(e.canary.pnl):
        raise OperationalError(f"canary evidence is not counts and finite PnL: {e}")
    triggers = _triggers(e, rules)
    if triggers:
        return CanaryDecision(action="rollback", share=share, to_share=None,
                              reasons=tuple(triggers))
    target = next_share(share, steps)
    days = rules.step_days if target is not None else rules.promote_days
    waiting = []
    if e.days < days:
        waiting.append(f"{e.days}/{days} trade days at share {share:g}")
    if e.canary.trades < rules.min_trades:
        waiting.append(f"{e.canary.trades}/{rules.min_trades} canary trades at share {share:g}")
    if waiting:
        return CanaryDecision(action="hold", share=share, to_share=None,
                              reasons=tuple(waiting))
    bench, name = _benchmark(e.production)
    passed = (f"{e.days} trade days and {e.canary.trades} trades at share {share:g}",
              f"return on capital {e.canary.ret:+.2%} vs {name} {bench:+.2%}",
              f"drawdown {e.canary.max_drawdown:.2%}, {e.errors} decision errors, no risk hold")
    if target is None:
        return CanaryDecision(action="promote", share=share, to_share=None, reasons=passed)
    return CanaryDecision(action="step", share=share, to_share=target, reasons=passed)
