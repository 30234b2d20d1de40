"""The monitoring steps: judge the logged traffic, and act on the verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfgpu._step import StepResult, step
from kfgpu.data._atomic import atomic_write_text

__all__ = [
    "MonitorOutput",
    "TriggerOutput",
    "detect_drift_step",
    "fetch_model_step",
    "monitor_step",
    "notify_webhook",
    "trigger_retraining_step",
    "validate_batch_step",
]


@dataclass(frozen=True)
class MonitorOutput:
    """What :func:`monitor_step` returns beside its files.

    Attributes:
        retrain: whether the verdict asks for retraining.
        status: the verdict's status (``ok``, ``drift``, ``insufficient_data`` ...).
        alarms: the alarms raised.
    """

    retrain: bool
    status: str
    alarms: list[Any]


@dataclass(frozen=True)
class TriggerOutput:
    """What :func:`trigger_retraining_step` did.

    Attributes:
        run: the started pipeline run's id, or None.
        webhook: the webhook's HTTP status, or None when not called.
    """

    run: Any = None
    webhook: Any = None


@step("detect_drift")
def detect_drift_step(
    *,
    reference_uri: str,
    current_uri: str,
    result_path: str,
    report_path: str,
    config_json: str = "",
    sample_rows: int = 5000,
    fail_on_drift: bool = False,
) -> StepResult:
    """Compare current data with a reference; write the JSON result and HTML report.

    With a model bundle as the reference the verdict is model-aware (feature importance and
    the model's output, see :mod:`kfgpu.monitoring.drift_check`). Both outputs are written
    before a drift failure is raised.

    Raises:
        ConfigError: a bad drift config, or columns that cannot be compared.
        DriftDetected: ``fail_on_drift`` and the dataset drifted.
    """
    from kfgpu.errors import ConfigError, DriftDetected
    from kfgpu.monitoring.drift_check import check_source
    from kfgpu.validation.drift import DriftConfig
    from kfgpu.validation.drift_report import render_drift_html

    try:
        config = DriftConfig.from_dict(json.loads(config_json)) if config_json else DriftConfig()
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"drift config is not JSON ({e}); give e.g. "
            '\'{"alpha": 0.01, "columns": {"amount": {"method": "ks"}}}\''
        ) from e
    checked = check_source(reference_uri, current_uri, config, sample_rows=sample_rows)
    result = checked.result
    data = checked.to_dict()
    Path(result_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(result_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        report_path,
        render_drift_html(
            data,
            reference_sample=checked.reference.sample,
            current_sample=checked.current.sample,
        ),
    )
    if fail_on_drift and result.dataset_drift:
        raise DriftDetected(result.summary())
    return StepResult(
        metrics={
            "drift_share": result.drift_share,
            "drifted_columns": float(result.n_drifted),
            "columns": float(result.n_columns),
            "dataset_drift": float(result.dataset_drift),
        },
        summary=result.summary(),
    )


@step("monitor")
def monitor_step(
    *,
    logs_uri: str,
    model_uri: str,
    verdict_path: str,
    report_path: str,
    policy: str = "",
    window_hours: float = 0.0,
    labels_uri: str = "",
    tracking_uri: str = "",
    now: str = "",
) -> StepResult[MonitorOutput]:
    """Judge the inference logs of the last ``window_hours`` (0: all) against the model.

    Writes the verdict JSON and an HTML drift report (Evidently's, on samples, beside
    kfgpu's verdict) whatever the outcome; the caller acts on ``output.retrain``.

    Args:
        logs_uri: the inference-log directory or URL (see :mod:`kfgpu.monitoring.logger`).
        model_uri: the served model: a bundle directory or ``models:/NAME@ALIAS``.
        verdict_path, report_path: where the JSON verdict and the HTML report go.
        policy: a :class:`~kfgpu.monitoring.monitor.MonitorPolicy` as JSON or YAML, or the
            path or URI of a file holding it.
        window_hours: look back this far from ``now``; 0 reads every log.
        labels_uri: ground truth (Parquet: ``_request_id`` and the target column).
        tracking_uri: MLflow registry for ``models:/`` URIs.
        now: the window's end (ISO 8601, UTC); empty: the current time.

    Raises:
        ConfigError: a bad policy, or labels without the needed columns.
        BundleError: the model has no reference profile.
    """
    import pandas as pd

    from kfgpu.bundle import load_reference, read_description
    from kfgpu.data import read_table
    from kfgpu.monitoring.drift_check import ModelView
    from kfgpu.monitoring.monitor import MonitorPolicy, monitor, read_logs
    from kfgpu.registry.source import resolve_bundle
    from kfgpu.validation.drift_report import render_drift_html

    rules = MonitorPolicy.parse(policy)
    bundle = str(resolve_bundle(model_uri, tracking_uri=tracking_uri))
    reference = load_reference(bundle)
    description = read_description(bundle)
    end = pd.Timestamp(now, tz="UTC") if now else pd.Timestamp.now(tz="UTC")
    start = end - pd.Timedelta(hours=window_hours) if window_hours > 0 else None
    logs = read_logs(logs_uri, since=start, until=end if now else None)
    labels = read_table(labels_uri) if labels_uri else None
    model = ModelView.from_bundle(bundle, reference)
    verdict = monitor(
        logs, reference, description=description, policy=rules, labels=labels, model=model
    )
    verdict.window = {
        "start": start.isoformat() if start is not None else None,
        "end": end.isoformat(),
        "logs_uri": logs_uri,
        "model_uri": model_uri,
    }
    data = verdict.to_dict()
    atomic_write_text(verdict_path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    if verdict.drift is not None:
        features = [c for c in reference.columns if c in logs.columns]
        html = render_drift_html(
            {**verdict.drift, "monitor": data},
            reference_sample=reference.sample,
            current_sample=logs[features]
            .sample(min(len(logs), 5000), random_state=0)
            .reset_index(drop=True),
        )
    else:
        html = f"<html><body><h1>Monitoring</h1><p>{verdict.summary}</p></body></html>\n"
    atomic_write_text(report_path, html)
    return StepResult(
        metrics={
            "rows": float(verdict.rows),
            "retrain": float(verdict.retrain),
            "alarms": float(len(verdict.alarms)),
            **(
                {"drift_share": float(verdict.drift["drift_share"])}
                if verdict.drift is not None
                else {}
            ),
        },
        summary=verdict.summary,
        output=MonitorOutput(
            retrain=verdict.retrain, status=verdict.status, alarms=list(verdict.alarms)
        ),
    )


def notify_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON to ``url``; the HTTP status. Slack-style hooks get ``text``.

    Raises:
        ConfigError: the hook cannot be reached or answers an error status.
    """
    import httpx

    from kfgpu.errors import ConfigError

    body = {"text": payload.get("summary", ""), **payload}
    try:
        response = httpx.post(url, json=body, timeout=timeout)
    except httpx.HTTPError as e:
        raise ConfigError(f"webhook_url={url!r} cannot be reached: {e}") from e
    if response.status_code >= 400:
        raise ConfigError(
            f"webhook_url={url!r} answered {response.status_code}: {response.text[:200]}"
        )
    return response.status_code


@step("trigger_retraining")
def trigger_retraining_step(
    *,
    verdict_path: str,
    run_path: str,
    kfp_host: str = "",
    pipeline: str = "training",
    parameters: str = "{}",
    webhook_url: str = "",
    namespace: str = "",
) -> StepResult[TriggerOutput]:
    """Start the training pipeline on Kubeflow and/or notify a webhook with the verdict.

    ``pipeline`` names an uploaded pipeline (``kfgpu-training``, or kfgpu's short name
    ``training``) or its ID; its newest version runs (:func:`kfgpu.ops.submit.submit_pipeline`).
    Nothing is compiled here: this step never reaches ``kfgpu.pipelines``.

    Writes what it did to ``run_path`` (JSON) before returning or failing.

    With neither a KFP host nor a webhook it does nothing and says so.

    Raises:
        ConfigError: bad parameters JSON, or the webhook fails.
        OpsError: no such uploaded pipeline (run ``kfgpu upload`` first).
    """
    from kfgpu.errors import ConfigError
    from kfgpu.ops.client import default_host

    verdict = json.loads(Path(verdict_path).read_text())
    if not verdict.get("retrain"):
        # The monitor's verdict (one decision, kfgpu.validation.drift.decide) is the only
        # thing that starts a retraining: a verdict that does not ask for it starts nothing.
        note = (
            f"the verdict does not ask for retraining ({verdict.get('summary')}); nothing started"
        )
        atomic_write_text(run_path, json.dumps({"verdict": verdict.get("summary"), "note": note}))
        return StepResult(summary=note, output=TriggerOutput())
    # An empty kfp_host takes the endpoint the pod's environment names, kfp's own
    # KF_PIPELINES_ENDPOINT included.
    kfp_host = kfp_host or default_host()
    if not kfp_host and not webhook_url:
        note = (
            "retraining was asked for, but neither kfp_host (start the training pipeline "
            "on Kubeflow) nor webhook_url (notify) is set: nothing was started"
        )
        atomic_write_text(run_path, json.dumps({"verdict": verdict.get("summary"), "note": note}))
        return StepResult(summary=note, output=TriggerOutput())
    try:
        params = json.loads(parameters or "{}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"parameters={parameters[:80]!r} is not a JSON object: {e}") from e
    if not isinstance(params, dict):
        raise ConfigError(f"parameters={parameters[:80]!r} is not a JSON object")
    done: dict[str, Any] = {"verdict": verdict.get("summary"), "run": None, "webhook": None}
    try:
        if kfp_host:
            from kfgpu.ops.submit import submit_pipeline

            done["run"] = submit_pipeline(
                pipeline, host=kfp_host, params=params, namespace=namespace or None
            )
        if webhook_url:
            done["webhook"] = notify_webhook(
                webhook_url, {"event": "kfgpu.retrain", **verdict, "run": done["run"]}
            )
    finally:
        atomic_write_text(run_path, json.dumps(done, indent=2, default=str) + "\n")
    parts = []
    if done["run"] is not None:
        parts.append(f"started {pipeline} run {done['run']}")
    if done["webhook"] is not None:
        parts.append(f"notified the webhook ({done['webhook']})")
    return StepResult(
        summary="; ".join(parts), output=TriggerOutput(run=done["run"], webhook=done["webhook"])
    )


#: The most rows of a batch validate_batch checks (a seeded uniform sample above that).
BATCH_SAMPLE_ROWS = 262_144


@step("validate_batch")
def validate_batch_step(
    *,
    data_uri: str,
    bundle_path: str,
    dataset_path: str,
    report_path: str,
    policy: str = "",
) -> StepResult:
    """Check an incoming batch against the model it will be scored with.

    Missing input columns fail the step (after the report is written); data-quality issues
    and drift against the bundle's training profile are reported as warnings, and the
    batch goes on (as fingerprinted Parquet shards) to batch_predict.

    The batch is streamed (any table ``kfgpu run --data`` reads): its rows are copied to
    the shards chunk by chunk and counted exactly, while the quality and drift checks run
    on a seeded uniform sample of at most ``BATCH_SAMPLE_ROWS`` rows (the whole batch when
    it is no larger), so memory stays bounded whatever the batch's size.

    Raises:
        SchemaError: input columns the bundle needs are missing.
        DataError: the batch cannot be read or is empty.
    """
    from kfgpu.bundle import load_reference, read_description
    from kfgpu.data.stream import RowSample, open_table_stream, stream_to_shards
    from kfgpu.errors import DataError, EmptyDataError, SchemaError
    from kfgpu.monitoring.drift_check import ModelView, check_frame
    from kfgpu.monitoring.monitor import MonitorPolicy, quality_issues
    from kfgpu.validation.drift import DriftConfig

    rules = MonitorPolicy.parse(policy)
    description = read_description(bundle_path)
    reference = load_reference(bundle_path)
    features = description.input_names
    lines = [f"# Batch check: {data_uri}", ""]

    def fail(error: DataError) -> DataError:
        body = [*lines, "", f"**FAILED**: {error}", ""]
        atomic_write_text(report_path, "\n".join(body))
        return error

    try:
        columns, _ = open_table_stream(data_uri)
    except DataError as e:
        raise fail(e) from e
    missing = [c for c in features if c not in columns]
    if missing:
        raise fail(
            SchemaError(
                f"the batch lacks input column(s) {missing} the model needs; it has {columns[:20]}"
            )
        )
    sample = RowSample(BATCH_SAMPLE_ROWS, seed=0)
    try:
        manifest = stream_to_shards(
            data_uri, dataset_path, metadata={"source_uri": data_uri}, on_frame=sample.add
        )
    except EmptyDataError as e:
        raise fail(EmptyDataError(f"the batch {data_uri!r} has no rows")) from e
    except DataError as e:
        raise fail(e) from e
    rows, df = sample.rows, sample.frame()
    lines.append(f"- rows: {rows}")
    if len(df) < rows:
        lines.append(f"- checks on a uniform sample of {len(df)} rows")
    issues = quality_issues(df, reference, features, rules)
    drift = check_frame(
        reference,
        df,
        DriftConfig.from_dict(dict(rules.drift)),
        model=ModelView.from_bundle(bundle_path, reference),
        exclude=[description.target],
    )
    assert drift is not None  # every input column is present (checked above)
    lines += [f"- drift: {drift.summary()}"]
    lines += [
        f"  - drifted column {c.column}: {c.method} {c.statistic:.3g} >= {c.threshold:g}"
        for c in drift.columns
        if c.drifted
    ]
    lines += [f"- data-quality warnings: {len(issues)}", ""]
    lines += [f"  - {q['message']}" for q in issues]
    atomic_write_text(report_path, "\n".join(lines) + "\n")
    return StepResult(
        metrics={
            "rows": float(rows),
            "quality_warnings": float(len(issues)),
            "drift_share": float(drift.drift_share),
            "dataset_drift": float(drift.dataset_drift),
        },
        metadata={
            "dataset": {
                "source_uri": data_uri,
                "fingerprint": manifest.fingerprint,
                "rows": manifest.rows,
                "files": len(manifest.files),
            },
            "drift": {"status": drift.status},
        },
        summary=f"{rows} rows; {len(issues)} data-quality warning(s); {drift.summary()}",
    )


@step("fetch_model")
def fetch_model_step(*, model_uri: str, bundle_path: str, tracking_uri: str = "") -> StepResult:
    """Copy the bundle at ``model_uri`` (a directory or ``models:/NAME@ALIAS``) to
    ``bundle_path``, checksums verified.

    Raises:
        BundleError: the bundle is incomplete or fails its checksums.
        ConfigError: a ``models:/`` URI without a registry, or an unknown model.
    """
    import shutil

    from kfgpu.bundle import read_description, verify_bundle
    from kfgpu.registry.source import resolve_bundle

    source = resolve_bundle(model_uri, tracking_uri=tracking_uri)
    verify_bundle(source)
    shutil.copytree(source, bundle_path, dirs_exist_ok=True)
    verify_bundle(bundle_path)
    desc = read_description(bundle_path)
    return StepResult(
        metadata={
            "model": {
                "source": model_uri,
                "family": desc.model_family,
                "format": desc.format,
            }
        },
        summary=f"{model_uri} -> {desc.task} model of {desc.target!r}",
    )
