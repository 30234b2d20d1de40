"""Studies on real storages: workers share one budget, survive a killed worker, prune.

Acceptance tests of issue 6: two worker processes on a real PostgreSQL (started by the
session fixture) finish one study with every trial accounted for; a worker killed with
SIGKILL mid-trial leaves its trial FAIL through the heartbeat while the other finishes the
budget; median pruning on a learning-curve objective cuts the epochs spent by 40% or more
with the best value within 1% of the unpruned study's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from kfgpu.errors import ConfigError
from kfgpu.tuning import SearchSpace, TuneConfig
from kfgpu.tuning.study import (
    SURPLUS_ATTR,
    WORKER_ATTR,
    close_storage,
    describe_storage,
    open_storage,
    open_study,
    resolve_storage,
    run_study,
    snapshot,
)
from kfgpu.tuning.synthetic import CURVE_SPACE

pytestmark = pytest.mark.slow

FIXED = "kfgpu.tuning.synthetic:fixed_duration"
CURVE = "kfgpu.tuning.synthetic:learning_curve"
SPACE = SearchSpace.from_dict(CURVE_SPACE)
State = optuna.trial.TrialState


def _load(url: str, name: str, config: TuneConfig | None = None) -> optuna.Study:
    """The stored study as an in-memory snapshot (the storage's connections closed)."""
    storage = open_storage(resolve_storage(url, n_workers=1), config or TuneConfig())
    try:
        return snapshot(optuna.load_study(study_name=name, storage=storage))
    finally:
        close_storage(storage)


def _real(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if not t.user_attrs.get(SURPLUS_ATTR)]


def test_two_worker_processes_on_postgres_share_one_budget(postgres) -> None:
    url = postgres.new_database()
    cfg = TuneConfig(study_name="two-workers", storage=url, n_trials=16, n_workers=2, pruner="none")
    # 0.4 s a trial: both workers start before the 16 trials (3.2 s each) are gone, also on a
    # loaded CI machine where one process imports seconds after the other.
    outcome = run_study(SPACE, cfg, factory=FIXED, kwargs={"seconds": 0.4})

    study = _load(url, "two-workers")
    trials = _real(study)
    assert [t.state for t in trials].count(State.COMPLETE) == 16
    assert all(t.state == State.COMPLETE for t in trials), [t.state for t in trials]
    surplus = [t for t in study.get_trials() if t.user_attrs.get(SURPLUS_ATTR)]
    assert all(t.state == State.FAIL for t in surplus)  # created in a race, never run
    # Every trial ran in exactly one worker, each worker's report matches the storage.
    assert [w["exit"] for w in outcome.workers] == [0, 0]
    ran = [n for w in outcome.workers for n in w["trials"]]
    assert sorted(ran) == sorted(t.number for t in trials)
    assert len(ran) == len(set(ran))
    for w in outcome.workers:
        assert w["trials"], "both workers drew trials"
        assert all(study.trials[n].user_attrs[WORKER_ATTR] == w["worker"] for n in w["trials"])
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 16
    assert outcome.storage.startswith("postgresql+psycopg://postgres@127.0.0.1")


def _start_worker(
    url: str, cfg: TuneConfig, index: int, seconds: float, stderr: int
) -> subprocess.Popen:
    spec = {
        "storage": url,
        "space": SPACE.to_dict(),
        "config": cfg.to_dict(),
        "factory": FIXED,
        "kwargs": {"seconds": seconds},
        "worker_index": index,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kfgpu.tuning.worker", json.dumps(spec)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


@pytest.mark.parametrize("max_retry", [1, 0], ids=["retried", "skipped"])
def test_killed_worker_trial_fails_by_heartbeat_and_budget_completes(postgres, max_retry) -> None:
    url = postgres.new_database()
    cfg = TuneConfig(
        study_name="killed",
        storage=url,
        n_trials=8,
        pruner="none",
        heartbeat_interval=1,
        grace_period=3,
        max_retry=max_retry,
    )
    # Two "pods": independent processes, nothing watching them but the storage.
    victim = _start_worker(url, cfg, 0, seconds=0.8, stderr=subprocess.DEVNULL)
    survivor = _start_worker(url, cfg, 1, seconds=0.8, stderr=subprocess.PIPE)
    victim_id = f"{socket.gethostname()}:{victim.pid}"
    killed = None
    deadline = time.monotonic() + 60
    while killed is None:
        assert time.monotonic() < deadline, "the victim never started a trial"
        assert victim.poll() is None, "the victim exited before it was killed"
        try:
            study = _load(url, "killed")
        except KeyError:
            time.sleep(0.1)
            continue
        running = [
            t
            for t in study.get_trials(states=(State.RUNNING,))
            if t.user_attrs.get(WORKER_ATTR) == victim_id
        ]
        if running:
            time.sleep(0.2)  # well inside the 0.8 s trial
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            killed = running[0].number
        time.sleep(0.05)
    _, err = survivor.communicate(timeout=90)
    assert survivor.returncode == 0, err

    study = _load(url, "killed")
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[killed].state == State.FAIL  # not RUNNING forever
    trials = _real(study)
    assert not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]
    assert [t.state for t in trials].count(State.COMPLETE) == 8
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    if max_retry:
        (retry,) = retries
        assert retry.state == State.COMPLETE and retry.params == by_number[killed].params
    else:
        assert retries == []


def _epochs(study: optuna.Study) -> int:
    return sum(int(t.user_attrs["epochs_run"]) for t in study.get_trials())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_pruning_cuts_epochs_and_keeps_the_best(seed: int) -> None:
    # The random sampler with one seed proposes the same 40 candidates in both studies,
    # so the difference is what pruning did: the epochs it saved, the best it lost.
    def study(pruner: str) -> optuna.Study:
        cfg = TuneConfig(
            study_name=f"curve-{pruner}",
            n_trials=40,
            sampler="random",
            pruner=pruner,
            seed=seed,
            n_startup_trials=5,
            n_warmup_steps=3,
            objectives=("val_loss",),  # the synthetic curve is a loss
        )
        return run_study(SPACE, cfg, factory=CURVE, kwargs={"epochs": 30}).study

    full, pruned = study("none"), study("median")
    assert [t.params for t in full.trials] == [t.params for t in pruned.trials]
    assert _epochs(full) == 40 * 30
    assert _epochs(pruned) <= 0.6 * _epochs(full)
    assert [t.state for t in pruned.trials].count(State.PRUNED) >= 10
    assert pruned.best_value <= full.best_value * 1.01


def test_hyperband_prunes_on_the_same_curve() -> None:
    cfg = TuneConfig(
        study_name="hb", n_trials=30, pruner="hyperband", seed=0, objectives=("val_loss",)
    )
    study = run_study(SPACE, cfg, factory=CURVE, kwargs={"epochs": 27}, max_resource=27).study
    assert [t.state for t in study.trials].count(State.PRUNED) >= 5
    assert _epochs(study) < 30 * 27


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resume_a_study_by_name(tmp_path: Path, kind: str) -> None:
    storage = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else str(tmp_path / "s.journal")
    first = TuneConfig(study_name="resume-me", storage=storage, n_trials=5, pruner="none")
    run_study(SPACE, first, factory=FIXED, kwargs={"seconds": 0.0})
    before = _load(storage, "resume-me")
    assert len(before.trials) == 5
    # Same name, larger budget: the five trials stay and three more are drawn.
    again = TuneConfig(study_name="resume-me", storage=storage, n_trials=8, pruner="none")
    outcome = run_study(SPACE, again, factory=FIXED, kwargs={"seconds": 0.0})
    trials = outcome.study.get_trials()
    assert [t.number for t in trials] == list(range(8))
    assert [t.params for t in trials[:5]] == [t.params for t in before.trials]
    assert outcome.workers[0]["trials"] == [5, 6, 7]
    # Spent budget: a re-run draws nothing and only collects.
    assert run_study(SPACE, again, factory=FIXED).workers[0]["trials"] == []


def test_resuming_with_other_objectives_is_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    cfg = TuneConfig(study_name="mo", storage=storage, n_trials=2, pruner="none")
    store = open_storage(storage, cfg)
    open_study(store, SPACE, cfg)
    close_storage(store)
    multi = TuneConfig(
        study_name="mo",
        storage=storage,
        n_trials=2,
        pruner="none",
        objectives=("val_loss", "n_params"),
    )
    store = open_storage(storage, multi)
    with pytest.raises(ConfigError, match=r"study_name='mo' is invalid: the stored study's"):
        open_study(store, SPACE, multi)
    close_storage(store)
    # The same count of objectives, another direction: maximising what was minimised.
    loss = TuneConfig(study_name="mo", storage=storage, n_trials=2, objectives=("val_loss",))
    store = open_storage(storage, loss)
    with pytest.raises(ConfigError, match=r"\['maximize'\], this run's \(\['val_loss'\]\)"):
        open_study(store, SPACE, loss)
    close_storage(store)


def test_local_processes_on_a_journal_file_and_grid_budget(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(
        {
            "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
            "y": {"type": "int", "low": 0, "high": 1},
        }
    )
    cfg = TuneConfig(study_name="grid", n_trials=50, sampler="grid", pruner="none", n_workers=2)
    outcome = run_study(space, cfg, factory=FIXED, kwargs={"seconds": 0.0})
    assert outcome.budget == 10 and outcome.storage.startswith("journal:")
    complete = [t for t in _real(outcome.study) if t.state == State.COMPLETE]
    # Every grid point ran; two workers may both draw one point in the same instant (Optuna's
    # GridSampler), in which case it runs twice and the budget still covers the whole grid.
    assert {(t.params["x"], t.params["y"]) for t in complete} == {
        (x, y) for x in (0.0, 0.25, 0.5, 0.75, 1.0) for y in (0, 1)
    }
    assert 10 <= len(complete) <= 12


def test_storage_resolution_and_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KFGPU_TUNING_STORAGE", raising=False)
    assert resolve_storage("", n_workers=1) == ""
    assert resolve_storage("", n_workers=3, scratch="/x").startswith("journal:/x/")
    assert resolve_storage("postgresql://u:p@h/db", n_workers=1) == "postgresql+psycopg://u:p@h/db"
    monkeypatch.setenv("KFGPU_TUNING_STORAGE", "postgres://u:secret@h:5432/optuna")
    url = resolve_storage("", n_workers=1)
    assert url == "postgresql+psycopg://u:secret@h:5432/optuna"
    assert "secret" not in describe_storage(url)
    cfg = TuneConfig()
    with pytest.raises(ConfigError, match="storage='redis://h' is invalid"):
        open_storage("redis://h", cfg)
    with pytest.raises(ConfigError, match=r"directory .* does not exist"):
        open_storage(str(tmp_path / "no" / "such" / "s.journal"), cfg)


def test_every_worker_orders_the_grid_alike() -> None:
    from kfgpu.tuning.study import make_sampler

    space = SearchSpace.from_dict({"x": {"type": "categorical", "choices": list("abcdefgh")}})
    # tune_worker pods differ in seed and worker index; grid ids mean the same in each.
    grids = [
        make_sampler(space, TuneConfig(sampler="grid", seed=seed), worker_index=i)._all_grids
        for seed, i in ((0, 0), (0, 1), (1000, 0), (7, 3))
    ]
    assert all(g == grids[0] for g in grids)


def test_each_worker_process_trains_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tuning worker pod given GPUs (gpus_per_worker) runs one process per GPU in turn."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    cfg = TuneConfig(study_name="gpus", n_trials=6, pruner="none", n_workers=2)
    outcome = run_study(
        SPACE, cfg, factory="tests.unit.tuning.factories:record_devices", kwargs={"seconds": 0.3}
    )
    trials = {t.number: t for t in _real(outcome.study)}
    seen = []
    for w in outcome.workers:
        devices = {trials[n].user_attrs["cuda_visible_devices"] for n in w["trials"]}
        assert len(devices) <= 1, devices  # one process, one GPU
        seen += sorted(devices)
    assert set(seen) <= {"3", "5"} and len(seen) == len(set(seen))
