"""Components of the training path: validate, engineer features, train, evaluate."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from kfgpu._image import BASE_IMAGE, TRAIN_IMAGE

__all__ = [
    "detect_drift",
    "engineer_features",
    "evaluate_model",
    "train_model",
    "validate_data",
]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_data(
    data_uri: str,
    target: str,
    dataset: Output[Dataset],
    schema: Output[Artifact],
    report: Output[Markdown],
    anomalies: Output[Artifact],
    metrics: Output[Metrics],
    task: str = "auto",
    max_null_fraction: float = 0.5,
    max_unseen_fraction: float = 0.0,
    leakage_threshold: float = 0.99,
    schema_uri: str = "",
    reference_uri: str = "",
    data_fingerprint: str = "",
) -> NamedTuple("Outputs", [("task", str)]):
    """Read raw tabular data, validate it, and hand on a fingerprinted Parquet copy.

    The report is written even when validation fails; the step then fails with every
    error-level anomaly listed by column.

    Args:
        data_uri: CSV, Parquet or JSON-lines file, local or any fsspec URI
            (``s3://``, ``gs://``), or a built-in dataset (``kfgpu://fraud``,
            ``kfgpu://breast_cancer``).
        target: the label column.
        task: ``auto``, ``classification`` or ``regression``.
        max_null_fraction: a feature with a higher share of missing values is reported.
        max_unseen_fraction: against a pinned schema, the share of a categorical column's
            values outside its domain above which a warning is reported.
        leakage_threshold: a single feature that predicts the target on held-out rows with
            at least this balanced accuracy (R² for regression) stops the step as label
            leakage; 1.0 or more turns the check off.
        schema_uri: a pinned schema JSON to check against (missing or extra columns, kind
            changes, out-of-range values, unseen categories); empty infers one.
        reference_uri: a model bundle, reference profile or dataset to compare with for
            train/serving skew (reported as warnings); empty skips it.
        data_fingerprint: the output of fingerprint_data for data_uri. Part of the step's
            cache key, so a file replaced under the same URI is not served from the cache;
            recorded as the dataset's ``source_version`` metadata.

    Returns:
        dataset: the data as Parquet, with its fingerprint (sha256, rows, schema) in metadata.
        schema: the inferred (or pinned) schema as JSON; edit and pin it with schema_uri.
        report: a Markdown validation report (written on failure too).
        anomalies: every anomaly as JSON (check, column, severity, message, value).
        metrics: row and column counts, warning count.
        task: the task inferred or confirmed: ``classification`` or ``regression``.
    """
    from collections import namedtuple

    from kfgpu.validation.step import validate_data_step

    result = validate_data_step(
        data_uri=data_uri,
        target=target,
        dataset_path=dataset.path,
        schema_path=schema.path,
        report_path=report.path,
        anomalies_path=anomalies.path,
        task=task,
        max_null_fraction=max_null_fraction,
        max_unseen_fraction=max_unseen_fraction,
        leakage_threshold=leakage_threshold,
        schema_uri=schema_uri,
        reference_uri=reference_uri,
    )
    result.publish(metrics=metrics, dataset=dataset, schema=schema)
    if data_fingerprint:
        dataset.metadata["source_version"] = data_fingerprint
    return namedtuple("Outputs", ["task"])(result.output.task)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def engineer_features(
    dataset: Input[Dataset],
    target: str,
    task: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    transform: Output[Artifact],
    spec: Output[Artifact],
    profile: Output[Artifact],
    report: Output[Markdown],
    metrics: Output[Metrics],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    max_categories: int = 1000,
    feature_spec: str = "",
    time_column: str = "",
) -> None:
    """Split the data, fit the feature transform on the training split, and write the
    model-ready training and validation splits.

    The fitted transform (plain JSON) travels into the model bundle and the served model
    applies the same tensor ops, so training and serving cannot disagree.

    Args:
        dataset: validated Parquet data.
        target: the label column.
        task: ``classification`` or ``regression``.
        val_fraction: share of rows for validation.
        test_fraction: share of rows held out for evaluation.
        seed: seeds the split.
        max_categories: most frequent values kept per categorical column (inferred spec).
        feature_spec: a feature spec as JSON or YAML text, or a path to a .json/.yaml file;
            empty infers one from the training split.
        time_column: split by this column's time (latest rows held out) instead of a
            seeded, stratified random split.

    Returns:
        train: the transformed training split (dense and embedding-index columns + target).
        validation: the transformed validation split.
        test: the raw held-out split, as serving would receive it.
        transform: the fitted transform as JSON.
        spec: the feature spec used (given or inferred), as JSON.
        profile: the training data's reference profile, for drift checks.
        report: what was done to each column, as Markdown.
        metrics: split sizes and feature counts.
    """
    from kfgpu.features.step import engineer_features_step

    result = engineer_features_step(
        dataset_path=dataset.path,
        target=target,
        task=task,
        train_path=train.path,
        val_path=validation.path,
        test_path=test.path,
        transform_path=transform.path,
        spec_path=spec.path,
        profile_path=profile.path,
        report_path=report.path,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        max_categories=max_categories,
        feature_spec=feature_spec,
        time_column=time_column,
    )
    result.publish(
        metrics=metrics, train=train, validation=validation, test=test, transform=transform
    )


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train_model(
    train: Input[Dataset],
    validation: Input[Dataset],
    transform: Input[Artifact],
    profile: Input[Artifact],
    target: str,
    task: str,
    model: Output[Model],
    metrics: Output[Metrics],
    model_family: str = "tabular_mlp",
    max_epochs: int = 20,
    batch_size: int = 1024,
    learning_rate: float = 0.001,
    weight_decay: float = 0.00001,
    hidden_sizes: str = "256,256",
    dropout: float = 0.1,
    precision: str = "32-true",
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "auto",
    seed: int = 0,
    early_stopping_patience: int = 3,
    checkpoint_dir: str = "",
    checkpoint_every_n_steps: int = 0,
    accumulate_grad_batches: int = 1,
    gradient_clip_val: float = 0.0,
    lr_schedule: str = "cosine",
    datamodule: str = "",
    threshold_policy: str = "f1",
    class_weight: str = "none",
    sampler: str = "shuffle",
    hyperparameters: str = "",
    tuned_hyperparameters: str = "",
    mlflow_tracking_uri: str = "",
    pipeline_run: str = "",
) -> None:
    """Train a tabular MLP with PyTorch Lightning and write the model bundle.

    The bundle holds safetensors weights, the fitted transform, a JSON description
    (signature, labels, hyperparameters, metrics, lineage) and a checksum file. Training
    is tracked in MLflow when a tracking URI is given or ``MLFLOW_TRACKING_URI`` is set.

    Args:
        train: the transformed training split.
        validation: the transformed validation split (early stopping, best weights).
        transform: the fitted feature transform (goes into the bundle).
        profile: the training data's reference profile (goes into the bundle).
        target: the label column.
        task: ``classification`` or ``regression``.
        model_family: ``tabular_mlp``, or ``small_cnn`` for images given one column per
            pixel (``pixel_<i>``, e.g. ``kfgpu://digits``), or a user's network or
            LightningModule (with its own ``training_step``) as ``package.module:Class``.
        max_epochs: upper bound on epochs.
        batch_size: rows per step per device.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        hidden_sizes: hidden layer widths, comma-separated.
        dropout: dropout after each hidden layer.
        precision: ``32-true``, ``16-mixed`` (CUDA) or ``bf16-mixed``.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: devices per node (-1 for all).
        strategy: ``auto``, ``ddp``, ``ddp_spawn`` or ``fsdp`` (CUDA).
        seed: seeds weights and shuffling.
        early_stopping_patience: epochs without improvement before stopping; 0 is off.
        checkpoint_dir: a directory that outlives a retry (a mounted volume); with it the
            step checkpoints there, resumes from its last checkpoint when retried, and on
            SIGTERM (preemption) saves and fails without a bundle so the retry resumes.
            Empty: no resume.
        checkpoint_every_n_steps: also checkpoint every N optimiser steps (0: epoch ends).
        accumulate_grad_batches: one optimiser step every N batches.
        gradient_clip_val: clip the gradient norm to this (0: off).
        lr_schedule: ``cosine``, ``constant``, ``onecycle`` or ``plateau``.
        datamodule: a user's LightningDataModule as ``package.module:Class`` (empty: kfgpu's).
        threshold_policy: how a binary model's probability becomes its label, chosen on
            the validation rows and stored in the bundle (serving, batch prediction, the
            pyfunc and the evaluation all apply it): ``f1``, ``precision_at_recall:0.9``,
            ``recall_at_precision:0.9``, ``cost:fn=10,fp=1``, ``argmax`` or a number.
        class_weight: classification loss weights: ``none``, ``balanced`` or a mapping
            such as ``1=20`` or ``{"fraud": 20}`` (unnamed classes weigh 1).
        sampler: ``shuffle``, or ``balanced`` (each class drawn equally often, with
            replacement).
        hyperparameters: a JSON object of settings that override the ones above (and the
            tuned ones); empty or ``{}``: none.
        tuned_hyperparameters: tune_hyperparameters' output: the best trial's complete
            training configuration (JSON), replacing the settings above except placement
            (accelerator, devices, strategy, checkpointing) and threshold_policy, so the
            shipped model is a refit of the trial that won; empty or ``{}``: none.
        mlflow_tracking_uri: MLflow tracking URI; empty uses ``MLFLOW_TRACKING_URI``.
        pipeline_run: the pipeline run's id, recorded in the bundle's lineage.

    Returns:
        model: the model bundle directory.
        metrics: best validation loss, epochs run, training seconds.
    """
    from kfgpu.training.step import parse_overrides, train_model_step

    result = train_model_step(
        train_path=train.path,
        val_path=validation.path,
        transform_path=transform.path,
        profile_path=profile.path,
        target=target,
        task=task,
        bundle_path=model.path,
        config={
            "model_family": model_family,
            "max_epochs": max_epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "hidden_sizes": hidden_sizes,
            "dropout": dropout,
            "precision": precision,
            "accelerator": accelerator,
            "devices": devices,
            "strategy": strategy,
            "seed": seed,
            "early_stopping_patience": early_stopping_patience,
            "checkpoint_dir": checkpoint_dir,
            "checkpoint_every_n_steps": checkpoint_every_n_steps,
            "accumulate_grad_batches": accumulate_grad_batches,
            "gradient_clip_val": gradient_clip_val,
            "lr_schedule": lr_schedule,
            "datamodule": datamodule,
            "threshold_policy": threshold_policy,
            "class_weight": class_weight,
            "sampler": sampler,
        },
        overrides={
            **parse_overrides(tuned_hyperparameters, field="tuned_hyperparameters"),
            **parse_overrides(hyperparameters),
        },
        mlflow_tracking_uri=mlflow_tracking_uri,
        lineage={
            "train_fingerprint": train.metadata.get("fingerprint"),
            "data_fingerprint": train.metadata.get("source_fingerprint"),
            "pipeline_run": pipeline_run,
        },
    )
    result.publish(metrics=metrics, model=model)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    test: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    model_card: Output[Markdown],
    mlflow_tracking_uri: str = "",
    slice_columns: str = "auto",
    sensitive_column: str = "",
    bootstrap: int = 200,
    confidence: float = 0.95,
    importance_repeats: int = 3,
    seed: int = 0,
) -> NamedTuple("Outputs", [("headline", str), ("score", float)]):
    """Score the bundle on the held-out split through the served module, beside a constant
    predictor's score, with intervals, slices, fairness and feature importance.

    Args:
        model: the model bundle.
        test: the held-out split (raw columns, as serving would receive them).
        mlflow_tracking_uri: MLflow tracking URI; empty uses the bundle's run's store.
        slice_columns: comma-separated columns to report metrics per value (numeric
            columns per quartile); ``auto``: categorical features with 2 to 20 values
            (at most 4); empty: none.
        sensitive_column: a column across whose groups fairness is measured
            (demographic parity and equal opportunity differences; binary tasks).
        bootstrap: bootstrap resamples for confidence intervals; 0 turns them off.
        confidence: the intervals' confidence level.
        importance_repeats: shuffles per feature for permutation importance; 0 is off.
        seed: seeds the bootstrap and the permutations.

    Returns:
        metrics: every test metric, and the constant predictor's as ``baseline_*``.
        classification_metrics: ROC curve and confusion matrix for the Kubeflow UI (the
            precision-recall curve is in its metadata and in the report).
        report: an HTML report.
        evaluation: the full evaluation as JSON.
        model_card: a model card (Markdown) from the evaluation and the lineage.
        headline: the name of the headline metric (``roc_auc`` or ``r2``).
        score: the headline metric's held-out value.
    """
    from collections import namedtuple

    from kfgpu.evaluation.step import evaluate_model_step

    result = evaluate_model_step(
        bundle_path=model.path,
        test_path=test.path,
        report_path=report.path,
        evaluation_path=evaluation.path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        slice_columns=slice_columns,
        sensitive_column=sensitive_column,
        bootstrap=bootstrap,
        confidence=confidence,
        importance_repeats=importance_repeats,
        seed=seed,
        card_path=model_card.path,
    )
    result.publish(metrics=metrics)
    out = result.output
    curve = out.roc_curve
    if curve:
        classification_metrics.log_roc_curve(curve["fpr"], curve["tpr"], curve["threshold"])
    if out.pr_curve:
        classification_metrics.metadata["prCurve"] = out.pr_curve
    if out.confusion_matrix:
        classification_metrics.log_confusion_matrix(out.classes, out.confusion_matrix)
    headline = out.headline
    return namedtuple("Outputs", ["headline", "score"])(
        headline, float(result.metrics["test_" + headline])
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def detect_drift(
    reference: Input[Artifact],
    current: Input[Dataset],
    result: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    config_json: str = "",
    fail_on_drift: bool = False,
) -> NamedTuple("Outputs", [("dataset_drift", bool), ("drift_share", float)]):
    """Check current data for drift against a reference, over every row, at a known
    false-alarm rate.

    A column drifts when its two-sample test (KS, chi-square) is significant after a Holm
    (or Benjamini-Hochberg) correction across all columns and its effect size reaches a
    practical minimum (normalised Wasserstein 0.1, Jensen-Shannon 0.1 by default). With a
    model bundle as the reference the dataset verdict is model-aware: drift when the
    drifted columns carry enough of the model's feature importance or when the model's
    output distribution drifted; with a profile or a dataset, when a share of the columns
    drifted. Fewer rows than min_rows give "insufficient data". Computed from mergeable
    sketches in bounded memory; the HTML report states the same verdict as the JSON and
    adds Evidently's views on samples.

    Args:
        reference: a kfgpu model bundle (model-aware), a reference profile directory, or a
            dataset to profile.
        current: the data to check.
        config_json: drift settings as JSON, e.g. ``{"alpha": 0.01, "correction": "bh",
            "min_rows": 500, "columns": {"amount": {"method": "ks", "threshold": 0.05}}}``.
        fail_on_drift: fail the step (after writing its outputs) when the dataset drifted.

    Returns:
        result: drift.json: status, the rule(s) that fired and why, per column (effect,
            threshold, p-value, adjusted p-value, importance), the prediction drift test.
        report: an HTML drift report for the Kubeflow UI (the same verdict).
        metrics: drift share, drifted and total column counts, dataset drift.
        dataset_drift: whether the dataset as a whole drifted.
        drift_share: the share of columns that drifted.
    """
    from collections import namedtuple

    from kfgpu.monitoring.step import detect_drift_step

    outcome = detect_drift_step(
        reference_uri=reference.path,
        current_uri=current.path,
        result_path=result.path,
        report_path=report.path,
        config_json=config_json,
        fail_on_drift=fail_on_drift,
    )
    outcome.publish(metrics=metrics)
    outputs = namedtuple("Outputs", ["dataset_drift", "drift_share"])
    return outputs(bool(outcome.metrics["dataset_drift"]), float(outcome.metrics["drift_share"]))
