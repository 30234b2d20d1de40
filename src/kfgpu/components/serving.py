"""Components of the serving path: deploy on KServe, end a canary, batch prediction."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component signatures to build their interfaces.

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kfgpu._image import BASE_IMAGE

__all__ = ["batch_predict", "deploy_model", "promote_canary", "rollback_canary"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy_model(
    model: Input[Model],
    name: str,
    inference_service: Output[Artifact],
    metrics: Output[Metrics],
    namespace: str = "kubeflow",
    storage_uri: str = "",
    runtime: str = "kfgpu",
    deployment_mode: str = "Serverless",
    gpus: int = 0,
    gpu_type: str = "",
    cpu: str = "1",
    memory: str = "2Gi",
    min_replicas: int = 1,
    max_replicas: int = 3,
    scale_metric: str = "",
    scale_target: int = 0,
    canary_traffic_percent: int = -1,
    kserve_version: str = "0.21",
    service_account: str = "",
    timeout_s: int = 900,
) -> str:
    """Deploy the bundle as a KServe InferenceService and verify it, or roll it back.

    Applies the InferenceService (create, or replace the running one), waits until it is
    Ready for the new generation, checks that the traffic split in its status is the one
    requested (``canaryTrafficPercent`` in Serverless mode, ``spec.canary`` in
    RawDeployment mode on KServe 0.20+; refused on older KServe, which ignores it: kserve
    issue 5335), and sends a smoke request through the endpoint. Any failure restores
    the previous spec (or deletes a new service) and fails the step. Needs a service
    account allowed to manage InferenceServices (manifests/serving/rbac.yaml) and, for
    the kfgpu runtime, its ServingRuntime (manifests/serving/runtime.yaml).

    Args:
        model: the model bundle (checksums verified; its transform makes the smoke row).
        name: the InferenceService name (lower case, digits and ``-``).
        namespace: where it runs.
        storage_uri: where KServe downloads the model from; empty: the bundle's own URI.
            For the triton runtime: the Triton model repository written by
            ``kfgpu.serving.isvc.export_onnx``.
        runtime: ``kfgpu`` (the kfgpu predictor image) or ``triton`` (ONNX on Triton).
        deployment_mode: ``Serverless``, ``RawDeployment`` or ``Standard``.
        gpus: GPUs per replica; 0 serves on CPU.
        gpu_type: a GPU product for the node selector, e.g. ``NVIDIA-L4``.
        cpu: CPU per replica.
        memory: memory per replica.
        min_replicas: fewest replicas (0: scale to zero, Serverless only).
        max_replicas: most replicas.
        scale_metric: ``concurrency`` or ``rps`` (Serverless), ``cpu`` or ``memory``
            (RawDeployment); empty: ``concurrency`` / ``cpu``.
        scale_target: the autoscaling target per replica; 0: KServe's default.
        canary_traffic_percent: share of traffic for the new model while the running one
            keeps the rest; -1: no canary (the new model takes all traffic).
        kserve_version: the cluster's KServe version, e.g. ``0.21``.
        service_account: the predictor's service account (storage credentials).
        timeout_s: seconds to wait for Ready.

    Returns:
        inference_service: the applied object and the outcome as JSON (written on failure
            too: the reason and what was rolled back).
        metrics: rollout seconds and the canary share.
        Output: the endpoint URL.
    """
    from kfgpu.serving.step import deploy_model_step

    result = deploy_model_step(
        bundle_path=model.path,
        storage_uri=storage_uri or model.uri,
        name=name,
        namespace=namespace,
        runtime=runtime,
        deployment_mode=deployment_mode,
        gpus=gpus,
        gpu_type=gpu_type,
        cpu=cpu,
        memory=memory,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        canary_traffic_percent=None if canary_traffic_percent < 0 else canary_traffic_percent,
        kserve_version=kserve_version,
        service_account=service_account,
        timeout_s=float(timeout_s),
        outcome_path=inference_service.path,
    )
    result.publish(metrics=metrics, inference_service=inference_service)
    return result.output.url


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote_canary(
    name: str,
    outcome: Output[Artifact],
    namespace: str = "kubeflow",
    timeout_s: int = 900,
) -> None:
    """Give an InferenceService's canary all traffic, verified, or restore it.

    Serverless: ``canaryTrafficPercent`` is removed and the latest revision must hold
    100% in the status. RawDeployment: the canary's predictor becomes the predictor
    (KServe's no-restart promotion) and no canary may take traffic. Then the V2
    readiness route of the endpoint is called.

    Args:
        name: the InferenceService name.
        namespace: its namespace.
        timeout_s: seconds to wait for Ready.

    Returns:
        outcome: what was done and verified, as JSON (written on failure too).
    """
    from kfgpu.serving.step import canary_step

    canary_step(
        action="promote",
        name=name,
        namespace=namespace,
        timeout_s=float(timeout_s),
        outcome_path=outcome.path,
    ).publish()


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def rollback_canary(
    name: str,
    outcome: Output[Artifact],
    namespace: str = "kubeflow",
    timeout_s: int = 900,
) -> None:
    """Take all traffic off an InferenceService's canary, verified.

    Serverless: ``canaryTrafficPercent`` becomes 0 and the previous revision must hold
    100% in the status. RawDeployment: the ``spec.canary`` entry is removed.

    Args:
        name: the InferenceService name.
        namespace: its namespace.
        timeout_s: seconds to wait for Ready.

    Returns:
        outcome: what was done and verified, as JSON (written on failure too).
    """
    from kfgpu.serving.step import canary_step

    canary_step(
        action="rollback",
        name=name,
        namespace=namespace,
        timeout_s=float(timeout_s),
        outcome_path=outcome.path,
    ).publish()


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def batch_predict(
    model: Input[Model],
    data: Input[Dataset],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    chunk_rows: int = 65536,
    keep_columns: str = "",
) -> None:
    """Score a Parquet dataset with the bundle, streamed in chunks; write Parquet shards.

    The output (a directory of Parquet files and ``_manifest.json``) replaces the target
    only when every chunk succeeded.

    Args:
        model: the model bundle (checksums verified).
        data: a Parquet dataset with the raw input columns.
        chunk_rows: rows read and predicted at a time.
        keep_columns: comma-separated input columns copied beside the predictions (ids).

    Returns:
        predictions: ``keep_columns``, ``prediction`` and ``proba_<class>`` per class.
        metrics: rows, chunks and seconds.
    """
    from kfgpu.serving.batch import batch_predict_step

    result = batch_predict_step(
        bundle_path=model.path,
        data_uri=data.path,
        output_path=predictions.path,
        chunk_rows=chunk_rows,
        keep_columns=[c.strip() for c in keep_columns.split(",") if c.strip()],
    )
    result.publish(metrics=metrics, predictions=predictions)
