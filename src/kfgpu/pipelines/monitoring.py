"""The monitoring and batch-inference pipelines.

``monitoring`` runs on a schedule (``kfgpu schedule apply``): it judges the endpoint's
inference logs against the served model and, when the policy asks for it, starts the
training pipeline on Kubeflow and/or notifies a webhook.

``batch_inference`` scores a batch with the champion: fetch the model (a path or
``models:/NAME@champion``), check the batch against it, predict in streamed chunks.
"""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Markdown

from kfgpu.components import (
    batch_predict,
    fetch_model,
    monitor_endpoint,
    trigger_retraining,
    validate_batch,
)
from kfgpu.kube.storage import STORAGE_SECRET as OBJECT_STORAGE_SECRET
from kfgpu.kube.storage import use_object_storage_on_data_steps

__all__ = ["batch_inference", "monitoring"]

MonitoringOutputs = NamedTuple(  # noqa: UP014  # KFP reads this functional form
    "MonitoringOutputs", [("verdict", Artifact), ("report", HTML)]
)
BatchOutputs = NamedTuple(  # noqa: UP014  # KFP reads this functional form
    "BatchOutputs", [("predictions", Dataset), ("report", Markdown)]
)


@dsl.pipeline(
    name="kfgpu-monitoring",
    description=(
        "Judge a KServe endpoint's inference logs against the served model (data drift, "
        "data quality, live accuracy) and retrain or notify when the policy says so."
    ),
)
def monitoring(
    logs_uri: str,
    model_uri: str,
    policy: str = "",
    window_hours: float = 24.0,
    labels_uri: str = "",
    kfp_host: str = "",
    retrain_pipeline: str = "training",
    retrain_parameters: str = "{}",
    webhook_url: str = "",
    namespace: str = "",
    mlflow_tracking_uri: str = "",
    storage_secret: str = OBJECT_STORAGE_SECRET,
) -> MonitoringOutputs:
    judged = monitor_endpoint(
        logs_uri=logs_uri,
        model_uri=model_uri,
        policy=policy,
        window_hours=window_hours,
        labels_uri=labels_uri,
        mlflow_tracking_uri=mlflow_tracking_uri,
    ).set_display_name("judge the endpoint")
    # Nothing is cached: the logs under the same URI change between scheduled runs.
    judged.set_caching_options(False).set_cpu_request("1").set_memory_request("4G")
    with dsl.If(judged.outputs["Output"] == True, name="retrain"):  # noqa: E712
        trigger_retraining(
            verdict=judged.outputs["verdict"],
            kfp_host=kfp_host,
            pipeline=retrain_pipeline,
            parameters=retrain_parameters,
            webhook_url=webhook_url,
            namespace=namespace,
        ).set_display_name("retrain and notify").set_caching_options(False)
    # S3/GCS credentials for the steps that read or write data (kfgpu.kube.storage).
    use_object_storage_on_data_steps(storage_secret)
    return MonitoringOutputs(verdict=judged.outputs["verdict"], report=judged.outputs["report"])


@dsl.pipeline(
    name="kfgpu-batch-inference",
    description=(
        "Score a batch with a model bundle or the registry's champion: check the batch "
        "against the model's schema and training data, then predict in streamed chunks."
    ),
)
def batch_inference(
    data_uri: str,
    model_uri: str,
    keep_columns: str = "",
    chunk_rows: int = 65536,
    policy: str = "",
    mlflow_tracking_uri: str = "",
    storage_secret: str = OBJECT_STORAGE_SECRET,
) -> BatchOutputs:
    model = fetch_model(
        model_uri=model_uri, mlflow_tracking_uri=mlflow_tracking_uri
    ).set_display_name("fetch model")
    # A registry alias moves and files change under one URI: never cached.
    model.set_caching_options(False)
    checked = validate_batch(
        data_uri=data_uri, model=model.outputs["model"], policy=policy
    ).set_display_name("check the batch")
    checked.set_caching_options(False)
    predicted = batch_predict(
        model=model.outputs["model"],
        data=checked.outputs["dataset"],
        chunk_rows=chunk_rows,
        keep_columns=keep_columns,
    ).set_display_name("predict")
    for task_ in (model, checked, predicted):
        task_.set_cpu_request("1").set_memory_request("4G")
    # S3/GCS credentials for the steps that read or write data (kfgpu.kube.storage).
    use_object_storage_on_data_steps(storage_secret)
    return BatchOutputs(
        predictions=predicted.outputs["predictions"], report=checked.outputs["report"]
    )
