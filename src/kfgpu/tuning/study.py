"""Studies on shared storage: samplers, pruners, storages, and workers that share a budget.

A study lives in a storage every worker opens by name: an RDB (PostgreSQL on a cluster,
SQLite locally) or a journal file. Each worker draws trials one at a time until the study
holds ``n_trials`` finished (complete or pruned) trials, counted in the storage, so any
number of workers in any number of pods share one budget:

* before each trial a worker counts finished, running and queued trials; when the running
  ones would spend the rest of the budget it waits for them instead of starting another;
* a trial created in the same instant by two workers over the budget (a race between the
  count and the insert) is noticed at once, by trial number, and closed as FAIL with the
  user attribute ``kfgpu_surplus`` without running: the budget is never overspent;
* on an RDB storage every running trial sends a heartbeat; a trial whose worker died (a
  killed pod) is marked FAIL after ``grace_period`` by the next worker that looks, and
  re-queued with the same parameters up to ``max_retry`` times. Worker processes started
  by :func:`run_study` are also watched by their parent, which fails a dead worker's trial
  at once (journal files have no heartbeats).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, TrainingError
from kfgpu.tuning.config import TuneConfig
from kfgpu.tuning.space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = [
    "STORAGE_ENV",
    "StudyOutcome",
    "budget_of",
    "close_storage",
    "describe_storage",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "resolve_storage",
    "run_study",
    "run_worker",
    "snapshot",
]

#: The storage a worker uses when none is given (a Kubernetes Secret injects it).
STORAGE_ENV = "KFGPU_TUNING_STORAGE"

SURPLUS_ATTR = "kfgpu_surplus"
WORKER_ATTR = "kfgpu_worker"
SECONDS_ATTR = "kfgpu_objective_seconds"

ObjectiveFn = Callable[["optuna.Trial"], "float | Sequence[float]"]


class _Surplus(Exception):
    """The study's budget was spent by other workers while this trial was created."""


def worker_id() -> str:
    """This process, as recorded on the trials it runs: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- storage


def resolve_storage(storage: str, *, n_workers: int, scratch: str | None = None) -> str:
    """The storage a study uses: ``storage``, else ``$KFGPU_TUNING_STORAGE``, else ``""``
    (in memory) for one in-process worker or a journal file in ``scratch`` for several.
    ``postgresql://`` and ``postgres://`` get the psycopg (3) driver."""
    storage = (storage or os.environ.get(STORAGE_ENV, "")).strip()
    if not storage:
        if n_workers <= 1:
            return ""
        if scratch is None:
            raise ConfigError(
                f"storage='' with n_workers={n_workers}: several worker processes need a "
                "shared storage; give a journal path, sqlite:/// or postgresql:// URL"
            )
        return "journal:" + str(Path(scratch) / "study.journal")
    for prefix in ("postgresql://", "postgres://"):
        if storage.startswith(prefix):
            return "postgresql+psycopg://" + storage[len(prefix) :]
    return storage


def _is_rdb(url: str) -> bool:
    return "://" in url and not url.startswith("journal:")


def _journal_path(url: str) -> str | None:
    if url.startswith("journal:"):
        return url[len("journal:") :]
    if "://" not in url and url:
        return url
    return None


def describe_storage(url: str) -> str:
    """The storage for a summary or a log line, with any password hidden."""
    if not url:
        return "in-memory"
    if _is_rdb(url):
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return f"journal:{_journal_path(url)}"


def open_storage(url: str, config: TuneConfig) -> Any:
    """An Optuna storage for a resolved URL (``None``: in memory).

    RDB storages get heartbeats (``heartbeat_interval``, ``grace_period``) and re-queue a
    trial whose worker died up to ``max_retry`` times.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    if not url:
        return None
    journal = _journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(journal).expanduser()
        if not path.parent.is_dir():
            raise ConfigError(
                f"storage={url!r} is invalid: directory {str(path.parent)!r} does not exist; "
                "create it or give another path"
            )
        return JournalStorage(JournalFileBackend(str(path)))
    if url.split("://", 1)[0].split("+")[0] not in ("postgresql", "sqlite", "mysql"):
        raise ConfigError(
            f"storage={describe_storage(url)!r} is invalid: use postgresql://, sqlite:///, "
            "mysql:// or a journal file path"
        )
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Several processes write one file: wait for its lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental; they are the
        # documented way to fail and retry a dead worker's trial.
        warnings.simplefilter("ignore", ExperimentalWarning)
        callback = (
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=config.max_retry)
            if config.max_retry > 0
            else None
        )
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=config.heartbeat_interval,
                grace_period=config.grace_period,
                heartbeat_stale_trial_callback=callback,
            )
        except ImportError as e:
            raise ConfigError(
                f"storage={describe_storage(url)!r}: its database driver is not installed "
                f"({e}); for PostgreSQL install psycopg[binary]"
            ) from e
        except Exception as e:
            if type(e).__module__.startswith("sqlalchemy"):
                raise ConfigError(
                    f"storage={describe_storage(url)!r} cannot be opened: "
                    f"{' '.join(str(e).split())[:300]}; check the host, credentials and "
                    "database"
                ) from e
            raise


# --------------------------------------------------------------------------- samplers


def make_sampler(space: SearchSpace, config: TuneConfig, *, worker_index: int = 0) -> Any:
    """The configured sampler; worker ``i`` is seeded with ``seed + i``. The grid sampler
    gets one fixed seed everywhere: it shuffles the grid by its seed and shares grid ids
    through the storage, so every worker, in every pod (``tune_worker`` pods are seeded
    apart), must order the grid the same way; the order does not change what a grid covers."""
    import optuna

    seed = config.seed + worker_index
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=0)
    if config.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ConfigError(
                "sampler='cmaes' needs the cmaes package: pip install cmaes (or use 'tpe')"
            ) from e
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=min(5, max(1, config.n_trials // 4)),
            warn_independent_sampling=False,
        )
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=min(10, max(1, config.n_trials // 3)),
        constant_liar=True,
    )


def make_pruner(config: TuneConfig, *, max_resource: int | str = "auto") -> Any:
    """The configured pruner, stepping on epochs (``max_resource``: the most epochs)."""
    import optuna

    if config.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
        )
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=config.min_resource, max_resource=max_resource, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def budget_of(space: SearchSpace, config: TuneConfig) -> int:
    """Finished trials the study runs to: ``n_trials``, or fewer for a smaller grid."""
    if config.sampler == "grid":
        return min(config.n_trials, math.prod(len(v) for v in space.grid().values()))
    return config.n_trials


def open_study(
    storage: Any,
    space: SearchSpace,
    config: TuneConfig,
    *,
    worker_index: int = 0,
    max_resource: int | str = "auto",
) -> optuna.Study:
    """Create the study, or resume it by name when the storage holds one.

    Raises:
        ConfigError: a study of that name exists with other objectives.
    """
    import optuna

    sampler = make_sampler(space, config, worker_index=worker_index)
    pruner = make_pruner(config, max_resource=max_resource)
    directions: list[Any] = config.directions
    study = None
    for _ in range(5):
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                study_name=config.study_name,
                directions=directions,
                load_if_exists=True,
            )
            break
        except optuna.exceptions.DuplicatedStudyError:
            # Another worker created it between our look-up and our insert: load it.
            time.sleep(0.2)
    if study is None:
        raise TrainingError(f"could not create or load study {config.study_name!r}")
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigError(
            f"study_name={config.study_name!r} is invalid: the stored study's objectives "
            f"go {stored}, this run's ({list(config.objectives)}) {directions}; use another "
            "study name"
        )
    attrs = study.user_attrs
    if "kfgpu_objectives" not in attrs:
        with contextlib.suppress(Exception):
            study.set_user_attr("kfgpu_objectives", list(config.objectives))
            study.set_user_attr("kfgpu_search_space", space.to_dict())
            study.set_user_attr("kfgpu_n_trials", config.n_trials)
    return study


# --------------------------------------------------------------------------- workers


@dataclass
class WorkerReport:
    """What one worker did: the trial numbers it ran, and why it stopped."""

    worker: str
    trials: list[int] = field(default_factory=list)
    stopped: str = ""


_FINISHED = ("COMPLETE", "PRUNED")


def _counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state (surplus ones left out), and ``GRID_DONE``: the distinct grid points
    finished (Optuna's GridSampler may hand one point to two workers at once)."""
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    grid_done: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS_ATTR):
            continue
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        if t.state.name in ("COMPLETE", "PRUNED") and "grid_id" in t.system_attrs:
            grid_done.add(int(t.system_attrs["grid_id"]))
    counts["GRID_DONE"] = len(grid_done)
    return counts


def _finished(counts: dict[str, int], config: TuneConfig) -> int:
    """What spends the budget: finished trials, or distinct grid points for a grid search
    (a point two workers drew at once counts once, so every point gets run)."""
    if config.sampler == "grid":
        return counts["GRID_DONE"]
    return counts["COMPLETE"] + counts["PRUNED"]


def _fail_stale(study: optuna.Study) -> None:
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_worker(
    study: optuna.Study,
    objective: ObjectiveFn,
    config: TuneConfig,
    *,
    budget: int,
    poll_seconds: float = 0.5,
) -> WorkerReport:
    """Draw trials until the study holds ``budget`` finished trials (over every worker),
    ``timeout`` passes, or ``max_failures`` trials failed."""
    import optuna

    me = worker_id()
    report = WorkerReport(worker=me)
    started = time.monotonic()

    def guarded(trial: optuna.Trial) -> float | Sequence[float]:
        states = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING,
            optuna.trial.TrialState.WAITING,
        )
        ahead = sum(
            1
            for t in study.get_trials(deepcopy=False, states=states)
            if t.number < trial.number and not t.user_attrs.get(SURPLUS_ATTR)
        )
        if ahead >= budget and config.sampler != "grid":
            # (A grid search stops when the grid is covered: GridSampler draws unvisited points.)
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise _Surplus(
                f"trial {trial.number} not run: the budget of {budget} trials was taken by "
                "other workers while it was created"
            )
        trial.set_user_attr(WORKER_ATTR, me)
        report.trials.append(trial.number)
        t0 = time.perf_counter()
        try:
            return objective(trial)
        finally:
            trial.set_user_attr(SECONDS_ATTR, round(time.perf_counter() - t0, 6))

    while True:
        if config.timeout and time.monotonic() - started >= config.timeout:
            report.stopped = "timeout"
            break
        if getattr(study, "_storage", None) is not None:
            _fail_stale(study)
        counts = _counts(study)
        finished = _finished(counts, config)
        if finished >= budget:
            report.stopped = "budget"
            break
        if counts["FAIL"] >= config.failure_limit:
            report.stopped = "failures"
            break
        if finished + counts["RUNNING"] + counts["WAITING"] >= budget and not counts["WAITING"]:
            # The running trials spend the rest of the budget; wait in case one fails.
            time.sleep(poll_seconds)
            continue
        study.optimize(guarded, n_trials=1, catch=(Exception,))
        if getattr(study, "_stop_flag", False):
            report.stopped = "sampler"  # e.g. the grid is exhausted
            break
    return report


def load_objective(factory: str, space: SearchSpace, config: TuneConfig, **kwargs: Any) -> Any:
    """``package.module:function`` called with the space, the config and ``kwargs``."""
    module, sep, name = factory.partition(":")
    if not sep:
        raise ConfigError(f"objective factory {factory!r} is invalid: use 'package.module:name'")
    try:
        fn = getattr(import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"objective factory {factory!r} cannot be imported: {e}") from e
    return fn(space=space, config=config, **kwargs)


def worker_main(spec: dict[str, Any]) -> WorkerReport:
    """Run one worker from a JSON-able spec (what a worker process is started with)."""
    space = SearchSpace.from_dict(spec["space"])
    config = TuneConfig.from_dict(spec["config"])
    objective = load_objective(spec["factory"], space, config, **spec.get("kwargs", {}))
    storage = open_storage(spec["storage"], config)
    study = open_study(
        storage,
        space,
        config,
        worker_index=int(spec.get("worker_index", 0)),
        max_resource=spec.get("max_resource", "auto"),
    )
    try:
        return run_worker(study, objective, config, budget=budget_of(space, config))
    finally:
        close_storage(storage)


def _fail_trials_of(study: optuna.Study, worker: str, config: TuneConfig) -> list[int]:
    """Mark a dead worker's running trials FAIL (and re-queue them as heartbeats would)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError

    failed = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get(WORKER_ATTR) != worker:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                failed.append(t.number)
        except UpdateFinishedTrialError:
            continue
        if config.max_retry > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(config.max_retry)
                retry(study, storage.get_trial(t._trial_id))
    return failed


def snapshot(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study``: its trials, directions and user attributes."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory"
    try:
        memory = optuna.create_study(directions=list(study.directions), study_name=study.study_name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for key, value in study.user_attrs.items():
        memory.set_user_attr(key, value)
    memory.add_trials(study.get_trials(deepcopy=True))
    return memory


def close_storage(storage: Any) -> None:
    """Close an RDB storage's connections (other storages hold none)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        with contextlib.suppress(Exception):
            storage.scoped_session.remove()
        engine.dispose()


@contextlib.contextmanager
def _scratch_dir(needed: bool) -> Iterator[str | None]:
    if not needed:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kfgpu-tune-") as tmp:
        yield tmp


@dataclass
class StudyOutcome:
    """A finished (or collected) study and how it was run."""

    study: optuna.Study
    storage: str
    budget: int
    wall_seconds: float
    workers: list[dict[str, Any]]


def run_study(
    space: SearchSpace,
    config: TuneConfig,
    *,
    factory: str,
    kwargs: dict[str, Any] | None = None,
    max_resource: int | str = "auto",
    processes: bool | None = None,
    on_study: Callable[[optuna.Study, str], None] | None = None,
) -> StudyOutcome:
    """Open (or resume) the study and run ``config.n_workers`` workers until the budget is
    spent; then hand the study back for reporting.

    One worker runs in this process unless ``processes`` is set; several run as child
    processes (``python -m kfgpu.tuning.worker``), watched: a child that dies has its
    running trial failed (and re-queued) at once.

    Raises:
        TrainingError: every worker process failed before the budget was spent.
    """
    kwargs = dict(kwargs or {})
    in_process = config.n_workers <= 1 and not processes
    t0 = time.perf_counter()
    with _scratch_dir(not in_process and not config.storage) as scratch:
        url = resolve_storage(
            config.storage, n_workers=1 if in_process else config.n_workers, scratch=scratch
        )
        if not in_process and not url:
            url = resolve_storage("", n_workers=2, scratch=scratch)
        storage = open_storage(url, config)
        study = open_study(storage, space, config, max_resource=max_resource)
        if on_study is not None:
            on_study(study, url)
        budget = budget_of(space, config)
        workers: list[dict[str, Any]] = []
        if config.n_workers == 0:
            pass
        elif in_process:
            objective = load_objective(factory, space, config, **kwargs)
            rep = run_worker(study, objective, config, budget=budget)
            workers.append(
                {"worker": rep.worker, "trials": rep.trials, "stopped": rep.stopped, "exit": 0}
            )
        else:
            workers = _run_processes(
                study, url, space, config, factory, kwargs, max_resource=max_resource
            )
            ok = [w for w in workers if w["exit"] == 0]
            counts = _counts(study)
            if not ok and _finished(counts, config) < budget:
                codes = [w["exit"] for w in workers]
                raise TrainingError(
                    f"every tuning worker failed (exit statuses {codes}) before study "
                    f"{config.study_name!r} spent its budget of {budget} trials; see the "
                    "workers' output above"
                )
        if storage is not None:
            # A snapshot in memory: the storage may be a scratch journal that goes away,
            # and an RDB's connections are closed here, not left to the garbage collector.
            study = snapshot(study)
            close_storage(storage)
    return StudyOutcome(
        study=study,
        storage=describe_storage(url),
        budget=budget,
        wall_seconds=time.perf_counter() - t0,
        workers=workers,
    )


def _visible_gpus() -> list[str]:
    """The CUDA device ids this process may use (``CUDA_VISIBLE_DEVICES`` or all)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _run_processes(
    study: optuna.Study,
    url: str,
    space: SearchSpace,
    config: TuneConfig,
    factory: str,
    kwargs: dict[str, Any],
    *,
    max_resource: int | str,
) -> list[dict[str, Any]]:
    procs = []
    reports = Path(tempfile.mkdtemp(prefix="kfgpu-tune-workers-"))
    gpus = _visible_gpus()
    for i in range(config.n_workers):
        spec = {
            "storage": url,
            "space": space.to_dict(),
            "config": config.to_dict(),
            "factory": factory,
            "kwargs": kwargs,
            "worker_index": i,
            "max_resource": max_resource,
            "report_path": str(reports / f"worker-{i}.json"),
        }
        # Output is inherited: the workers' training logs go where this step's go.
        # With GPUs (a tuning worker pod's limit), each process trains on its own, in turn.
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else None
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "kfgpu.tuning.worker", json.dumps(spec)], env=env
            )
        )
    host = socket.gethostname()
    results: dict[int, dict[str, Any]] = {}
    try:
        while len(results) < len(procs):
            for i, proc in enumerate(procs):
                if i in results or proc.poll() is None:
                    continue
                path = reports / f"worker-{i}.json"
                info: dict[str, Any] = (
                    json.loads(path.read_text()) if path.is_file() else {"trials": []}
                )
                info.update(worker=f"{host}:{proc.pid}", exit=proc.returncode)
                if proc.returncode != 0:
                    info["failed_trials"] = _fail_trials_of(study, info["worker"], config)
                    print(
                        f"tuning worker {i} (pid {proc.pid}) exited with status "
                        f"{proc.returncode}; failed its running trial(s) "
                        f"{info['failed_trials']}",
                        file=sys.stderr,
                        flush=True,
                    )
                results[i] = info
            time.sleep(0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        import shutil

        shutil.rmtree(reports, ignore_errors=True)
    return [results[i] for i in range(len(procs))]
