"""Components of the monitoring and batch-inference pipelines."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from kfgpu._image import BASE_IMAGE

__all__ = ["fetch_model", "monitor_endpoint", "trigger_retraining", "validate_batch"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def monitor_endpoint(
    logs_uri: str,
    model_uri: str,
    verdict: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    policy: str = "",
    window_hours: float = 24.0,
    labels_uri: str = "",
    mlflow_tracking_uri: str = "",
) -> bool:
    """Judge what the endpoint saw against the model's training data; True: retrain.

    Reads the inference logs of the last ``window_hours`` and compares them with the
    reference profile inside the model bundle: data drift, data quality, and (with labels)
    live accuracy. The verdict and the report are written whatever the outcome; branch on
    the returned value with ``dsl.If``.

    Args:
        logs_uri: the inference-log directory or URL (the predictor's ``--log-uri``, or the
            payload-logger sink's).
        model_uri: the served model: a bundle directory or ``models:/NAME@champion``.
        policy: the monitoring policy as JSON or YAML (min_rows, drift, thresholds,
            retrain_on), or the path or URI of a YAML/JSON file holding it; empty: the
            defaults.
        window_hours: hours of logs to judge, back from now; 0 reads every log.
        labels_uri: ground truth that arrived later (``_request_id`` and the target).
        mlflow_tracking_uri: the MLflow registry for ``models:/`` URIs.

    Returns:
        verdict: the JSON verdict: status, alarms, reasons, drift per column, quality.
        report: the drift report (kfgpu's verdict and Evidently's on samples).
        metrics: rows, alarms, retrain, drift share.
        Output: whether the policy asks for retraining.
    """
    from kfgpu.monitoring.step import monitor_step

    result = monitor_step(
        logs_uri=logs_uri,
        model_uri=model_uri,
        verdict_path=verdict.path,
        report_path=report.path,
        policy=policy,
        window_hours=window_hours,
        labels_uri=labels_uri,
        tracking_uri=mlflow_tracking_uri,
    )
    result.publish(metrics=metrics)
    return result.output.retrain


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def trigger_retraining(
    verdict: Input[Artifact],
    run: Output[Artifact],
    kfp_host: str = "",
    pipeline: str = "training",
    parameters: str = "{}",
    webhook_url: str = "",
    namespace: str = "",
) -> None:
    """Start the training pipeline on Kubeflow and/or notify a webhook with the verdict.

    Args:
        verdict: monitor_endpoint's verdict.
        kfp_host: the Kubeflow Pipelines API (in-cluster: ``http://ml-pipeline-ui.kubeflow``);
            empty: ``KFGPU_KFP_HOST`` or kfp's ``KF_PIPELINES_ENDPOINT`` from the pod's
            environment; when neither is set, no run is started.
        pipeline: the uploaded pipeline to run.
        parameters: its parameters as a JSON object.
        webhook_url: a URL that gets the verdict as JSON (Slack-style ``text`` included);
            empty: no notification.
        namespace: the Kubeflow profile namespace (multi-user installs).

    Returns:
        run: what was done (the run id, the webhook's status), as JSON.
    """
    from kfgpu.monitoring.step import trigger_retraining_step

    trigger_retraining_step(
        verdict_path=verdict.path,
        run_path=run.path,
        kfp_host=kfp_host,
        pipeline=pipeline,
        parameters=parameters,
        webhook_url=webhook_url,
        namespace=namespace,
    ).publish()


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fetch_model(
    model_uri: str,
    model: Output[Model],
    mlflow_tracking_uri: str = "",
) -> None:
    """Bring a model bundle into the pipeline from a path or the MLflow registry.

    Args:
        model_uri: a bundle directory (local or mounted) or ``models:/NAME@ALIAS``.
        mlflow_tracking_uri: the MLflow registry for ``models:/`` URIs.

    Returns:
        model: the bundle, checksums verified.
    """
    from kfgpu.monitoring.step import fetch_model_step

    fetch_model_step(
        model_uri=model_uri, bundle_path=model.path, tracking_uri=mlflow_tracking_uri
    ).publish(model=model)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_batch(
    data_uri: str,
    model: Input[Model],
    dataset: Output[Dataset],
    report: Output[Markdown],
    metrics: Output[Metrics],
    policy: str = "",
) -> None:
    """Check an incoming batch against the model that will score it.

    Missing input columns fail the step (the report is written first); data-quality
    issues and drift (the model-aware verdict of detect_drift) are reported as warnings.

    Args:
        data_uri: the batch: CSV, Parquet or JSON lines, local or any fsspec URI.
        model: the model bundle.
        policy: the monitoring policy's thresholds (JSON or YAML, or the path or URI of a
            file holding them); empty: defaults.

    Returns:
        dataset: the batch as fingerprinted Parquet.
        report: what was checked and found.
        metrics: rows, data-quality warnings, drift share, dataset drift.
    """
    from kfgpu.monitoring.step import validate_batch_step

    validate_batch_step(
        data_uri=data_uri,
        bundle_path=model.path,
        dataset_path=dataset.path,
        report_path=report.path,
        policy=policy,
    ).publish(metrics=metrics, dataset=dataset)
