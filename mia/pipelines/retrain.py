"""The retrain DAG's walk-forward tasks as transactions: a rerun overwrites, never appends.

``mia_retrain`` calls the stages directly where a stage already is idempotent (ingest, validate,
regimes, features, select, drift, register). The walk-forward stages open MLflow runs, and a
retried task would add a second run beside the first; the functions here make each task own its
MLflow runs by key:

- :func:`start_walk_forward` reuses the parent run of the same DAG partition and symbol when it
  was opened on the same data and feature spec (a retry, a cleared task), and deletes a parent
  opened on other data (the partition's data changed: that walk-forward is superseded);
- :func:`train_fold` deletes the earlier child runs of its (parent, agent, fold) before training
  (a retry after a crash, a manual re-run), so one active run per task remains;
- :func:`evaluate` and :func:`fit_ensemble` likewise keep one evaluation and one ensemble run per
  walk-forward. :func:`evaluate` also attaches the data stages' reports (ingest, validation,
  features, selection, drift) to the walk-forward's run, so the registered version carries them.

Each returns a small frozen record whose :meth:`to_xcom` is what the task hands to XCom: ids,
URIs and the ``mlflow_run`` entry the plugin turns into a link (mia.orchestration), never data.
MLflow's ``delete_run`` is a soft delete: ``mlflow gc`` purges, the UI can restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mia.config import Config
from mia.errors import OperationalError
from mia.orchestration import mlflow_run_ref

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mia.training.data import TrainingData

PARTITION_TAG = "mia.partition"
AIRFLOW_RUN_TAG = "mia.airflow_run_id"


@dataclass(frozen=True, kw_only=True, slots=True)
class WalkForwardStart:
    """The parent run of one symbol's walk-forward in one DAG partition.

    :param symbol: the symbol. :param experiment_id: ``mia-<SYMBOL>``'s id.
    :param run_id: the parent run. :param folds: number of folds of the layout.
    :param agents: agents trained, in order. :param reused: an earlier try's run was kept.
    """

    symbol: str
    experiment_id: str
    run_id: str
    folds: int
    agents: tuple[str, ...]
    reused: bool

    def to_xcom(self) -> dict[str, Any]:
        """:return: the task's XCom value."""
        return {"symbol": self.symbol, "folds": self.folds, "agents": list(self.agents),
                "reused": self.reused, **mlflow_run_ref(self.experiment_id, self.run_id)}


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainJob:
    """One mapped training task: an (agent, fold) of one symbol's walk-forward."""

    symbol: str
    agent: str
    fold: int
    experiment_id: str
    parent_run_id: str

    def to_xcom(self) -> dict[str, Any]:
        """:return: the mapped task's input."""
        return {"symbol": self.symbol, "agent": self.agent, "fold": self.fold,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> TrainJob:
        """:param value: :meth:`to_xcom`'s output. :raises OperationalError: a key is missing."""
        try:
            return cls(symbol=str(value["symbol"]), agent=str(value["agent"]),
                       fold=int(value["fold"]), experiment_id=str(value["experiment_id"]),
                       parent_run_id=str(value["parent_run_id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise OperationalError(f"train job {value!r} lacks {exc}; build jobs with "
                                   "train_jobs()") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class StageRun:
    """A finished walk-forward task: its MLflow run and its main output."""

    symbol: str
    experiment_id: str
    run_id: str
    output: Path
    summary: dict[str, Any]

    def to_xcom(self) -> dict[str, Any]:
        """:return: the task's XCom value."""
        return {"symbol": self.symbol, "output": self.output.as_uri(), **self.summary,
                **mlflow_run_ref(self.experiment_id, self.run_id)}


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _active(client: MlflowClient, experiment_id: str, query: str) -> list[Any]:
    from mlflow.entities import ViewType

    from mia.registry.tracking import mlflow_errors

    with mlflow_errors(client.tracking_uri, f"searching runs ({query})"):
        return list(client.search_runs([experiment_id], filter_string=query,
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=1000))


def _delete(client: MlflowClient, runs: Sequence[Any]) -> None:
    from mia.registry.tracking import mlflow_errors

    for run in runs:
        with mlflow_errors(client.tracking_uri, f"deleting superseded run {run.info.run_id}"):
            client.delete_run(run.info.run_id)


def _data(cfg: Config, symbol: str, folds: int | None = None) -> TrainingData:
    from mia.pipelines.train import load_training_data

    return load_training_data(cfg, symbol, folds=folds)


def start_walk_forward(cfg: Config, symbol: str, *, partition: str, airflow_run_id: str = "",
                       agents: Sequence[str] | None = None) -> WalkForwardStart:
    """Open, or reuse, the parent run of ``symbol``'s walk-forward in ``partition``.

    :param cfg: configuration.
    :param symbol: the symbol.
    :param partition: the DAG run's partition key (dags/_partition.py), tagged on the run.
    :param airflow_run_id: the DAG run id, tagged for lineage.
    :param agents: agents to train; default all five.
    """
    from mia.agents import AGENTS
    from mia.pipelines.train import experiment, start_parent

    names = tuple(agents or AGENTS)
    data = _data(cfg, symbol)
    exp = experiment(cfg, symbol)
    client = _client()
    earlier = _active(client, exp, f"tags.`mia.kind` = 'walk_forward' and "
                                   f"tags.`{PARTITION_TAG}` = '{partition}'")
    same = [r for r in earlier if r.data.tags.get("mia.data_hash") == data.data_hash
            and r.data.tags.get("mia.spec_hash") == data.spec.sha256
            and r.data.params.get("agents") == ",".join(names)]
    if same:
        keep = same[0]
        _delete(client, [r for r in earlier if r.info.run_id != keep.info.run_id])
        return WalkForwardStart(symbol=symbol, experiment_id=exp, run_id=keep.info.run_id,
                                folds=len(data.layout.folds), agents=names, reused=True)
    _delete(client, earlier)
    exp, parent = start_parent(cfg, data, names)
    client.set_tag(parent, PARTITION_TAG, partition)
    if airflow_run_id:
        client.set_tag(parent, AIRFLOW_RUN_TAG, airflow_run_id)
    return WalkForwardStart(symbol=symbol, experiment_id=exp, run_id=parent,
                            folds=len(data.layout.folds), agents=names, reused=False)


def train_jobs(starts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mapped training tasks of some walk-forwards: every (agent, fold) of each.

    :param starts: :meth:`WalkForwardStart.to_xcom` values.
    :return: :meth:`TrainJob.to_xcom` values, fold-major so early folds start first.
    """
    jobs: list[dict[str, Any]] = []
    for s in starts:
        ref = s["mlflow_run"]
        for fold in range(int(s["folds"])):
            for agent in s["agents"]:
                jobs.append(TrainJob(symbol=s["symbol"], agent=agent, fold=fold,
                                     experiment_id=ref["experiment_id"],
                                     parent_run_id=ref["run_id"]).to_xcom())
    return jobs


def _parent_matches(client: MlflowClient, parent_run_id: str, data: TrainingData) -> None:
    from mia.registry.tracking import mlflow_errors

    with mlflow_errors(client.tracking_uri, f"reading walk-forward run {parent_run_id}"):
        tags = client.get_run(parent_run_id).data.tags
    if tags.get("mia.data_hash") != data.data_hash or tags.get("mia.spec_hash") != data.spec.sha256:
        raise OperationalError(
            f"{data.symbol}: the stored data or feature spec changed since walk-forward run "
            f"{parent_run_id} started (data {str(tags.get('mia.data_hash'))[:12]} -> "
            f"{data.data_hash[:12]}); rerun the DAG from start_walk_forward")


def train_fold(cfg: Config, job: TrainJob, *, timesteps: int | None = None) -> StageRun:
    """Train one (agent, fold) as the only active child run of its key.

    :param cfg: configuration.
    :param job: the task's job (:func:`train_jobs`).
    :param timesteps: override of the agent's ``total_timesteps``.
    :raises OperationalError: the data changed since the walk-forward started.
    """
    from mia.pipelines.train import run_task

    data = _data(cfg, job.symbol)
    client = _client()
    _parent_matches(client, job.parent_run_id, data)
    key = (f"tags.`mlflow.parentRunId` = '{job.parent_run_id}' and tags.`mia.kind` = 'fold' and "
           f"tags.`mia.agent` = '{job.agent}' and tags.`mia.fold` = '{job.fold}'")
    _delete(client, _active(client, job.experiment_id, key))
    result = run_task(cfg, data, job.agent, job.fold, parent_run_id=job.parent_run_id,
                      timesteps=timesteps)
    runs = _active(client, job.experiment_id, key)
    if len(runs) != 1:
        raise OperationalError(f"{job.symbol} {job.agent} fold {job.fold}: expected one MLflow "
                               f"run under {job.parent_run_id}, found {len(runs)}")
    sharpe = result.metrics.get("wf/sharpe")
    return StageRun(symbol=job.symbol, experiment_id=job.experiment_id,
                    run_id=runs[0].info.run_id, output=result.folder,
                    summary={"agent": job.agent, "fold": job.fold, "timesteps": result.timesteps,
                             "sharpe": None if sharpe is None else round(float(sharpe), 4)})


def _reports(cfg: Config, symbol: str) -> list[tuple[Path, str]]:
    from mia.pipelines.select import selection_dir

    home = cfg.endpoints.mia_home / "reports"
    found = [(home / n, "reports") for n in ("ingest.json", "validation_raw.json",
                                             "validation_features.json", "features.json")]
    found += [(p, "reports/selection") for p in sorted(selection_dir(cfg, symbol).glob("*"))
              if p.suffix in (".json", ".png")]
    found += [(home / "drift" / symbol / n, "reports/drift") for n in ("drift.html", "drift.json")]
    return [(p, where) for p, where in found if p.is_file()]


def evaluate(cfg: Config, start: WalkForwardStart) -> StageRun:
    """Join the folds, score the baselines, log them and the data reports to the parent run.

    :param cfg: configuration. :param start: the walk-forward (:func:`start_walk_forward`).
    """
    from mia.pipelines.train import run_evaluate
    from mia.registry.tracking import mlflow_errors

    data = _data(cfg, start.symbol, folds=start.folds)
    client = _client()
    _parent_matches(client, start.run_id, data)
    ev, report, _ = run_evaluate(cfg, data, start.agents, parent_run_id=start.run_id)
    for path, where in _reports(cfg, start.symbol):
        # same artifact path on a rerun: MLflow overwrites the file, nothing is added
        with mlflow_errors(client.tracking_uri, f"attaching {path.name} to {start.run_id}"):
            client.log_artifact(start.run_id, str(path), artifact_path=where)
    best = ev.metrics[ev.best_agent]
    return StageRun(symbol=start.symbol, experiment_id=start.experiment_id, run_id=start.run_id,
                    output=report, summary={"best_agent": ev.best_agent,
                                            "sharpe": round(float(best["wf/sharpe"]), 4)})


def fit_ensemble(cfg: Config, start: WalkForwardStart) -> StageRun:
    """Fit the ensemble as the walk-forward's only active ensemble run.

    :param cfg: configuration. :param start: the walk-forward.
    """
    from mia.pipelines.ensemble import run

    client = _client()
    key = f"tags.`mlflow.parentRunId` = '{start.run_id}' and tags.`mia.kind` = 'ensemble'"
    _delete(client, _active(client, start.experiment_id, key))
    result = run(cfg, symbol=start.symbol)
    return StageRun(symbol=start.symbol, experiment_id=start.experiment_id, run_id=result.run_id,
                    output=result.folder / "ensemble.json",
                    summary={"weights": {a: round(float(w), 4)
                                         for a, w in result.ensemble.weights.items()},
                             "sharpe": round(float(result.sharpe["ensemble"]), 4)})


def start_from_xcom(value: dict[str, Any]) -> WalkForwardStart:
    """:param value: :meth:`WalkForwardStart.to_xcom`'s output. :return: the record again."""
    try:
        ref = value["mlflow_run"]
        return WalkForwardStart(symbol=str(value["symbol"]),
                                experiment_id=str(ref["experiment_id"]),
                                run_id=str(ref["run_id"]), folds=int(value["folds"]),
                                agents=tuple(value["agents"]), reused=bool(value["reused"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise OperationalError(f"walk-forward start {value!r} lacks {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Registered:
    """What ``package_register`` did for one symbol: the version, the gate, the register run."""

    symbol: str
    version: str
    passed: bool
    reasons: tuple[str, ...]
    moved: str
    experiment_id: str
    run_id: str
    report: Path

    def to_xcom(self) -> dict[str, Any]:
        """:return: the task's XCom value (links to the register run and the model version)."""
        from mia.orchestration import model_version_ref
        from mia.registry.handle import model_name

        return {"symbol": self.symbol, "version": self.version, "passed": self.passed,
                "reasons": list(self.reasons), "moved": self.moved,
                "report": self.report.as_uri(),
                **mlflow_run_ref(self.experiment_id, self.run_id),
                **model_version_ref(model_name(self.symbol), self.version)}


def register(cfg: Config, symbol: str) -> Registered:
    """Bundle, holdout, register, gate and canary (mia.pipelines.register, idempotent per
    walk-forward), plus the register run's ids for the links.

    :param cfg: configuration. :param symbol: the symbol.
    """
    from mia.pipelines.register import run
    from mia.registry.handle import model_name
    from mia.registry.tracking import mlflow_errors

    result = run(cfg, symbol=symbol)
    client = _client()
    with mlflow_errors(client.tracking_uri, f"reading {model_name(symbol)} v{result.version}"):
        run_id = client.get_model_version(model_name(symbol), result.version).run_id
        if not run_id:
            raise OperationalError(f"{model_name(symbol)} v{result.version} names no run; it "
                                   "was not registered by MIA")
        experiment_id = client.get_run(run_id).info.experiment_id
    return Registered(symbol=symbol, version=result.version, passed=result.passed,
                      reasons=tuple(result.reasons), moved=result.moved,
                      experiment_id=experiment_id, run_id=run_id, report=result.report)
