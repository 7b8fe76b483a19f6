"""mia_retrain: data -> features -> walk-forward -> ensemble -> registered canary (issue 6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from _retry import RETRY
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    Param,
    dag,
    get_current_context,
    task,
)

# the plugin's timetable: the one import from outside airflow.sdk / pendulum / the stdlib, since
# a custom schedule can only be named by its class (Airflow loads plugins/ onto sys.path)
from cme_timetable import CMECloseTimetable

# emitted by mia_drift_watch when the live features drift from the production bundle's reference
# a bare name, no URI scheme: a scheme makes Airflow load every provider's URI handlers (boto3
# among them) at parse time, 0.4 s per DAG file
DRIFT = Asset(name="mia_feature_drift")

DOC = """
### Retrain MIA's policies

Runs after every CME trading day's close (plugin timetable `CMECloseTimetable`: sessions,
holidays, the 17:00-18:00 ET break) **or** when `mia_drift_watch` reports drift (asset
`mia_feature_drift`).

`plan_run` → `ingest` → `validate_raw` (Great Expectations: a failure stops the run and lists
the failed expectations in the task log) → `regimes` → `build_features` → `validate_features`
→ `select_features` (SHAP) → `drift_report` (Evidently) → `start_walk_forward` (MLflow parent run,
per symbol) → `train` (mapped: symbol × agent × fold) → `evaluate_walk_forward` (folds joined,
baselines) → `fit_ensemble` → `package_register` (bundle, holdout, model version, gate: a passing
candidate gets the `canary` alias, a rejection is recorded with its reasons).

Order: the issue lists fit_regimes after build_features; the regime HMM runs *before* the
feature build here because regime probabilities are features (`regime_*`), built by the same
forward filter the executor runs.

Each task calls one `mia.pipelines` stage and returns URIs and MLflow ids (never data); the
"MLflow run" / "MLflow model version" buttons and the run's "MLflow" tab come from the plugin.
Retries: only `TemporaryError` (MLflow or a store briefly unreachable) and network errors
retry; bad data or config fail at once with the fix in the message. A rerun overwrites its
partition's outputs and MLflow runs (mia.pipelines.retrain).

Params: `symbols` (default: every `data.symbols` of params.yaml), `timesteps` (override of each
agent's `total_timesteps`, for quick runs). Config: `$MIA_PARAMS`, `$MIA_HOME`,
`$MLFLOW_TRACKING_URI` (docs/orchestration.md).
"""


# Task conventions: a task returns one small dict (URIs, ids) and multiple_outputs=False keeps it
# one XCom (Airflow would infer one XCom per key from the dict return type); a mapped task is
# named in the UI by what it works on (_name) and takes doc_md explicitly (Airflow turns a
# docstring into doc_md for unmapped tasks only).
MAP_NAME = "{{ map_name }}"


def _name(text: str) -> None:
    get_current_context()["map_name"] = text  # type: ignore[index]


def _cfg() -> Any:
    from mia.config import load_config

    return load_config()


@dag(
    dag_id="mia_retrain",
    schedule=AssetOrTimeSchedule(timetable=CMECloseTimetable(settle_minutes=15), assets=[DRIFT]),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # the runs share MIA_HOME's stores
    dagrun_timeout=timedelta(hours=12),
    tags=["mia", "retrain"],
    doc_md=DOC,
    params={
        "symbols": Param(None, type=["null", "array"], items={"type": "string"},
                         description="symbols to train; null = all of data.symbols"),
        "timesteps": Param(None, type=["null", "integer"], minimum=1,
                           description="override of every agent's total_timesteps"),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1),
                  "retry_exponential_backoff": 2.0, "retry_policy": RETRY},
)
def mia_retrain() -> None:
    @task
    def plan_run(**context: Any) -> list[str]:
        """Check the run's params against params.yaml before any work; return the symbols."""
        from mia.agents import AGENTS
        from mia.errors import ConfigError
        from mia.training.walk_forward import agent_config

        cfg, wanted = _cfg(), context["params"]["symbols"]
        for agent in AGENTS:  # a bad timesteps override fails here, not after the data stages
            agent_config(cfg.params, agent, context["params"]["timesteps"])
        symbols = list(wanted or cfg.params.data.symbols)
        unknown = sorted(set(symbols) - set(cfg.params.data.symbols))
        if unknown or not symbols:
            raise ConfigError(f"params.symbols {symbols}: {unknown or 'none'} not in data.symbols "
                              f"{list(cfg.params.data.symbols)} of {cfg.params_path}")
        return symbols

    @task(multiple_outputs=False)
    def ingest() -> dict[str, Any]:
        """Fill the raw bar store (`mia.pipelines.ingest`): content hash per symbol."""
        from mia.pipelines import ingest as stage

        r = stage.run(_cfg())
        return {"store": r.store.as_uri(), "report": r.report.as_uri(), "sha256": r.hashes}

    @task(multiple_outputs=False)
    def validate_raw() -> dict[str, Any]:
        """Great Expectations on the raw bars; a failure lists the failed expectations."""
        from mia.pipelines import validate as stage

        cfg = _cfg()
        stage.run(cfg, "raw")
        return {"report": (cfg.endpoints.mia_home / "reports/validation_raw.json").as_uri()}

    @task(multiple_outputs=False)
    def regimes() -> dict[str, Any]:
        """Fit the regime HMM on the first training window (before the features: they use it)."""
        from mia.pipelines import regimes as stage

        return {"params": {s: p.as_uri() for s, p in stage.run(_cfg()).paths.items()}}

    @task(multiple_outputs=False)
    def build_features() -> dict[str, Any]:
        """Build every buildable feature per symbol (`mia.pipelines.features`)."""
        from mia.pipelines import features as stage

        r = stage.run(_cfg())
        return {"store": r.store.as_uri(), "report": r.report.as_uri(), "built": r.built}

    @task(multiple_outputs=False)
    def validate_features() -> dict[str, Any]:
        """Great Expectations on the built features."""
        from mia.pipelines import validate as stage

        cfg = _cfg()
        stage.run(cfg, "features")
        return {"report": (cfg.endpoints.mia_home / "reports/validation_features.json").as_uri()}

    @task(multiple_outputs=False)
    def select_features() -> dict[str, Any]:
        """SHAP-rank the features on the pre-validation rows and keep `selection.n_selected`."""
        from mia.pipelines import select as stage

        return {"specs": {s: p.as_uri() for s, p in stage.run(_cfg()).specs.items()}}

    @task(multiple_outputs=False)
    def drift_report() -> dict[str, Any]:
        """Evidently report (recent vs training window) and the PSI reference of the bundle."""
        from mia.pipelines import drift as stage

        r = stage.run(_cfg())
        return {"reports": {s: v.html_path.as_uri() for s, v in r.summaries.items()},
                "drifted_share": {s: v.drifted_share for s, v in r.summaries.items()}}

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Open (or, on a rerun, reuse) the walk-forward's MLflow parent run of one symbol.")
    def start_walk_forward(symbol: str, **context: Any) -> dict[str, Any]:
        from _partition import resolve

        from mia.pipelines import retrain

        _name(symbol)
        key = resolve(context, "trade_date").key
        return retrain.start_walk_forward(_cfg(), symbol, partition=key,
                                          airflow_run_id=context["run_id"]).to_xcom()

    @task
    def training_jobs(starts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every (symbol, agent, fold) of the walk-forwards, one mapped `train` task each."""
        from mia.pipelines import retrain

        return retrain.train_jobs(list(starts))

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Train and score one agent on one fold (MLflow child run of the walk-forward).")
    def train(job: dict[str, Any], **context: Any) -> dict[str, Any]:
        from mia.pipelines import retrain

        _name(f"{job['symbol']} {job['agent']} fold {job['fold']}")
        return retrain.train_fold(_cfg(), retrain.TrainJob.from_xcom(job),
                                  timesteps=context["params"]["timesteps"]).to_xcom()

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Join the folds out of sample, add the baselines, attach the data reports.")
    def evaluate_walk_forward(start: dict[str, Any]) -> dict[str, Any]:
        from mia.pipelines import retrain

        _name(start["symbol"])
        return retrain.evaluate(_cfg(), retrain.start_from_xcom(start)).to_xcom()

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Fit the Bayesian vote's weights on the validation windows.")
    def fit_ensemble(start: dict[str, Any]) -> dict[str, Any]:
        from mia.pipelines import retrain

        _name(start["symbol"])
        return retrain.fit_ensemble(_cfg(), retrain.start_from_xcom(start)).to_xcom()

    @task(multiple_outputs=False, map_index_template=MAP_NAME,
          doc_md="Bundle, score on the holdout, register the version, gate it; canary on a pass.")
    def package_register(symbol: str) -> dict[str, Any]:
        from mia.pipelines import retrain

        _name(symbol)
        return retrain.register(_cfg(), symbol).to_xcom()

    symbols = plan_run()
    data = ingest()
    symbols >> data
    report = drift_report()
    data >> validate_raw() >> regimes() >> build_features() >> validate_features() \
        >> select_features() >> report
    starts = start_walk_forward.expand(symbol=symbols)
    report >> starts
    trained = train.expand(job=training_jobs(starts))
    evaluated = evaluate_walk_forward.expand(start=starts)
    trained >> evaluated
    ensembles = fit_ensemble.expand(start=starts)
    evaluated >> ensembles
    registered = package_register.expand(symbol=symbols)
    ensembles >> registered


mia_retrain()
