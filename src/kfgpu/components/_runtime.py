"""The one adapter every component body uses to publish a step's result to KFP."""

from __future__ import annotations

from typing import Any

from kfgpu._step import StepResult

__all__ = ["publish"]


def publish(result: StepResult, *, metrics: Any = None, **artifacts: Any) -> None:
    """Attach ``result.metadata[name]`` to each named artifact and log ``result.metrics``.

    Args:
        result: what the library step returned.
        metrics: the component's ``Output[Metrics]``, if it has one.
        **artifacts: the component's artifacts by the names the step used in ``metadata``.
    """
    for name, meta in result.metadata.items():
        artifact = artifacts.get(name)
        if artifact is not None:
            artifact.metadata.update(meta)
    if metrics is not None:
        for key, value in sorted(result.metrics.items()):
            metrics.log_metric(key, float(value))
    if result.summary:
        print(result.summary, flush=True)
