"""MLflow tracking and (in later versions) the model registry with aliases."""

from __future__ import annotations

from kfgpu.registry.tracking import (
    DEFAULT_EXPERIMENT,
    end_run,
    local_tracking_uri,
    log_artifacts,
    log_metrics,
    resolve_tracking_uri,
    start_run,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "end_run",
    "local_tracking_uri",
    "log_artifacts",
    "log_metrics",
    "resolve_tracking_uri",
    "start_run",
]
