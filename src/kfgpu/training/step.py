"""The train_model step: encoded splits in, model bundle out, tracked in MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfgpu._step import StepResult, step

__all__ = ["TrainOutput", "parse_overrides", "train_model_step"]


@dataclass(frozen=True)
class TrainOutput:
    """What :func:`train_model_step` returns beside the bundle.

    Attributes:
        mlflow_run_id: the MLflow run training logged to (``""``: none).
    """

    mlflow_run_id: str


def parse_overrides(
    overrides: str | dict[str, Any], *, field: str = "hyperparameters"
) -> dict[str, Any]:
    """Training settings from a JSON object (or a dict); ``""`` or ``"{}"`` is none.

    Raises:
        ConfigError: the text is not a JSON object.
    """
    import json

    from kfgpu.errors import ConfigError

    if isinstance(overrides, dict):
        return dict(overrides)
    if not overrides.strip():
        return {}
    try:
        value = json.loads(overrides)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{field}={overrides[:80]!r} is not valid JSON ({e}); give a JSON object "
            'of training settings such as {"learning_rate": 0.003}'
        ) from e
    if not isinstance(value, dict):
        raise ConfigError(
            f"{field}={overrides[:80]!r} is a JSON {type(value).__name__}; give a JSON "
            'object of training settings such as {"learning_rate": 0.003}'
        )
    return value


@step("train_model")
def train_model_step(
    *,
    train_path: str,
    val_path: str,
    transform_path: str,
    target: str,
    profile_path: str = "",
    task: str,
    bundle_path: str,
    config: dict[str, Any],
    mlflow_tracking_uri: str = "",
    lineage: dict[str, Any] | None = None,
    overrides: str | dict[str, Any] = "",
) -> StepResult[TrainOutput]:
    """Train with ``config`` (a :class:`TrainConfig` as a dict) and write the bundle.

    ``overrides``: settings that replace those in ``config``, as a dict or a JSON object
    (tune_hyperparameters' best parameters); the bundle records the settings used.

    ``train_path`` and ``val_path`` hold transformed splits (from engineer_features);
    ``profile_path`` a reference profile directory copied into the bundle.

    With ``config["checkpoint_dir"]`` set (a directory that a retry of this step sees
    again: a mounted volume), training resumes from its ``last.ckpt`` if it is this run's
    (same data and configuration; another is set aside, see the summary); on SIGTERM the step
    saves it and fails with ``TrainingError("preempted: ...")`` (exit status 1) without a
    bundle, so a retry resumes.

    Raises:
        ConfigError: invalid settings.
        TrainingError: the data cannot train a model, or training diverged, or the step
            was preempted (the message starts with ``preempted:``).
    """
    import os
    import shutil

    from kfgpu.features.transform import FittedTransform
    from kfgpu.registry import tracking
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import open_splits
    from kfgpu.training.trainer import train_tabular

    cfg = TrainConfig.from_dict({**config, **parse_overrides(overrides)})
    own, final = TrainConfig.from_dict(config).to_dict(), cfg.to_dict()
    changed = {k: (own[k], final[k]) for k in own if own[k] != final[k]}
    if changed:
        # A tuned configuration replaces the step's own settings: say which.
        print(
            "settings replaced by the tuned/override configuration: "
            + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())),
            flush=True,
        )
    fitted = FittedTransform.load(transform_path)
    # Above cfg.stream_threshold_mb a split stays on storage, streamed per rank.
    train_df, val_df = open_splits(
        train_path,
        val_path,
        transform=fitted,
        target=target,
        task=task,
        transformed=True,
        threshold_mb=cfg.stream_threshold_mb,
    )
    uri = tracking.resolve_tracking_uri(mlflow_tracking_uri)
    run_id = ""
    # Under DDP's subprocess launcher every rank runs this body; only rank 0 tracks.
    is_rank_zero = (
        os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
    )
    if uri and is_rank_zero:
        run_id = tracking.start_run(
            uri,
            run_name=f"train-{target}",
            params={
                **cfg.to_dict(),
                "task": task,
                "target": target,
                "train_rows": len(train_df),
                "val_rows": len(val_df),
            },
            tags={f"kfgpu.{k}": str(v) for k, v in (lineage or {}).items()},
        )
    # The training data's reference profile (from engineer_features) travels in the
    # bundle: later drift and skew checks need only the new data.
    extras = (
        {"reference": lambda d: shutil.copytree(profile_path, d, dirs_exist_ok=True)}
        if profile_path
        else {}
    )
    try:
        outcome = train_tabular(
            train_df,
            val_df,
            transform=fitted,
            target=target,
            task=task,
            config=cfg,
            bundle_path=bundle_path,
            mlflow_uri=uri,
            mlflow_run_id=run_id,
            lineage=lineage,
            extras=extras,
            transformed=True,
        )
    except BaseException:
        if run_id:
            tracking.end_run(uri, run_id, status="FAILED")
        raise
    if run_id and outcome.bundle_path is not None:
        report = outcome.description["training"].get("report", {})
        tracking.log_metrics(uri, run_id, {**outcome.metrics, **report})
        tracking.log_artifacts(uri, run_id, str(outcome.bundle_path), "bundle")
        tracking.end_run(uri, run_id)
    summary = (
        f"{outcome.epochs_run} epochs in {outcome.seconds:.1f}s, best val_loss "
        f"{outcome.metrics['val_loss']:.4f} at epoch {outcome.best_epoch}"
    )
    resume = outcome.description["lineage"].get("resume") or {}
    if resume.get("resumed"):
        summary += f"; resumed from {resume['from']} at step {resume['at_step']}"
    elif resume.get("set_aside"):
        summary += f"; from scratch: another run's checkpoint set aside in {resume['set_aside']}"
    return StepResult(
        metrics={
            **outcome.metrics,
            "epochs_run": float(outcome.epochs_run),
            "best_epoch": float(outcome.best_epoch),
            "global_step": float(outcome.description["training"]["global_step"]),
            "train_seconds": outcome.seconds,
            **outcome.description["training"].get("report", {}),
        },
        metadata={
            "model": {
                "framework": "pytorch",
                "format": "kfgpu-bundle/1",
                "family": cfg.model_family,
                "mlflow_run_id": run_id or None,
                "mlflow_tracking_uri": uri or None,
            }
        },
        summary=summary,
        output=TrainOutput(mlflow_run_id=run_id or ""),
    )
