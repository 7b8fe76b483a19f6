"""mia_canary_review: step up, hold, roll back or promote each canary, daily (issue 6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from _retry import RETRY
from airflow.sdk import (
    dag,
    get_current_context,
    task,
)

# the plugin's timetable: the one import from outside airflow.sdk / pendulum / the stdlib, since
# a custom schedule can only be named by its class (Airflow loads plugins/ onto sys.path)
from cme_timetable import CMECloseTimetable

DOC = """
### Review the canaries

After every CME trading day's close (`CMECloseTimetable`, +30 min), per symbol, the version
holding `mia-<SYMBOL>@canary` is judged on its **current step** (since the audit entry that
gave it its share) from the executor's journal (`<MIA_HOME>/<canary_review.journal>`, read
only): canary and production books' PnL and return on capital, the canary's drawdown, round
trips, failed decisions, risk holds, the executor's own rollbacks (`mia.pipelines.canary_review`).

- **roll back** (the canary alias cleared; production keeps all the capital) when it
  under-performs production by more than `canary_review.underperformance`, falls more than
  `max_drawdown`, fails too many decisions, or a risk hold of `rollback_causes` engaged on its
  book; `alert_rollbacks` logs an `ALERT canary rollback …` line;
- **hold** until it traded `step_days` trade dates (`promote_days` at the last step) and
  `min_trades` round trips at its share;
- **step** the share to the next of `executor.canary_steps` (5 → 15 → 50 → 100 %), or, at the
  last step, **promote** it (canary → production, production → previous-production).

Moves are those of `mia registry set-share / clear-canary / promote`: planned, written in a
safe order and audited on the versions' tags (by `mia_canary_review`, reason
`canary review <trade date>: …`). A rerun of the same day finds its move in the registry and
moves nothing twice; an interrupted move is finished. Each verdict with its evidence goes to
`<MIA_HOME>/runs/mia_canary_review/<trade date>/<SYMBOL>/review.json`.
"""

# a mapped task is named in the UI by its symbol and takes doc_md explicitly (Airflow turns a
# docstring into doc_md for unmapped tasks only)
MAP_NAME = "{{ map_name }}"


@dag(
    dag_id="mia_canary_review",
    schedule=CMECloseTimetable(settle_minutes=30),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two reviews of the registry at once could both step a share
    dagrun_timeout=timedelta(hours=1),
    tags=["mia", "ops", "canary"],
    doc_md=DOC,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2),
                  "retry_exponential_backoff": 2.0, "retry_policy": RETRY},
)
def mia_canary_review() -> None:
    @task
    def symbols() -> list[str]:
        """The symbols of params.yaml `data.symbols`: one review each."""
        from mia.config import load_config

        return list(load_config().params.data.symbols)

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Judge one symbol's canary on its current step; step, roll back or promote.")
    def review(symbol: str, **context: Any) -> dict[str, Any]:
        from _partition import instant, output_dir, resolve

        from mia.config import load_config
        from mia.pipelines import canary_review

        get_current_context()["map_name"] = symbol  # type: ignore[index]
        cfg, day = load_config(), resolve(context, "trade_date")
        result = canary_review.run(
            cfg, day=day.key, as_of=instant(context), symbols=[symbol],
            out_dir=output_dir(cfg.endpoints.mia_home, "mia_canary_review", day))
        return result.symbols[symbol].to_xcom()

    @task(multiple_outputs=False)
    def alert_rollbacks(reviews: list[dict[str, Any]]) -> dict[str, Any]:
        """Log an `ALERT canary rollback` line per canary the review rolled back."""
        import logging

        rolled = [r for r in reviews if r["action"] == "rollback"]
        for r in rolled:
            logging.getLogger("mia.alerts").error(r["alert"])
        return {"rolled_back": [r["symbol"] for r in rolled],
                "actions": {r["symbol"]: r["action"] for r in reviews}}

    alert_rollbacks(review.expand(symbol=symbols()))


mia_canary_review()
