"""The multi-node training launcher component."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component signatures to build their interfaces.

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kfgpu._image import BASE_IMAGE

__all__ = ["launch_training"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def launch_training(
    train: Input[Dataset],
    validation: Input[Dataset],
    transform: Input[Artifact],
    profile: Input[Artifact],
    target: str,
    task: str,
    model: Output[Model],
    metrics: Output[Metrics],
    job: Output[Artifact],
    kind: str = "PyTorchJob",
    num_nodes: int = 2,
    gpus_per_node: int = 8,
    gpu_type: str = "",
    namespace: str = "kubeflow",
    image: str = "",
    job_name: str = "kfgpu-train",
    timeout_s: int = 86400,
    max_epochs: int = 20,
    batch_size: int = 1024,
    learning_rate: float = 0.001,
    hidden_sizes: str = "256,256",
    precision: str = "bf16-mixed",
    seed: int = 0,
    hyperparameters: str = "",
    mlflow_tracking_uri: str = "",
    storage_secret: str = "",
) -> None:
    """Train on many GPU nodes: render a Kubeflow Trainer TrainJob, a Training Operator
    PyTorchJob or an MPIJob (Horovod), create it, wait, and hand on its verified bundle.

    KFP cannot take GPU counts from a runtime parameter; this launcher can. Every pod
    gets a memory-backed /dev/shm and NCCL settings; the job streams its conditions into
    this step's log, is deleted on timeout or cancel, and on failure the step fails naming
    the rank that failed first, its exit code, reason and last log lines. The job's rank 0
    uploads the bundle next to this step's output; this step downloads and verifies it.
    Needs a service account allowed to create and delete the job kind (manifests/).

    Args:
        train: the transformed training split (read by every pod from object storage).
        validation: the transformed validation split.
        transform: the fitted transform (goes into the bundle).
        profile: the training data's reference profile (goes into the bundle).
        target: the label column.
        task: ``classification`` or ``regression``.
        kind: ``TrainJob`` (Kubeflow Trainer v2), ``PyTorchJob`` (Training Operator v1)
            or ``MPIJob`` (Horovod, v2beta1).
        num_nodes: nodes (pods) to train on.
        gpus_per_node: GPUs per node; 0 trains on CPU.
        gpu_type: a GPU product for the node selector, e.g. ``NVIDIA-H100-80GB-HBM3``.
        namespace: where the job runs.
        image: the training image; empty uses the kfgpu train (or horovod) image.
        job_name: the job's name (lower case).
        timeout_s: seconds before the job is deleted and the step fails.
        max_epochs: upper bound on epochs.
        batch_size: rows per step per GPU.
        learning_rate: AdamW learning rate.
        hidden_sizes: hidden layer widths, comma-separated.
        precision: ``32-true``, ``16-mixed`` or ``bf16-mixed``.
        seed: seeds weights and shuffling.
        hyperparameters: a JSON object of training settings overriding the ones above
            (tune_hyperparameters' best parameters); empty: none.
        mlflow_tracking_uri: MLflow tracking URI; the job's outcome (and on failure the
            first failed rank, pod, exit code and reason) is recorded as ``kfgpu.job.*`` tags.
        storage_secret: an object-storage Secret (S3 keys, GCS key; see the README's
            "Credentials") every job pod gets, optional at run time; the pods read the
            splits from and write the bundle to the pipeline root with it. Empty: none.

    Returns:
        model: the model bundle the job wrote, checksums verified.
        metrics: job seconds, nodes and GPUs per node.
        job: how the job ended (JSON), written before the step succeeds or fails: status,
            conditions, and the rank that failed first with its exit code and last log lines.
    """
    from kfgpu.kube.step import launch_training_step
    from kfgpu.training.step import parse_overrides

    result = launch_training_step(
        train_uri=train.uri,
        val_uri=validation.uri,
        transform_uri=transform.uri,
        profile_uri=profile.uri,
        target=target,
        task=task,
        bundle_path=model.path,
        staging_uri=model.uri + ".staging",
        config={
            "max_epochs": max_epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "hidden_sizes": hidden_sizes,
            "precision": precision,
            "seed": seed,
            **parse_overrides(hyperparameters),
        },
        kind=kind,
        name=job_name,
        namespace=namespace,
        image=image,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        gpu_type=gpu_type,
        timeout_s=timeout_s,
        outcome_path=job.path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        storage_secret=storage_secret,
    )
    result.publish(metrics=metrics, model=model)
