"""What every pipeline step shares: a result shape, timing, and a trail of events.

Each step function of the library (``validate_data_step``, ``train_model_step``, ...) is
wrapped with :func:`step`. When ``KFGPU_EVENTS_FILE`` is set (``kfgpu run`` sets it), the
wrapper appends one JSON line per start, success and failure: the CLI reads it to show
progress and to print a failed step's error as one line, and ``bench/`` reads the step
timings to split a run's wall time into orchestration and compute. On a cluster the
variable is unset and the wrapper only times the step.

Every step starts by redacting its process's output (:func:`kfgpu._redact.install`): a
password in a URI it was given, which MLflow for one prints, never reaches a log; the
events and what :meth:`StepResult.publish` hands to KFP are redacted too, and so is each
small text file the step wrote at a ``*_path`` argument (reports, JSON), success or failure.
Directories (a model bundle, checksummed) are the writer's job (:mod:`kfgpu.bundle`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from kfgpu._redact import install, redact, redact_file, redact_obj

__all__ = ["EVENTS_ENV", "StepResult", "read_events", "step"]

EVENTS_ENV = "KFGPU_EVENTS_FILE"

P = ParamSpec("P")
#: The step's own typed output (a frozen dataclass of the step module), or None.
OutT = TypeVar("OutT")
R = TypeVar("R", bound="StepResult[Any]")


@dataclass
class StepResult(Generic[OutT]):
    """What a step hands back to its KFP component.

    Attributes:
        metrics: scalar metrics, logged to the step's KFP ``Metrics`` output.
        metadata: per output artifact name, metadata to attach (fingerprints, counts).
        summary: one human line for logs and the CLI.
        output: what else the step returns to its caller (a component's return value, the
            curves it publishes), typed per step: ``StepResult[ValidatedData]`` has
            ``.output.task``. None for a step that returns nothing more.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    output: OutT = None  # type: ignore[assignment]  # a step without one is StepResult[None]

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
                artifact.metadata.update(redact_obj(meta))
        if metrics is not None:
            for key, value in sorted(self.metrics.items()):
                metrics.log_metric(key, float(value))
        if self.summary:
            print(redact(self.summary), flush=True)


def _emit(event: dict[str, Any]) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = redact(json.dumps(event, default=str)) + "\n"
    # One write of one line in append mode: lines from concurrent steps do not interleave.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def step(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a library step: time it and record start, success or failure."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            install()
            started = time.time()
            t0 = time.perf_counter()
            _emit({"step": name, "event": "start", "time": started, "pid": os.getpid()})
            # A GCS key from the pipeline's object-storage Secret, when one is mounted.
            from kfgpu.kube.storage import apply_gcs_credentials

            apply_gcs_credentials()
            try:
                try:
                    result = fn(*args, **kwargs)
                finally:
                    _redact_outputs(kwargs, started)
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


def _redact_outputs(kwargs: dict[str, Any], since: float) -> None:
    """Redact the text files this step wrote at its ``*_path`` arguments."""
    for name, value in kwargs.items():
        if not name.endswith("_path") or not isinstance(value, (str, os.PathLike)) or not value:
            continue
        try:
            written = os.path.isfile(value) and os.stat(value).st_mtime >= since - 1
        except OSError:
            continue
        if written:  # an output of this step, not an input it read
            redact_file(value)


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
