"""MLflow tracking: where runs go, and the few calls steps make.

Tracking is on by default. The tracking URI is, in order: the explicit argument (the
pipeline's ``mlflow_tracking_uri`` parameter), ``MLFLOW_TRACKING_URI``, or nothing, in
which case a step does not track (``kfgpu run`` always passes a local store under its
workdir, so local runs are tracked). All MLflow imports are deferred.

The URI is used as given to connect (``http://user:password@host`` works: the password goes
in the request's basic-auth header); params and tags are stored redacted
(:mod:`kfgpu._redact`), so a URI with a password among them reaches MLflow as ``***``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfgpu._redact import redact, redact_obj

__all__ = [
    "DEFAULT_EXPERIMENT",
    "client",
    "end_run",
    "local_tracking_uri",
    "log_artifacts",
    "log_metrics",
    "resolve_tracking_uri",
    "start_run",
]

DEFAULT_EXPERIMENT = "kfgpu"


def resolve_tracking_uri(explicit: str = "") -> str:
    """The tracking URI to use, or ``""`` when tracking is off."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI", "")


def local_tracking_uri(workdir: str | os.PathLike[str]) -> str:
    """The default local store under a workdir: SQLite metadata, artifacts beside it."""
    path = Path(workdir).resolve() / "mlflow.db"
    return f"sqlite:///{path}"


def client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` (MLflow imported here, not at import time)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start_run(
    uri: str,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create an MLflow run and return its id (the caller ends it with :func:`end_run`)."""
    mlflow_client = client(uri)
    exp = mlflow_client.get_experiment_by_name(experiment)
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            # Keep a local store's artifacts beside its database, not in the process's cwd.
            db = Path(uri.removeprefix("sqlite:///"))
            artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
        try:
            exp_id = mlflow_client.create_experiment(
                experiment, artifact_location=artifact_location
            )
        except Exception:  # another step created it first
            exp = mlflow_client.get_experiment_by_name(experiment)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    run = mlflow_client.create_run(exp_id, run_name=run_name, tags=redact_obj(dict(tags or {})))
    if params:
        from mlflow.entities import Param

        mlflow_client.log_batch(
            run.info.run_id,
            params=[Param(str(k), redact(str(v))[:6000]) for k, v in sorted(params.items())],
        )
    return str(run.info.run_id)


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], *, step: int = 0) -> None:
    """Log scalar metrics to an existing run."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client(uri).log_batch(
        run_id, metrics=[Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    )


def log_artifacts(uri: str, run_id: str, local_dir: str, artifact_path: str) -> None:
    """Copy a directory into a run's artifacts."""
    client(uri).log_artifacts(run_id, local_dir, artifact_path)


def end_run(uri: str, run_id: str, *, status: str = "FINISHED") -> None:
    """Mark a run finished (or ``FAILED``)."""
    client(uri).set_terminated(run_id, status=status)
