"""The tuning pipeline: validate -> engineer features -> N worker pods on one study ->
collect the best parameters.

The workers are a ``dsl.ParallelFor`` over ``workers`` tasks that share one Optuna study
in PostgreSQL (``manifests/postgres``): each task reads the storage URL from the
``optuna-postgres`` Secret (key ``url``) as ``KFGPU_TUNING_STORAGE``, unless the
``storage`` parameter names one. A pod that dies leaves its trial to the heartbeat; the
others finish the budget. Then ``tune_hyperparameters`` with ``n_workers=0`` writes the
best parameters, the summary and the HTML report.
"""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import List, NamedTuple  # noqa: UP035  # KFP reads typing.List in component signatures

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics

from kfgpu._image import BASE_IMAGE
from kfgpu.components import engineer_features, tune_hyperparameters, tune_worker, validate_data
from kfgpu.kube.storage import STORAGE_SECRET as OBJECT_STORAGE_SECRET
from kfgpu.kube.storage import use_object_storage_on_data_steps
from kfgpu.ops.platform import (
    STUDY_STORAGE_SECRET,
    PlatformConfig,
    apply_gpu_settings,
    use_study_storage,
)
from kfgpu.pipelines.training import DEFAULT_DATA, DEFAULT_TARGET

__all__ = ["DEFAULT_SEARCH_SPACE", "STORAGE_SECRET", "WORKER_PLATFORM", "tuning"]

#: What the pipeline hands back: the collected study's best parameters (train_model's
#: ``hyperparameters``), its summary, the HTML report and the KFP metrics.
TuningOutputs = NamedTuple(  # noqa: UP014  # KFP reads this functional form
    "TuningOutputs",
    [("best_params", Artifact), ("summary", Artifact), ("report", HTML), ("metrics", Metrics)],
)

#: The Secret (from manifests/postgres) holding the study storage URL under ``url``.
STORAGE_SECRET = STUDY_STORAGE_SECRET

#: Platform settings of a tuning worker pod; its GPU count is the ``gpus_per_worker``
#: parameter (with GPUs, the nvidia.com/gpu taint is tolerated).
WORKER_PLATFORM = PlatformConfig()

DEFAULT_SEARCH_SPACE = (
    '{"learning_rate": {"type": "float", "low": 0.0001, "high": 0.01, "log": true}, '
    '"hidden_sizes": {"type": "categorical", "choices": ["128", "256,256", "512,256"]}, '
    '"dropout": {"type": "float", "low": 0.0, "high": 0.4}, '
    '"weight_decay": {"type": "float", "low": 1e-06, "high": 0.001, "log": true}}'
)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def worker_indices(workers: int, task: str) -> List[dict]:  # noqa: UP006
    """One item per worker pod for the ParallelFor: its index 0..workers-1 and the data's
    task (validate_data's). The task travels in the loop items, not as a second task output
    into the loop, which kfp.local would replace by the loop item."""
    if workers < 1:
        raise ValueError(f"workers={workers} is invalid: use 1 or more worker pods")
    return [{"worker_index": i, "data_task": task} for i in range(workers)]


@dsl.pipeline(
    name="kfgpu-tuning",
    description=(
        "Tune the tabular model's hyperparameters with Optuna: worker pods in a ParallelFor "
        "share one study in PostgreSQL; outputs the best parameters and an HTML report."
    ),
)
def tuning(
    data_uri: str = DEFAULT_DATA,
    target: str = DEFAULT_TARGET,
    task: str = "auto",
    search_space: str = DEFAULT_SEARCH_SPACE,
    study_name: str = "kfgpu-tune",
    storage: str = "",
    n_trials: int = 40,
    timeout: float = 0.0,
    sampler: str = "tpe",
    pruner: str = "median",
    objectives: str = "val_metric",
    workers: int = 4,
    processes_per_worker: int = 1,
    gpus_per_worker: int = 0,
    base_config: str = '{"max_epochs": 10}',
    seed: int = 0,
    storage_secret: str = OBJECT_STORAGE_SECRET,
) -> TuningOutputs:
    validated = validate_data(data_uri=data_uri, target=target, task=task).set_display_name(
        "validate data"
    )
    features = engineer_features(
        dataset=validated.outputs["dataset"],
        target=target,
        task=validated.outputs["task"],
        seed=seed,
    ).set_display_name("engineer features")
    indices = worker_indices(workers=workers, task=validated.outputs["task"]).set_display_name(
        "worker indices"
    )
    with dsl.ParallelFor(items=indices.output, name="workers") as item:
        worker = tune_worker(
            train=features.outputs["train"],
            validation=features.outputs["validation"],
            transform=features.outputs["transform"],
            target=target,
            task=item.data_task,
            search_space=search_space,
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            timeout=timeout,
            sampler=sampler,
            pruner=pruner,
            objectives=objectives,
            n_workers=processes_per_worker,
            worker_index=item.worker_index,
            base_config=base_config,
        ).set_display_name("tune worker")
        worker.set_cpu_limit("4").set_memory_limit("16G").set_retry(num_retries=2)
        # Each worker pod's GPUs (a run-time count, 0: none); its trials train on them
        # (accelerator auto), one GPU per worker process.
        apply_gpu_settings(worker, WORKER_PLATFORM, gpus=gpus_per_worker)
        use_study_storage(worker)
    collect = tune_hyperparameters(
        train=features.outputs["train"],
        validation=features.outputs["validation"],
        transform=features.outputs["transform"],
        target=target,
        task=validated.outputs["task"],
        search_space=search_space,
        study_name=study_name,
        storage=storage,
        n_trials=n_trials,
        sampler=sampler,
        pruner=pruner,
        objectives=objectives,
        n_workers=0,
        base_config=base_config,
    ).set_display_name("collect best parameters")
    collect.after(worker)
    use_study_storage(collect)
    # S3/GCS credentials for the steps that read or write data (kfgpu.kube.storage).
    use_object_storage_on_data_steps(storage_secret)
    return TuningOutputs(
        best_params=collect.outputs["best_params"],
        summary=collect.outputs["summary"],
        report=collect.outputs["report"],
        metrics=collect.outputs["metrics"],
    )
