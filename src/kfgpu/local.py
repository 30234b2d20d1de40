"""Run a kfgpu pipeline on this machine with ``kfp.local`` (no cluster, no Docker).

Every component runs as a subprocess of the current interpreter, exactly the code a
cluster runs in the kfgpu image. Steps report start, success and failure through the
events file (see :mod:`kfgpu._step`); this module turns those into progress lines and,
when a step fails, into one readable error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfgpu._redact import RedactingStream, redact
from kfgpu._step import EVENTS_ENV, read_events
from kfgpu.errors import ConfigError, KfgpuError, PipelineError

__all__ = ["LocalRun", "init", "pipeline_parameters", "run_local"]


@dataclass
class LocalRun:
    """Where a finished local run put things."""

    pipeline: str
    run_dir: Path
    log_path: Path
    outputs: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0

    def step_seconds(self) -> dict[str, float]:
        """Seconds spent inside each step's library function."""
        return {e["step"]: float(e["seconds"]) for e in self.events if e.get("event") == "success"}

    def output_path(self, name: str) -> Path | None:
        artifact = self.outputs.get(name)
        path = getattr(artifact, "path", None)
        return Path(path) if path else None


def init(*, runner: Any = None, pipeline_root: str = "./local_outputs", **kwargs: Any) -> None:
    """``kfp.local.init`` set up for kfgpu's components: run them in this interpreter.

    kfgpu's components are built with ``install_kfp_package=False`` (the kfgpu image and
    this environment already hold kfp and kfgpu). kfp's ``SubprocessRunner()`` defaults to
    ``use_venv=True``: each task then runs in a fresh virtualenv without kfp and fails with
    ``No module named 'kfp'``. This uses ``SubprocessRunner(use_venv=False)`` and refuses a
    runner that would fail that way.

    Args:
        runner: a ``kfp.local.SubprocessRunner(use_venv=False)`` (the default) or
            ``DockerRunner()`` (runs the kfgpu image, which has both).
        pipeline_root: where task outputs go.
        **kwargs: passed to ``kfp.local.init`` (``raise_on_error``, ...).

    Raises:
        ConfigError: ``runner`` is a ``SubprocessRunner`` with ``use_venv=True``.
    """
    from kfp import local

    if runner is None:
        runner = local.SubprocessRunner(use_venv=False)
    elif isinstance(runner, local.SubprocessRunner) and runner.use_venv:
        raise ConfigError(
            "runner=SubprocessRunner(use_venv=True) cannot run kfgpu's components: each task "
            "would run in a new virtualenv without kfp and fail with \"No module named 'kfp'\"; "
            "use kfgpu.local.init() or kfp.local.SubprocessRunner(use_venv=False)"
        )
    local.init(runner=runner, pipeline_root=pipeline_root, **kwargs)


def pipeline_parameters(name: str) -> dict[str, tuple[str, Any]]:
    """A pipeline's parameters: name -> (KFP type, default).

    Typing ``NAME=VALUE`` strings against them is :func:`kfgpu.ops.submit.coerce_parameters`
    (with :func:`kfgpu.compile.pipeline_parameters`), the same for a local and a cluster run.
    """
    from kfgpu.compile import pipeline

    inputs = pipeline(name).component_spec.inputs or {}
    return {k: (v.type, v.default) for k, v in inputs.items()}


@contextlib.contextmanager
def _events_env(path: Path) -> Iterator[None]:
    old = os.environ.get(EVENTS_ENV)
    os.environ[EVENTS_ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(EVENTS_ENV, None)
        else:
            os.environ[EVENTS_ENV] = old


class _Progress(threading.Thread):
    """Follows the events file and reports each step as it starts and ends."""

    def __init__(self, path: Path, report: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.report = report
        self.seen = 0
        self.done = threading.Event()

    def poll(self) -> None:
        events = read_events(self.path)
        for event in events[self.seen :]:
            self.report(event)
        self.seen = len(events)

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.poll()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.poll()


def run_local(
    pipeline: str,
    arguments: Mapping[str, Any],
    *,
    workdir: str | os.PathLike[str],
    verbose: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> LocalRun:
    """Run ``pipeline`` under ``kfp.local`` with the SubprocessRunner.

    Args:
        pipeline: a name from :data:`kfgpu.pipelines.PIPELINES`.
        arguments: pipeline arguments (already typed).
        workdir: outputs go to ``workdir/runs/<run>/``; the log to ``workdir/logs/``.
        verbose: stream every step's output to this process's stdout instead of the log.
        on_event: called with each step event (start, success, failure) as it happens.

    Raises:
        PipelineError: a step failed; the message is the step's own error when it raised
            a kfgpu error, with the log's path otherwise.
    """
    from kfgpu.compile import pipeline as lookup

    graph = lookup(pipeline)
    work = Path(workdir).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    run_dir = work / "runs" / f"{pipeline}-{stamp}"
    log_dir = work / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{pipeline}-{stamp}.log"
    events_path = run_dir / "events.jsonl"

    init(pipeline_root=str(run_dir), raise_on_error=True)
    progress = _Progress(events_path, on_event or (lambda _e: None))
    root_logger = logging.getLogger()
    handlers_before = list(root_logger.handlers)
    t0 = time.perf_counter()
    failure: BaseException | None = None
    outputs: dict[str, Any] = {}
    with _events_env(events_path), log_path.open("w") as log:
        # kfp.local prints each task's executor input (its arguments, credentials in a URI
        # included) and relays the step's output: both pass through redaction.
        sink = (
            _redirect(RedactingStream(sys.stdout), RedactingStream(sys.stderr))
            if verbose
            else _redirect(RedactingStream(log))
        )
        progress.start()
        try:
            with sink, warnings.catch_warnings():
                # Resources, accelerators and display names are for the cluster; kfp.local
                # says it ignores them, which is expected here and documented.
                warnings.filterwarnings(
                    "ignore", message=".*have no effect in the current local runner.*"
                )
                # The kfgpu image runs the same code as this environment: that is the design.
                warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
                task = graph(**arguments)
            outputs = dict(getattr(task, "outputs", {}) or {})
        except Exception as e:  # kfp.local raises RuntimeError naming the failed task
            failure = e
        finally:
            progress.stop()
            # kfp.local attaches handlers bound to the (redirected) streams; drop them so no
            # later log record writes to the closed log file.
            for handler in list(root_logger.handlers):
                if handler not in handlers_before:
                    root_logger.removeHandler(handler)
    wall = time.perf_counter() - t0
    events = read_events(events_path)
    if failure is not None:
        raise PipelineError(redact(_failure_message(failure, events, log_path))) from failure
    _point_latest(work / "latest", run_dir)
    return LocalRun(
        pipeline=pipeline,
        run_dir=run_dir,
        log_path=log_path,
        outputs=outputs,
        events=events,
        wall_seconds=wall,
    )


def _point_latest(link: Path, run_dir: Path) -> None:
    """``<workdir>/latest`` -> the newest successful run (best effort: not on every FS)."""
    tmp = link.with_name(f".latest-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.relative_to(link.parent), target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _redirect(out: RedactingStream, err: RedactingStream | None = None) -> Iterator[None]:
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err or out):
            yield
    finally:
        out.flush()
        if err is not None:
            err.flush()


def _failure_message(error: BaseException, events: list[dict[str, Any]], log: Path) -> str:
    failed = [e for e in events if e.get("event") == "failure"]
    if failed:
        first = failed[0]
        if first.get("kfgpu_error"):
            return f"{first['step']}: {first['message']}"
        return (
            f"{first['step']} failed with {first['error_type']}: {first['message']} "
            f"(full log: {log})"
        )
    if isinstance(error, KfgpuError):
        return str(error)
    text = " ".join(str(error).split())
    return f"{text} (full log: {log})"
