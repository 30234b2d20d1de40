"""The launch_training step: render a multi-node job, run it, hand on its verified bundle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kfgpu._step import StepResult, step
from kfgpu.errors import BundleError, ConfigError

if TYPE_CHECKING:
    from kfgpu.kube.jobs import JobKind
    from kfgpu.kube.launcher import LaunchResult

__all__ = ["LaunchOutput", "launch_training_step", "record_outcome", "training_command"]


@dataclass(frozen=True)
class LaunchOutput:
    """What :func:`launch_training_step` returns beside the bundle.

    Attributes:
        conditions: the training job's final status conditions.
    """

    conditions: list[dict[str, Any]]


def training_command(
    *,
    kind: str,
    train_uri: str,
    val_uri: str,
    transform_uri: str,
    profile_uri: str,
    target: str,
    task: str,
    staging_uri: str,
    config: dict[str, Any],
    fp16_compression: bool = False,
) -> list[str]:
    """The command every training process runs (Horovod's is started by the MPI launcher)."""
    common = [
        "--train",
        train_uri,
        "--val",
        val_uri,
        "--transform",
        transform_uri,
        "--target",
        target,
        "--task",
        task,
    ]
    if profile_uri:
        common += ["--profile", profile_uri]
    if kind == "MPIJob":
        # Horovod reads local files: the MPI launcher starts one process per slot.
        return [
            "horovodrun",
            "--gloo" if not config.get("devices") else "--mpi",
            "python",
            "-m",
            "kfgpu.training.horovod",
            *common,
            "--bundle",
            staging_uri,
            "--config",
            json.dumps(config),
            *(["--fp16-compression"] if fp16_compression else []),
        ]
    return [
        "python",
        "-m",
        "kfgpu.training.distributed",
        *common,
        "--bundle-uri",
        staging_uri,
        "--config",
        json.dumps(config),
    ]


def record_outcome(
    result: LaunchResult,
    *,
    kind: str,
    name: str,
    namespace: str,
    outcome_path: str = "",
    mlflow_tracking_uri: str = "",
) -> dict[str, Any]:
    """Write how a job ended to ``outcome_path`` (JSON) and to MLflow tags; return it."""
    import json

    from kfgpu.data._atomic import atomic_write_text
    from kfgpu.registry import tracking

    failed = result.failed_rank or {}
    outcome: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "namespace": namespace,
        "status": result.status,
        "seconds": round(result.seconds, 3),
        "conditions": result.conditions,
        "failed_rank": result.failed_rank,
    }
    if outcome_path:
        atomic_write_text(outcome_path, json.dumps(outcome, indent=2, default=str) + "\n")
    uri = tracking.resolve_tracking_uri(mlflow_tracking_uri)
    if uri:
        tags = {
            "kfgpu.job.kind": kind,
            "kfgpu.job.name": name,
            "kfgpu.job.namespace": namespace,
            "kfgpu.job.status": result.status,
        }
        if failed:
            tags |= {
                "kfgpu.job.failed_rank": str(failed.get("rank")),
                "kfgpu.job.failed_role": str(failed.get("role")),
                "kfgpu.job.failed_pod": str(failed.get("pod")),
                "kfgpu.job.exit_code": str(failed.get("exit_code")),
                "kfgpu.job.failure_reason": str(failed.get("reason")),
            }
        run_id = tracking.start_run(uri, run_name=f"launch {kind} {name}", tags=tags)
        tracking.log_metrics(uri, run_id, {"job_seconds": result.seconds})
        tracking.end_run(
            uri, run_id, status="FINISHED" if result.status == "Succeeded" else "FAILED"
        )
    return outcome


@step("launch_training")
def launch_training_step(
    *,
    train_uri: str,
    val_uri: str,
    transform_uri: str,
    profile_uri: str,
    target: str,
    task: str,
    bundle_path: str,
    staging_uri: str,
    config: dict[str, Any],
    kind: str = "PyTorchJob",
    name: str = "kfgpu-train",
    namespace: str = "kubeflow",
    image: str = "",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
    gpu_type: str = "",
    timeout_s: int = 86_400,
    poll_s: float = 10.0,
    api_client: Any = None,
    outcome_path: str = "",
    mlflow_tracking_uri: str = "",
    storage_secret: str = "",
) -> StepResult[LaunchOutput]:
    """Run training as a TrainJob, PyTorchJob or MPIJob and copy its bundle to ``bundle_path``.

    The job's rank 0 uploads the bundle to ``staging_uri``; this step downloads it and
    verifies its checksums, so the KFP output is complete or absent.

    How the job ended is recorded before the step succeeds or fails: as JSON at
    ``outcome_path`` (status, seconds, conditions, and the rank that failed first with its
    exit code, reason and last log lines), and, when MLflow tracking is on, as a run with
    tags ``kfgpu.job.*`` (``kfgpu.job.failed_rank``, ``...failed_pod``, ``...exit_code``,
    ``...failure_reason``), marked FAILED when the job failed.

    Raises:
        ConfigError: a bad kind or shape.
        TrainingError: the job failed (naming the rank that failed first), timed out or
            was cancelled.
        BundleError: the job succeeded but left no complete bundle.
    """
    from kfgpu._image import HOROVOD_IMAGE, TRAIN_IMAGE
    from kfgpu.bundle import verify_bundle
    from kfgpu.kube.jobs import LaunchConfig, render
    from kfgpu.kube.launcher import launch
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.distributed import copy_tree

    if kind not in ("TrainJob", "PyTorchJob", "MPIJob"):
        raise ConfigError(f"kind={kind!r} is invalid: use 'TrainJob', 'PyTorchJob' or 'MPIJob'")
    run_config = {
        **config,
        "accelerator": "gpu" if gpus_per_node > 0 else "cpu",
        "devices": max(gpus_per_node, 1),
        "num_nodes": num_nodes,
        "strategy": "ddp" if num_nodes * max(gpus_per_node, 1) > 1 else "auto",
    }
    TrainConfig.from_dict(run_config)  # refuse a bad config here, not in every pod
    command = training_command(
        kind=kind,
        train_uri=train_uri,
        val_uri=val_uri,
        transform_uri=transform_uri,
        profile_uri=profile_uri,
        target=target,
        task=task,
        staging_uri=staging_uri,
        config=run_config,
    )
    cfg = LaunchConfig(
        name=name,
        namespace=namespace,
        image=image or (HOROVOD_IMAGE if kind == "MPIJob" else TRAIN_IMAGE),
        command=command,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        gpu_type=gpu_type or None,
        storage_secret=storage_secret or None,
    )
    job_kind = cast("JobKind", kind)
    job = render(cfg, job_kind)
    result = launch(
        job,
        kind=job_kind,
        namespace=namespace,
        timeout_s=timeout_s,
        poll_s=poll_s,
        api_client=api_client,
    )
    record_outcome(
        result,
        kind=kind,
        name=name,
        namespace=namespace,
        outcome_path=outcome_path,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    result.raise_for_status(f"{kind} {name}")
    import fsspec

    fs, root = fsspec.core.url_to_fs(staging_uri)
    if not fs.exists(root):
        raise BundleError(
            f"{kind} {name} succeeded but left no bundle at {staging_uri!r}; check rank 0's log"
        )
    copy_tree(staging_uri, bundle_path)
    verify_bundle(bundle_path)
    return StepResult(
        metrics={
            "job_seconds": result.seconds,
            "nodes": float(num_nodes),
            "gpus_per_node": float(gpus_per_node),
        },
        metadata={
            "model": {
                "framework": "pytorch",
                "format": "kfgpu-bundle/1",
                "launched_as": kind,
                "nodes": num_nodes,
            }
        },
        summary=f"{kind} {name}: {num_nodes} x {gpus_per_node} GPU(s), {result.seconds:.0f}s",
        output=LaunchOutput(conditions=list(result.conditions)),
    )
