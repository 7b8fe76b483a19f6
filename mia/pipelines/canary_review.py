"""Stage ``canary_review``: the daily review of each symbol's canary, from the executor's journal.

Per symbol, for the version holding ``mia-<SYMBOL>@canary``:

1. its *current step* starts at the newest audit entry that gave it its share (``set_canary`` /
   ``set_share``, docs/registry.md) and ends at the review's instant (the CME session close);
2. the executor's journal (``<MIA_HOME>/<canary_review.journal>``, read-only,
   :mod:`mia.pipelines.journal_reader`) gives both books over that step: PnL, drawdown, round
   trips, failed canary decisions, risk holds, the executor's own rollbacks;
3. :func:`mia.registry.canary.review_canary` decides: hold, step the share up
   (``executor.canary_steps``), roll back (clear the canary), or promote;
4. the move is made by :mod:`mia.registry.aliases` exactly as ``mia registry set-share``,
   ``clear-canary`` and ``promote`` make it: planned, written in safe order, audited on every
   version it touches (who: ``mia_canary_review``; why: ``canary review <day>: <reasons>``).

Idempotent per day: the day's key is in the move's reason, so a rerun of the same day finds its
move in the registry (``mia/last_move`` or the canary's ``audit/history``) and moves nothing
again; a move the first run left pending is finished with its original who / when / why. A hold
moves nothing, and a rerun judges the same window the same way. Each symbol's verdict and
evidence go to ``<out_dir>/<SYMBOL>/review.json`` (overwritten by a rerun).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mia.config import Config
from mia.errors import OperationalError
from mia.pipelines._stage import write_atomic
from mia.registry import audit
from mia.registry.canary import CanaryDecision, CanaryEvidence, review_canary

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mia.clock import Clock
    from mia.registry.handle import ModelHandle

REVIEWER = "mia_canary_review"  # who the audit entries name: this DAG
ERROR_CODE = "canary_decision_failed"  # the executor's alert for a canary decision that failed


@dataclass(frozen=True, kw_only=True, slots=True)
class SymbolReview:
    """The review of one symbol's canary.

    :param symbol: the symbol. :param model: ``mia-<SYMBOL>``.
    :param version: the canary's version reviewed, or ``None`` (nothing to review).
    :param action: ``hold``, ``step``, ``rollback``, ``promote``, or ``none``.
    :param moved: whether this run moved an alias or a share (``False`` on a rerun).
    :param message: one line for the log: the decision and the registry's answer.
    :param reasons: why (every rollback trigger, what a hold waits for, the checks passed).
    :param report: ``review.json`` of this review, or ``None`` when there was nothing to review.
    """

    symbol: str
    model: str
    version: str | None
    action: str
    moved: bool
    message: str
    reasons: tuple[str, ...]
    report: Path | None

    def to_xcom(self) -> dict[str, Any]:
        """:return: the task's XCom value: verdict, report URI, the version's MLflow link."""
        out: dict[str, Any] = {"symbol": self.symbol, "version": self.version,
                               "action": self.action, "moved": self.moved,
                               "message": self.message, "reasons": list(self.reasons),
                               "report": self.report.as_uri() if self.report else None}
        if self.version is not None:  # the plugin's "MLflow model version" button
            out["model_version"] = {"name": self.model, "version": self.version}
        if self.action == "rollback":
            out["alert"] = self.alert()
        return out

    def alert(self) -> str:
        """:return: the alert line of a rollback (the review notifies; a person post-mortems)."""
        return (f"ALERT canary rollback {self.model} v{self.version}: {'; '.join(self.reasons)}"
                f"; report {self.report}")


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryReviewResult:
    """One day's reviews; ``rollbacks`` lists the symbols whose canary was rolled back."""

    day: str
    as_of: datetime
    symbols: dict[str, SymbolReview]

    @property
    def rollbacks(self) -> tuple[str, ...]:
        """Symbols whose canary this day's review rolled back."""
        return tuple(s for s, r in self.symbols.items() if r.action == "rollback")


def reason_prefix(day: str) -> str:
    """:param day: the review's partition key. :return: how its moves' reasons start."""
    return f"canary review {day}: "


def _why(day: str, text: str) -> str:
    # audit.check_reason allows MAX_REASON characters; review.json keeps the whole text
    full = reason_prefix(day) + text
    return full if len(full) <= audit.MAX_REASON else full[: audit.MAX_REASON - 1] + "…"


def _step_start(m: ModelHandle, version: str, tags: dict[str, str]) -> tuple[datetime, float]:
    # the newest audit entry that set the version's share; it must agree with the share tag
    try:
        share = float(tags[audit.TAG_SHARE])
    except (KeyError, ValueError):
        raise OperationalError(f"{m.name} v{version} is the canary without a valid "
                               f"{audit.TAG_SHARE} tag; set one with `mia registry set-share S "
                               "--reason …`") from None
    for e in reversed(audit.history(tags, f"{m.name} v{version}")):
        change = next((c for c in e.changes if c.startswith("share ")), None)
        if change is None:
            continue
        if abs(float(change.split()[-1]) - share) > 1e-9:
            break
        return datetime.fromisoformat(e.at), share
    raise OperationalError(f"{m.name} v{version}: no audit entry gives it share {share:g} (set "
                           "outside mia?); `mia registry set-share "
                           f"{share:g} --reason …` records it and starts the step now")


def _finish_or_refuse(cfg: Config, symbol: str, m: ModelHandle, day: str,
                      model_tags: dict[str, str], **who: Any) -> SymbolReview | None:
    from mia.registry import aliases

    text = model_tags.get(audit.MODEL_PENDING)
    if not text:
        return None
    plan = audit.Plan.from_json(text, m.name)
    if not plan.reason.startswith(reason_prefix(day)):
        raise OperationalError(f"{m.name}: an interrupted {plan.action} (started {plan.at} by "
                               f"{plan.by}: {plan.reason}) must finish first; `mia registry "
                               "status` shows it, rerunning that command finishes it")
    if plan.action == "set_share":
        done = aliases.set_share(cfg, symbol, float(plan.request["share"]), reason=plan.reason,
                                 **who)
    elif plan.action == "promote":
        done = aliases.promote(cfg, symbol, reason=plan.reason, **who)
    else:
        done = aliases.clear_canary(cfg, symbol, reason=plan.reason, **who)
    action = {"set_share": "step", "promote": "promote"}.get(plan.action, "rollback")
    version = next(iter(plan.changes), None)
    return SymbolReview(symbol=symbol, model=m.name, version=version, action=action, moved=True,
                        message=done.message, reasons=(plan.reason,), report=None)


def _already(m: ModelHandle, symbol: str, day: str, model_tags: dict[str, str],
             canary: str | None, tags: dict[str, str]) -> SymbolReview | None:
    prefix = reason_prefix(day)
    last = audit.last_move(model_tags, m.name)
    entries = audit.history(tags, f"{m.name} v{canary}") if canary else []
    done = [(e.action, e.at, e.reason, canary) for e in entries if e.reason.startswith(prefix)]
    if last is not None and str(last["reason"]).startswith(prefix):
        done.append((last["action"], last["at"], last["reason"], None))
    if not done:
        return None
    action, at, why, version = done[-1]
    kind = {"set_share": "step", "promote": "promote"}.get(action, "rollback")
    return SymbolReview(symbol=symbol, model=m.name, version=version, action=kind, moved=False,
                        message=f"{m.name}: already reviewed {day}: {action} at {at}",
                        reasons=(why,), report=None)


def _apply(cfg: Config, symbol: str, d: CanaryDecision, day: str,
           **who: Any) -> tuple[bool, str]:
    from mia.registry import aliases

    why = _why(day, d.reason)
    if d.action == "step" and d.to_share is not None:
        r = aliases.set_share(cfg, symbol, d.to_share, reason=why, **who)
    elif d.action == "rollback":
        r = aliases.clear_canary(cfg, symbol, reason=why, **who)
    elif d.action == "promote":
        r = aliases.promote(cfg, symbol, reason=why, **who)
    else:
        return False, "nothing moved"
    return r.changed, r.message


def review_symbol(cfg: Config, symbol: str, *, day: str, as_of: datetime, out_dir: Path,
                  client: MlflowClient | None = None, clock: Clock | None = None,
                  user: str | None = None) -> SymbolReview:
    """Review one symbol's canary (module docstring) and make the move it calls for.

    :param cfg: configuration (``canary_review``, ``executor.canary_steps``, ``env``).
    :param symbol: ``ES`` or ``MNQ``.
    :param day: the review's partition key (its moves carry it: a rerun moves nothing twice).
    :param as_of: the instant the review stands for (tz-aware): the step's evidence ends there.
    :param out_dir: the day's report folder (``<SYMBOL>/review.json`` inside).
    :param client: an ``MlflowClient``; default the configured one.
    :param clock: time of the audit entries; default the system clock.
    :param user: who moves (default :data:`REVIEWER`).
    :raises OperationalError: a canary without a share or an audited step, a foreign pending
        move, a missing or unreadable journal.
    :raises TemporaryError: MLflow unreachable (the move stays pending; a rerun finishes it).
    """
    from mia.data.contracts import contract
    from mia.pipelines.journal_reader import window
    from mia.registry.handle import ModelHandle

    if as_of.tzinfo is None:
        raise OperationalError(f"canary review: naive as_of {as_of.isoformat()}; pass UTC")
    m = ModelHandle(cfg, symbol, client)
    try:
        al, model_tags = m.read()
    except OperationalError as exc:  # not registered yet: nothing trades, nothing to review
        return SymbolReview(symbol=symbol, model=m.name, version=None, action="none",
                            moved=False, message=str(exc), reasons=(), report=None)
    who: dict[str, Any] = {"client": m.client, "clock": clock, "user": user or REVIEWER}
    finished = _finish_or_refuse(cfg, symbol, m, day, model_tags, **who)
    if finished is not None:
        return finished
    canary = al["canary"]
    tags = m.tags(canary) if canary else {}
    seen = _already(m, symbol, day, model_tags, canary, tags)
    if seen is not None:
        return seen
    if canary is None:
        return SymbolReview(symbol=symbol, model=m.name, version=None, action="none",
                            moved=False, message=f"{m.name}: no canary to review",
                            reasons=(), report=None)
    since, share = _step_start(m, canary, tags)
    if since >= as_of:  # a backfilled day older than the step: nothing of the step to judge
        why = (f"the step to share {share:g} began {since.isoformat()}, after this review's "
               f"instant {as_of.isoformat()}",)
        return SymbolReview(symbol=symbol, model=m.name, version=canary, action="hold",
                            moved=False, message=f"{m.name}: canary review {day} holds "
                                                 f"v{canary}: {why[0]}",
                            reasons=why, report=None)
    p, rules = cfg.params, cfg.params.canary_review
    equity = p.env.initial_equity  # the executor's account capital (executor.app)
    w = window(cfg.endpoints.mia_home / rules.journal, symbol, since=since, until=as_of,
               capital={"canary": equity * share, "production": equity * (1.0 - share)},
               multiplier=contract(symbol).multiplier)
    evidence = CanaryEvidence(days=len(w.trade_dates), bars=w.bars,
                              errors=w.errors.get(ERROR_CODE, 0), canary=w.books["canary"],
                              production=w.books["production"],
                              limit_events=tuple(h for b, h in w.holds if b == "canary"
                                                 and h.split(":")[0] in rules.rollback_causes),
                              executor_rollbacks=w.rollbacks)
    decision = review_canary(evidence, share=share, steps=p.executor.canary_steps, rules=rules)
    report = Path(out_dir) / symbol / "review.json"
    write_atomic(report, json.dumps({
        "symbol": symbol, "model": m.name, "version": canary, "day": day,
        "since": since.isoformat(), "until": as_of.isoformat(), "journal_id": w.journal_id,
        "records": [w.first_seq, w.last_seq], "trade_dates": [d.isoformat() for d in
                                                              w.trade_dates],
        "decision": asdict(decision), "evidence": asdict(evidence)}, indent=1,
        default=str) + "\n")
    moved, answer = _apply(cfg, symbol, decision, day, **who)
    head = {"hold": f"holds v{canary} at share {share:g}",
            "step": f"steps v{canary} from {share:g} to {decision.to_share}",
            "rollback": f"rolls v{canary} back", "promote": f"promotes v{canary}"}[decision.action]
    return SymbolReview(symbol=symbol, model=m.name, version=canary, action=decision.action,
                        moved=moved,
                        message=f"{m.name}: canary review {day} {head}: {decision.reason}\n"
                                f"{answer}",
                        reasons=decision.reasons, report=report)


def run(cfg: Config, *, day: str, as_of: datetime, out_dir: Path,
        symbols: Sequence[str] | None = None, client: MlflowClient | None = None,
        clock: Clock | None = None, user: str | None = None) -> CanaryReviewResult:
    """Review every symbol's canary for ``day`` (module docstring).

    :param cfg: configuration.
    :param day: the partition key, e.g. the CME trade date ``2024-01-26``.
    :param as_of: the instant the review stands for (the session close), tz-aware.
    :param out_dir: the day's report folder, overwritten by a rerun.
    :param symbols: override of ``data.symbols``.
    :param client: an ``MlflowClient``. :param clock: audit time. :param user: who moves.
    """
    return CanaryReviewResult(day=day, as_of=as_of, symbols={
        s: review_symbol(cfg, s, day=day, as_of=as_of, out_dir=out_dir, client=client,
                         clock=clock, user=user) for s in symbols or cfg.params.data.symbols})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mia.pipelines.canary_review [--day D] [--as-of T] [--symbol S]``."""
    from mia.clock import SystemClock
    from mia.pipelines._stage import stage_config
    from mia.pipelines.journal_reader import to_ns, trade_date

    def add(parser: Any) -> None:
        parser.add_argument("--as-of", type=datetime.fromisoformat, default=None,
                            help="the review's instant, ISO 8601 with a zone (default: now)")
        parser.add_argument("--day", default=None, help="the review's key (default: the CME "
                            "trade date of --as-of, as the DAG keys it); a rerun with the same "
                            "key moves nothing twice")
        parser.add_argument("--symbol", action="append", choices=["ES", "MNQ"],
                            help="repeat for several; default: data.symbols")

    cfg, args = stage_config("canary_review", __doc__, argv, add)
    as_of = args.as_of or SystemClock().now()
    if as_of.tzinfo is None:
        raise OperationalError(f"--as-of {as_of.isoformat()} has no zone; add Z or +00:00")
    day = args.day or trade_date(to_ns(as_of)).isoformat()
    out = cfg.endpoints.mia_home / "runs" / "mia_canary_review" / day
    for r in run(cfg, day=day, as_of=as_of, out_dir=out, symbols=args.symbol).symbols.values():
        print(r.message)
    return 0


if __name__ == "__main__":
    from mia.exits import run_guarded

    raise SystemExit(run_guarded(main))
