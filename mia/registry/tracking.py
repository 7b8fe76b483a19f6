"""Configure MLflow for MIA: the tracking URI from the config, MIA's experiments, reachability.

One helper, :func:`configure`, so every stage and command talks to the same store:

- the tracking URI is ``cfg.endpoints.mlflow_tracking_uri`` (``MLFLOW_TRACKING_URI``, default
  ``sqlite:///<MIA_HOME>/mlflow.db``);
- experiments are created with an explicit ``artifact_location`` under
  ``cfg.endpoints.mlflow_artifact_root`` (``MIA_ARTIFACT_ROOT``, default
  ``<MIA_HOME>/mlartifacts``): MLflow's own default for a SQL store is ``./mlruns`` relative to
  the working directory, which scatters artifacts wherever a command happened to run;
- a cheap call checks the store answers, and "MLflow unreachable" becomes a
  :class:`~mia.errors.TemporaryError` that names the URI and what to do.

:func:`mlflow_errors` maps MLflow failures during later calls the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mia.config import Config
from mia.errors import ConfigError, OperationalError, TemporaryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow retries HTTP calls 7 times with exponential backoff (about two minutes against a dead
# server); a command an operator waits on must answer in seconds. setdefault: the user's own
# values win.
FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Tracking:
    """A configured MLflow connection.

    :param uri: the tracking URI in use.
    :param client: an ``MlflowClient`` on that URI.
    :param experiment_id: the active experiment, or ``None`` when none was asked for.
    :param artifact_location: that experiment's artifact location, or ``None``.
    """

    uri: str
    client: MlflowClient
    experiment_id: str | None
    artifact_location: str | None


def artifact_location(cfg: Config, experiment: str) -> str:
    """:param cfg: the configuration. :param experiment: experiment name.
    :return: ``<artifact root>/<experiment>`` as a URI (``file://`` for a local root)."""
    root = cfg.endpoints.mlflow_artifact_root
    if "://" in root:
        return f"{root.rstrip('/')}/{experiment}"
    return (Path(root).expanduser().resolve() / experiment).as_uri()


def configure(cfg: Config, *, experiment: str | None = None,
              fail_fast: bool = False) -> Tracking:
    """Point MLflow at MIA's store, check it answers, and select an experiment.

    The URI becomes process-wide (``mlflow.set_tracking_uri``, which MLflow also exports as
    ``MLFLOW_TRACKING_URI`` so subprocesses inherit it), so ``mlflow.start_run`` and
    ``log_model`` in the same process write to this store.

    :param cfg: the configuration (endpoints from the environment).
    :param experiment: experiment to create if missing and make active for ``mlflow.start_run``;
        ``None`` for registry-only use.
    :param fail_fast: set MLflow's HTTP retries to 0 and its timeout to 5 s (for CLI calls);
        batch stages keep MLflow's retries, which ride out a server restart.
    :return: the connection.
    :raises TemporaryError: if the store does not answer.
    :raises ConfigError: if the URI is not one MLflow supports or its driver is missing.
    :raises OperationalError: if ``experiment`` exists but was deleted.
    """
    import mlflow

    uri = cfg.endpoints.mlflow_tracking_uri
    if fail_fast:
        for key, value in FAIL_FAST_ENV.items():
            os.environ.setdefault(key, value)
    if uri.startswith("sqlite:///"):
        # the default store lives in MIA_HOME, which a fresh machine has not created yet
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    with mlflow_errors(uri, "checking that MLflow answers"):
        client.search_experiments(max_results=1)
    mlflow.set_tracking_uri(uri)  # only once it answers: a failed check leaves MLflow as it was
    if experiment is None:
        return Tracking(uri=uri, client=client, experiment_id=None, artifact_location=None)
    with mlflow_errors(uri, f"opening experiment {experiment!r}"):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = artifact_location(cfg, experiment)
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        elif found.lifecycle_stage == "deleted":
            raise OperationalError(
                f"MLflow experiment {experiment!r} at {uri} is deleted; restore it "
                f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or "
                "purge it with `mlflow gc`, then rerun")
        else:
            experiment_id, location = found.experiment_id, found.artifact_location
        mlflow.set_experiment(experiment_id=experiment_id)
    return Tracking(uri=uri, client=client, experiment_id=experiment_id,
                    artifact_location=location)


@contextmanager
def mlflow_errors(uri: str, doing: str, *, then: str = "",
                  missing: str = "") -> Iterator[None]:
    """Turn MLflow failures into MIA errors that say what to do.

    :param uri: the tracking URI, named in the message.
    :param doing: what was being done (``promoting mia-ES``).
    :param then: advice appended to a transient failure (``rerun to finish the move``).
    :param missing: the whole message when MLflow says the object does not exist.
    :raises TemporaryError: network, server or database failures (retry helps).
    :raises OperationalError: a named object does not exist.
    :raises ConfigError: an unsupported URI or a missing database driver.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    advice = then or ("start the tracking server or point MLFLOW_TRACKING_URI at a running one "
                      "(`mia config show` prints the URI in use), then rerun")
    try:
        yield
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise OperationalError(missing or f"{doing}: {exc.message}") from exc
        if "unsupported URI" in exc.message:
            raise ConfigError(f"MLFLOW_TRACKING_URI={uri} is not a store MLflow supports; use "
                              "sqlite:///PATH, postgresql://… or http(s)://HOST:PORT") from exc
        # MLflow's REST client reports a refused or timed-out connection this way
        if "API request to" in exc.message and "failed with exception" in exc.message:
            errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", exc.message)
            cause = errno.group(1) if errno else "timed out" if "timed out" in exc.message \
                else _short(exc.message)
            raise TemporaryError(f"MLflow at {uri} is unreachable ({cause}) while {doing}; "
                                 f"{advice}") from exc
        raise TemporaryError(f"MLflow at {uri} failed while {doing}: {_short(exc.message)}; "
                             f"{advice}") from exc
    except ImportError as exc:
        raise ConfigError(f"MLFLOW_TRACKING_URI={uri} needs a database driver that is not "
                          f"installed ({exc}); install it or use another store") from exc
    except (OSError, SQLAlchemyError) as exc:  # requests' errors are OSErrors too
        raise TemporaryError(f"MLflow at {uri} is unreachable while {doing}: "
                             f"{_short(str(exc))}; {advice}") from exc


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
