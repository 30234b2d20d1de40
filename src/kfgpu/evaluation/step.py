"""The evaluate_model step: the bundle on the held-out split, through the served module."""

from __future__ import annotations

import json
from pathlib import Path

from kfgpu._step import StepResult, step

__all__ = ["evaluate_model_step"]


@step("evaluate_model")
def evaluate_model_step(
    *,
    bundle_path: str,
    test_path: str,
    report_path: str,
    evaluation_path: str = "",
    mlflow_tracking_uri: str = "",
) -> StepResult:
    """Score the bundle on the test split exactly as serving would (raw rows in).

    Raises:
        BundleError: the bundle is incomplete or fails its checksums.
        DataError: the test split is empty or holds unknown labels.
    """
    import numpy as np

    from kfgpu.bundle import load_bundle
    from kfgpu.data import read_parquet
    from kfgpu.evaluation.metrics import evaluate_classification, evaluate_regression
    from kfgpu.evaluation.report import render_html
    from kfgpu.registry import tracking

    bundle = load_bundle(bundle_path)
    desc = bundle.description
    target = desc["target"]
    test = read_parquet(test_path)
    raw = bundle.predict_raw(test.drop(columns=[target]))
    if bundle.task == "classification":
        labels = desc["labels"]
        dist = labels.get("train_distribution", {})
        prior = np.asarray([dist.get(str(c), 0) for c in bundle.classes], dtype=np.float64)
        ev = evaluate_classification(
            test[target].to_numpy(),
            raw,
            bundle.classes,
            positive_class=labels.get("positive_class"),
            prior=prior if prior.sum() > 0 else None,
        )
    else:
        ev = evaluate_regression(
            test[target].to_numpy(), raw, train_mean=desc["target_scaling"]["mean"]
        )
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(render_html(ev, desc))
    if evaluation_path:
        Path(evaluation_path).write_text(json.dumps(ev.to_dict(), indent=2, sort_keys=True))
    uri = tracking.resolve_tracking_uri(
        mlflow_tracking_uri or desc.get("lineage", {}).get("mlflow_tracking_uri") or ""
    )
    run_id = desc.get("lineage", {}).get("mlflow_run_id")
    if uri and run_id:
        tracking.log_metrics(uri, run_id, {f"test_{k}": v for k, v in ev.metrics.items()})
    headline = ev.metrics.get(ev.headline, float("nan"))
    metrics = {f"test_{k}": v for k, v in ev.metrics.items()}
    metrics.update({f"baseline_{k}": v for k, v in ev.baseline.items()})
    return StepResult(
        metrics=metrics,
        summary=(
            f"held-out {ev.headline} {headline:.4f} on {ev.rows} rows "
            f"(constant predictor {ev.baseline.get(ev.headline, float('nan')):.4f})"
        ),
        extra={
            "headline": ev.headline,
            "confusion_matrix": ev.confusion_matrix,
            "classes": [str(c) for c in ev.classes],
            "roc_curve": ev.roc_curve,
        },
    )
