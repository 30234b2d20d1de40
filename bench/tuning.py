"""Tuning overhead: study wall time over the sum of objective times, and 2 workers over 1.

100 trials (``KFGPU_BENCH_TUNE_TRIALS``) of a fixed-duration objective
(``kfgpu.tuning.synthetic:fixed_duration``): each trial suggests two floats with the
default TPE sampler and then busy-waits ``KFGPU_BENCH_TUNE_MS`` ms (default 300). A busy
wait, not a sleep: like training, a trial holds a CPU core, so two workers on two cores can
at best halve the wall time, and sampler and storage work compete with trials for the
cores as they would in a pod. Both runs use worker processes (``python -m
kfgpu.tuning.worker``) on a journal file, the local multi-process storage, started and
timed by ``run_study`` in this process: one worker, then two, on fresh studies.

Figures: ``wall_over_objective`` is the one-worker study's wall time (process start to
last trial, everything included) over the sum of its objective times (goal <= 1.10);
``in_study_wall_over_objective`` the same from the first trial's start to the last
trial's end; ``speedup_2_workers`` the one-worker wall time over the two-worker one
(goal >= 1.7 on a 2-core machine).
"""

from __future__ import annotations

import os
from typing import Any

from bench._harness import benchmark, progress

SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}


def _run(workers: int, trials: int, seconds: float) -> dict[str, float]:
    from kfgpu.tuning import SearchSpace, TuneConfig
    from kfgpu.tuning.study import SECONDS_ATTR, run_study

    cfg = TuneConfig(
        study_name=f"bench-{workers}", n_trials=trials, n_workers=workers, pruner="none"
    )
    outcome = run_study(
        SearchSpace.from_dict(SPACE),
        cfg,
        factory="kfgpu.tuning.synthetic:fixed_duration",
        kwargs={"seconds": seconds},
        processes=True,
    )
    done: list[Any] = [t for t in outcome.study.get_trials() if t.state.name == "COMPLETE"]
    if len(done) != trials:
        raise RuntimeError(f"{workers} worker(s) completed {len(done)} of {trials} trials")
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return {
        "wall_s": outcome.wall_seconds,
        "in_study_s": (end - start).total_seconds(),
        "objective_s": sum(float(t.user_attrs[SECONDS_ATTR]) for t in done),
    }


@benchmark("tuning")
def tuning() -> dict[str, float]:
    """Study wall over summed objective time (1 worker), and 2 workers' speed-up over 1."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = int(os.environ.get("KFGPU_BENCH_TUNE_TRIALS", "100"))
    seconds = float(os.environ.get("KFGPU_BENCH_TUNE_MS", "300")) / 1000
    progress(f"tuning: {trials} trials of a {seconds * 1000:.0f} ms busy wait, 1 worker")
    one = _run(1, trials, seconds)
    progress(f"tuning: the same with 2 worker processes ({os.cpu_count()} cores)")
    two = _run(2, trials, seconds)
    return {
        "trials": float(trials),
        "objective_ms": seconds * 1000,
        "cores": float(os.cpu_count() or 0),
        "one_worker_wall_s": one["wall_s"],
        "one_worker_objective_sum_s": one["objective_s"],
        "wall_over_objective": one["wall_s"] / one["objective_s"],
        "in_study_wall_over_objective": one["in_study_s"] / one["objective_s"],
        "two_workers_wall_s": two["wall_s"],
        "two_workers_objective_sum_s": two["objective_s"],
        "speedup_2_workers": one["wall_s"] / two["wall_s"],
    }
