"""What every pipeline step shares: a result shape, timing, and a trail of events.

Each step function of the library (``validate_data_step``, ``train_model_step``, ...) is
wrapped with :func:`step`. When ``KFGPU_EVENTS_FILE`` is set (``kfgpu run`` sets it), the
wrapper appends one JSON line per start, success and failure: the CLI reads it to show
progress and to print a failed step's error as one line, and ``bench/`` reads the step
timings to split a run's wall time into orchestration and compute. On a cluster the
variable is unset and the wrapper only times the step.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

__all__ = ["EVENTS_ENV", "StepResult", "read_events", "step"]

EVENTS_ENV = "KFGPU_EVENTS_FILE"

P = ParamSpec("P")


@dataclass
class StepResult:
    """What a step hands back to its KFP component.

    Attributes:
        metrics: scalar metrics, logged to the step's KFP ``Metrics`` output.
        metadata: per output artifact name, metadata to attach (fingerprints, counts).
        summary: one human line for logs and the CLI.
        extra: anything else the component may publish (curves, matrices).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def publish(self, *, metrics: Any = None, **artifacts: Any) -> None:
        """Hand the result to KFP: the one adapter every component body uses.

        Attaches ``metadata[name]`` to each artifact passed by that name and logs
        ``metrics`` to the component's ``Output[Metrics]``. Lives here, not in
        ``kfgpu.components``, because a component body runs where only kfp's runtime
        (not its compiler) can be imported.
        """
        for name, meta in self.metadata.items():
            artifact = artifacts.get(name)
            if artifact is not None:
                artifact.metadata.update(meta)
        if metrics is not None:
            for key, value in sorted(self.metrics.items()):
                metrics.log_metric(key, float(value))
        if self.summary:
            print(self.summary, flush=True)


def _emit(event: dict[str, Any]) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps(event, default=str) + "\n"
    # One write of one line in append mode: lines from concurrent steps do not interleave.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def step(name: str) -> Callable[[Callable[P, StepResult]], Callable[P, StepResult]]:
    """Wrap a library step: time it and record start, success or failure."""

    def wrap(fn: Callable[P, StepResult]) -> Callable[P, StepResult]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> StepResult:
            started = time.time()
            t0 = time.perf_counter()
            _emit({"step": name, "event": "start", "time": started, "pid": os.getpid()})
            # A GCS key from the pipeline's object-storage Secret, when one is mounted.
            from kfgpu.kube.storage import apply_gcs_credentials

            apply_gcs_credentials()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                _emit(
                    {
                        "step": name,
                        "event": "failure",
                        "time": time.time(),
                        "seconds": time.perf_counter() - t0,
                        "error_type": type(e).__name__,
                        "message": str(e).splitlines()[0] if str(e) else type(e).__name__,
                        "kfgpu_error": _is_kfgpu_error(e),
                    }
                )
                raise
            _emit(
                {
                    "step": name,
                    "event": "success",
                    "time": time.time(),
                    "seconds": time.perf_counter() - t0,
                    "summary": result.summary,
                    "metrics": result.metrics,
                }
            )
            return result

        return run

    return wrap


def _is_kfgpu_error(e: BaseException) -> bool:
    from kfgpu.errors import KfgpuError

    return isinstance(e, KfgpuError)


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event recorded so far (a torn last line, mid-write, is skipped)."""
    events: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return []
    return events
