"""The training pipeline: validate -> engineer features -> train -> evaluate -> gate ->
register (only a blessed model).

Wiring and resources only: every step's logic is in the library, every step's settings
are pipeline parameters. Resources are ignored by ``kfp.local`` and honoured by Kubeflow.
"""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Model

from kfgpu.components import (
    check_gate,
    engineer_features,
    evaluate_model,
    fingerprint_data,
    register_model,
    train_model,
    tune_hyperparameters,
    validate_data,
)
from kfgpu.kube.storage import STORAGE_SECRET as OBJECT_STORAGE_SECRET
from kfgpu.kube.storage import use_object_storage_on_data_steps
from kfgpu.ops.platform import (
    PlatformConfig,
    apply_cache_policy,
    apply_gpu_settings,
    no_cache,
    use_study_storage,
)

__all__ = ["DEFAULT_DATA", "DEFAULT_TARGET", "TRAIN_PLATFORM", "training"]

#: Platform settings of the training task on a cluster: a memory-backed /dev/shm for DDP
#: workers, two retries (a preempted pod saves a checkpoint and the retry resumes), MLflow
#: credentials from the ``mlflow-credentials`` Secret when it exists. The GPU count and the
#: node selector (GPU product) are pipeline parameters.
TRAIN_PLATFORM = PlatformConfig(
    shm_size="8Gi",
    retries=2,
    retry_backoff="60s",
    retry_backoff_factor=2.0,
    mlflow_secret="mlflow-credentials",
)

#: The embedded default: 100,000 rows of the seeded synthetic fraud data (2% positives).
DEFAULT_DATA = "kfgpu://fraud?rows=100000&seed=0"
DEFAULT_TARGET = "is_fraud"

#: What the pipeline hands back: the bundle, the KFP metrics, the evaluation JSON, the report.
TrainingOutputs = NamedTuple(  # noqa: UP014  # KFP reads this functional form
    "TrainingOutputs",
    [
        ("model", Model),
        ("metrics", Metrics),
        ("evaluation", Artifact),
        ("report", HTML),
        ("verdict", Artifact),
        ("model_card", Markdown),
    ],
)


@dsl.pipeline(
    name="kfgpu-training",
    description=(
        "Validate tabular data, engineer features, train a PyTorch Lightning model and "
        "evaluate it on a held-out split; outputs a servable kfgpu model bundle."
    ),
)
def training(
    data_uri: str = DEFAULT_DATA,
    target: str = DEFAULT_TARGET,
    task: str = "auto",
    max_null_fraction: float = 0.5,
    leakage_threshold: float = 0.99,
    schema_uri: str = "",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_categories: int = 1000,
    feature_spec: str = "",
    time_column: str = "",
    model_family: str = "tabular_mlp",
    max_epochs: int = 20,
    batch_size: int = 1024,
    learning_rate: float = 0.001,
    weight_decay: float = 0.00001,
    hidden_sizes: str = "256,256",
    dropout: float = 0.1,
    precision: str = "32-true",
    accelerator: str = "auto",
    strategy: str = "auto",
    early_stopping_patience: int = 3,
    checkpoint_dir: str = "",
    checkpoint_every_n_steps: int = 0,
    accumulate_grad_batches: int = 1,
    gradient_clip_val: float = 0.0,
    lr_schedule: str = "cosine",
    threshold_policy: str = "f1",
    class_weight: str = "none",
    sampler: str = "shuffle",
    seed: int = 0,
    hyperparameters: str = "",
    search_space: str = "",
    tune_trials: int = 20,
    tune_workers: int = 1,
    tune_storage: str = "",
    tune_base_config: str = "{}",
    slice_columns: str = "auto",
    sensitive_column: str = "",
    gate_spec: str = "",
    registered_model_name: str = "",
    allow_signature_change: bool = False,
    gpus: int = 0,
    gpu_nodes: dict = {},  # noqa: B006  # KFP reads the default; a dict parameter
    mlflow_tracking_uri: str = "",
    storage_secret: str = OBJECT_STORAGE_SECRET,
) -> TrainingOutputs:
    # The data's content fingerprint is part of validate_data's cache key, so a file
    # replaced under the same URI is never served from the cache (see kfgpu.ops.platform).
    fingerprint = fingerprint_data(data_uri=data_uri).set_display_name("fingerprint data")
    validated = validate_data(
        data_uri=data_uri,
        target=target,
        task=task,
        max_null_fraction=max_null_fraction,
        leakage_threshold=leakage_threshold,
        schema_uri=schema_uri,
        data_fingerprint=fingerprint.output,
    ).set_display_name("validate data")
    apply_cache_policy(fingerprint, validated)
    features = engineer_features(
        dataset=validated.outputs["dataset"],
        target=target,
        task=validated.outputs["task"],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        max_categories=max_categories,
        feature_spec=feature_spec,
        time_column=time_column,
    ).set_display_name("engineer features")
    # With a search space, Optuna trials train on the same splits (each from
    # tune_base_config) and are compared on the gate's metric on the validation rows;
    # train_model then refits with the winning trial's complete configuration. Without a
    # search space the step returns "{}" at once.
    tuned = tune_hyperparameters(
        train=features.outputs["train"],
        validation=features.outputs["validation"],
        transform=features.outputs["transform"],
        target=target,
        task=validated.outputs["task"],
        search_space=search_space,
        n_trials=tune_trials,
        n_workers=tune_workers,
        storage=tune_storage,
        base_config=tune_base_config,
        seed=seed,
    ).set_display_name("tune hyperparameters")
    tuned.set_cpu_request("4").set_memory_request("16G")
    # On a cluster the shared study lives in PostgreSQL (manifests/postgres); its URL comes
    # from that Secret when it exists.
    use_study_storage(tuned)
    trained = train_model(
        train=features.outputs["train"],
        validation=features.outputs["validation"],
        transform=features.outputs["transform"],
        profile=features.outputs["profile"],
        target=target,
        task=validated.outputs["task"],
        model_family=model_family,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        hidden_sizes=hidden_sizes,
        dropout=dropout,
        precision=precision,
        accelerator=accelerator,
        # One GPU setting: the pod's accelerator limit below and Lightning's devices, so a
        # pod never holds GPUs it does not train on; 0 trains on the CPU (one process).
        devices=gpus,
        strategy=strategy,
        seed=seed,
        early_stopping_patience=early_stopping_patience,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_n_steps=checkpoint_every_n_steps,
        accumulate_grad_batches=accumulate_grad_batches,
        gradient_clip_val=gradient_clip_val,
        lr_schedule=lr_schedule,
        threshold_policy=threshold_policy,
        class_weight=class_weight,
        sampler=sampler,
        hyperparameters=hyperparameters,
        tuned_hyperparameters=tuned.outputs["best_params_json"],
        mlflow_tracking_uri=mlflow_tracking_uri,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ).set_display_name("train model")
    # GPUs (the run-time count that is also devices; the product through the gpu_nodes node
    # selector, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}), /dev/shm, retries,
    # secrets.
    apply_gpu_settings(trained, TRAIN_PLATFORM, gpus=gpus, node_selector_param=gpu_nodes)
    trained.set_cpu_request("4").set_memory_request("16G").set_memory_limit("32G")
    evaluated = evaluate_model(
        model=trained.outputs["model"],
        test=features.outputs["test"],
        slice_columns=slice_columns,
        sensitive_column=sensitive_column,
        mlflow_tracking_uri=mlflow_tracking_uri,
    ).set_display_name("evaluate model")
    # The gate compares with thresholds and with the registry's champion (of the same task,
    # target and inputs only); its verdict and the model card are written whichever way it
    # goes. An empty registered_model_name is derived from data_uri and the target.
    gate = check_gate(
        evaluation=evaluated.outputs["evaluation"],
        gate_spec=gate_spec,
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        data_uri=data_uri,
        allow_signature_change=allow_signature_change,
    ).set_display_name("check gate")
    # It reads the registry's current champion: a cached verdict may judge against an old one.
    no_cache(gate)
    # Only a blessed model is registered (and promoted to champion, unless another run
    # promoted one after this gate read the champion); without a registry, nothing is.
    with (
        dsl.If(gate.outputs["Output"] == True, name="blessed"),  # noqa: E712
        dsl.If(mlflow_tracking_uri != "", name="registry configured"),
    ):
        registered = register_model(
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
            verdict=gate.outputs["verdict"],
            model_card=gate.outputs["model_card"],
            registered_model_name=registered_model_name,
            mlflow_tracking_uri=mlflow_tracking_uri,
            allow_signature_change=allow_signature_change,
        ).set_display_name("register model")
        # Writes to the registry: a cache hit would report a registration that never happened.
        no_cache(registered)
    for task_ in (validated, features, evaluated, gate):
        task_.set_cpu_request("1").set_memory_request("4G")
    # S3/GCS credentials for the steps that read or write data (kfgpu.kube.storage).
    use_object_storage_on_data_steps(storage_secret)
    return TrainingOutputs(
        model=trained.outputs["model"],
        metrics=evaluated.outputs["metrics"],
        evaluation=evaluated.outputs["evaluation"],
        report=evaluated.outputs["report"],
        verdict=gate.outputs["verdict"],
        model_card=gate.outputs["model_card"],
    )
