"""Components of hyperparameter tuning: a study's workers and its results."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from kfgpu._image import TRAIN_IMAGE

__all__ = ["tune_hyperparameters", "tune_worker"]


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def tune_hyperparameters(
    train: Input[Dataset],
    validation: Input[Dataset],
    transform: Input[Artifact],
    target: str,
    task: str,
    best_params: Output[Artifact],
    summary: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    search_space: str = "",
    study_name: str = "kfgpu-tune",
    storage: str = "",
    n_trials: int = 20,
    timeout: float = 0.0,
    sampler: str = "tpe",
    pruner: str = "median",
    objectives: str = "val_metric",
    n_workers: int = 1,
    seed: int = 0,
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    max_retry: int = 1,
    base_config: str = "{}",
) -> NamedTuple("Outputs", [("best_params_json", str), ("best_value", float)]):
    """Tune the tabular model's hyperparameters with Optuna and hand on the best ones.

    Opens the study by name (resuming it when the storage holds one), runs n_workers
    worker processes in this pod until the study holds n_trials finished trials (over
    every worker, in every pod), then writes the results. Each trial trains the model
    with Lightning; the validation loss is reported to the pruner at every epoch. Trials
    are compared on the gate's headline metric on the validation rows (``val_metric``).
    The output is the best trial's complete training configuration, so train_model
    refits exactly the trial that won (the report says so). After ParallelFor
    tune_worker tasks spent the budget, this step (n_workers=0) only collects.

    Args:
        train: the transformed training split (engineer_features).
        validation: the transformed validation split (pruning and the objective).
        transform: the fitted feature transform.
        target: the label column.
        task: ``classification`` or ``regression``.
        search_space: the space as JSON or YAML, e.g. ``{"learning_rate": {"type":
            "float", "low": 1e-4, "high": 1e-2, "log": true}, "hidden_sizes": {"type":
            "categorical", "choices": ["128", "256,256"]}}``; ``condition`` makes a
            parameter conditional. Empty: no study; best_params_json is ``{}`` (no
            overrides), so the step can sit in a pipeline with tuning off by default.
        study_name: the study's name; an existing study of that name is resumed.
        storage: ``postgresql://...`` (shared by pods), ``sqlite:///...`` or a journal
            file path; empty: ``KFGPU_TUNING_STORAGE`` from the environment, else a
            journal file in this pod (or memory for one worker).
        n_trials: the study's budget of finished (complete or pruned) trials.
        timeout: seconds after which workers start no new trial; 0 is no limit.
        sampler: ``tpe``, ``random``, ``cmaes`` or ``grid``.
        pruner: ``median``, ``hyperband`` or ``none``.
        objectives: ``val_metric`` (the gate's headline metric on the validation rows,
            ROC AUC or R², maximised) or ``val_loss``; followed by ``,n_params`` or
            ``,latency_ms`` for a multi-objective study (with pruner ``none``).
        n_workers: worker processes in this pod; 0 only collects the study's results.
        seed: seeds the sampler (worker i uses seed + i).
        heartbeat_interval: seconds between a running trial's heartbeats (RDB storage).
        grace_period: seconds without a heartbeat after which a trial is failed.
        max_retry: re-runs of a trial whose worker died; 0 skips it.
        base_config: training settings as JSON that every trial starts from, e.g.
            ``{"max_epochs": 10}``.

    Returns:
        best_params: the best trial's complete training configuration as JSON
            (train_model refits with it).
        summary: the study summary as JSON (every trial, state counts, Pareto front).
        report: optimisation history and parameter importances as HTML.
        metrics: best objective values, trial counts by state, epochs spent.
        best_params_json: that configuration as a JSON string, for train_model.
        best_value: the best trial's first objective value (NaN when skipped).
    """
    import json
    from collections import namedtuple

    from kfgpu.tuning.step import tune_hyperparameters_step

    result = tune_hyperparameters_step(
        train_path=train.path,
        val_path=validation.path,
        transform_path=transform.path,
        target=target,
        task=task,
        search_space=search_space,
        config={
            "study_name": study_name,
            "storage": storage,
            "n_trials": n_trials,
            "timeout": timeout,
            "sampler": sampler,
            "pruner": pruner,
            "objectives": objectives,
            "n_workers": n_workers,
            "seed": seed,
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "max_retry": max_retry,
        },
        base_config=json.loads(base_config or "{}"),
        best_params_path=best_params.path,
        summary_path=summary.path,
        report_path=report.path,
    )
    result.publish(metrics=metrics, best_params=best_params)
    return namedtuple("Outputs", ["best_params_json", "best_value"])(
        json.dumps(result.output.best_params, sort_keys=True),
        float(
            next(
                (v for k, v in result.metrics.items() if k in ("best_val_metric", "best_val_loss")),
                float("nan"),
            )
        ),
    )


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def tune_worker(
    train: Input[Dataset],
    validation: Input[Dataset],
    transform: Input[Artifact],
    target: str,
    task: str,
    search_space: str,
    metrics: Output[Metrics],
    study_name: str = "kfgpu-tune",
    storage: str = "",
    n_trials: int = 20,
    timeout: float = 0.0,
    sampler: str = "tpe",
    pruner: str = "median",
    objectives: str = "val_metric",
    n_workers: int = 1,
    worker_index: int = 0,
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    max_retry: int = 1,
    base_config: str = "{}",
) -> None:
    """One pod's workers on a shared study: for dsl.ParallelFor fan-out over one RDB.

    Every task opens the same study by name (the first creates it) and draws trials until
    the study holds n_trials finished trials. A pod that dies leaves its trial to the
    heartbeat: after grace_period it is failed and re-queued, and the other pods go on.
    Collect the results with tune_hyperparameters (n_workers=0) after the loop.

    Args:
        train: the transformed training split (engineer_features).
        validation: the transformed validation split.
        transform: the fitted feature transform.
        target: the label column.
        task: ``classification`` or ``regression``.
        search_space: the space as JSON or YAML (see tune_hyperparameters).
        study_name: the shared study's name.
        storage: the shared RDB, ``postgresql://...``; empty reads
            ``KFGPU_TUNING_STORAGE`` (inject it from the database's Secret).
        n_trials: the study's budget over every worker.
        timeout: seconds after which this pod starts no new trial; 0 is no limit.
        sampler: ``tpe``, ``random``, ``cmaes`` or ``grid``.
        pruner: ``median``, ``hyperband`` or ``none``.
        objectives: ``val_metric`` or ``val_loss``, optionally followed by ``,n_params``
            or ``,latency_ms``.
        n_workers: worker processes in this pod.
        worker_index: this task's index in the fan-out: seeds its sampler apart.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a trial is failed.
        max_retry: re-runs of a trial whose worker died; 0 skips it.
        base_config: training settings as JSON that every trial starts from.

    Returns:
        metrics: trials this pod ran, by final state, and its wall time.
    """
    import json

    from kfgpu.tuning.step import tune_worker_step

    result = tune_worker_step(
        train_path=train.path,
        val_path=validation.path,
        transform_path=transform.path,
        target=target,
        task=task,
        search_space=search_space,
        config={
            "study_name": study_name,
            "storage": storage,
            "n_trials": n_trials,
            "timeout": timeout,
            "sampler": sampler,
            "pruner": pruner,
            "objectives": objectives,
            "n_workers": n_workers,
            "seed": 1000 * worker_index,
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "max_retry": max_retry,
        },
        base_config=json.loads(base_config or "{}"),
    )
    result.publish(metrics=metrics)
