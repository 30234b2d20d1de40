"""The set-up every trainer shares: labels, tensors, batch size, network configuration.

Both trainers (Lightning's :func:`~kfgpu.training.trainer.train_tabular` and Horovod's
:func:`~kfgpu.training.horovod.train_horovod`) call :func:`prepare_training` once, run their
own loop over :func:`~kfgpu.training.data.make_batches`' batches, and hand the best weights
to :func:`~kfgpu.training.bundling.package_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import ShardedSplit

__all__ = [
    "MIN_BATCH_SIZE",
    "MIN_STEPS_PER_EPOCH",
    "TrainingSetup",
    "check_task",
    "effective_batch_size",
    "encode_labels",
    "imbalance_settings",
    "model_inputs",
    "prepare_training",
    "resolve_accelerator",
    "split_tensors",
]

#: Small tables get a smaller batch so that an epoch still takes several optimiser steps;
#: a 400-row CSV with batch 1024 would otherwise train on one step per epoch.
MIN_STEPS_PER_EPOCH = 10
MIN_BATCH_SIZE = 16


def check_task(task: str) -> None:
    """Refuse a task other than ``classification`` or ``regression``."""
    if task not in ("classification", "regression"):
        raise ConfigError(f"task={task!r} is invalid: use 'classification' or 'regression'")


def effective_batch_size(requested: int, train_rows: int) -> int:
    """``requested``, lowered (not below 16) so an epoch has at least 10 steps."""
    cap = max(MIN_BATCH_SIZE, train_rows // MIN_STEPS_PER_EPOCH)
    return min(requested, cap)


def resolve_accelerator(config: TrainConfig) -> str:
    """``auto`` -> ``gpu`` when CUDA is usable, else ``cpu``; refuse what cannot run."""
    import torch

    accelerator = config.accelerator
    if config.devices == 0:  # no GPU asked for: never pick up one the pod merely sees
        accelerator = "cpu"
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            "accelerator='gpu' but no CUDA device is visible; request GPUs for the step "
            "(pipeline parameter gpus) or set accelerator to 'cpu' or 'auto'"
        )
    if accelerator == "cpu" and config.strategy == "fsdp":
        raise ConfigError(
            "strategy='fsdp' needs CUDA GPUs (Lightning's FSDP runs on GPUs only); on CPU "
            "use 'ddp' or 'auto'"
        )
    if accelerator == "cpu" and config.precision == "16-mixed":
        raise ConfigError(
            "precision='16-mixed' needs a CUDA GPU; on CPU use 'bf16-mixed' or '32-true'"
        )
    return accelerator


def encode_labels(
    train_y: pd.Series, other: list[pd.Series], *, task: str
) -> tuple[dict[str, Any], Callable[[pd.Series], np.ndarray]]:
    """Label mapping for the bundle, and a function encoding a series with it."""
    import numpy as np

    if task == "classification":
        values = sorted({*train_y.unique()}, key=lambda v: (str(type(v)), v))
        classes = [v.item() if hasattr(v, "item") else v for v in values]
        if len(classes) < 2:
            raise TrainingError(
                f"the training split holds a single class {classes!r}; the target needs at "
                "least two classes"
            )
        index = {c: i for i, c in enumerate(classes)}
        for s in other:
            unseen = sorted({str(v) for v in s.unique()} - {str(c) for c in classes})
            if unseen:
                raise TrainingError(
                    f"classes {unseen} appear outside the training split only; "
                    "use a stratified split or more data"
                )
        counts = train_y.value_counts()
        positive = counts.idxmin().item() if hasattr(counts.idxmin(), "item") else counts.idxmin()
        labels = {
            "classes": classes,
            "positive_class": positive if len(classes) == 2 else None,
            "train_distribution": {str(k): int(v) for k, v in counts.items()},
        }

        def encode(s: pd.Series) -> np.ndarray:
            return np.asarray([index[v] for v in s.tolist()], dtype=np.int64)

        return labels, encode

    mean = float(train_y.mean())
    std = float(train_y.std(ddof=0)) or 1.0
    labels = {"target_mean": mean, "target_scale": std}

    def encode_reg(s: pd.Series) -> np.ndarray:
        return ((s.to_numpy(dtype=np.float64) - mean) / std).astype(np.float32)

    return labels, encode_reg


def model_inputs(df: pd.DataFrame, transform: FittedTransform) -> tuple[np.ndarray, np.ndarray]:
    """Dense and embedding arrays from a transformed split (engineer_features' output)."""
    import numpy as np

    missing = [c for c in (*transform.dense_names, *transform.emb_names) if c not in df.columns]
    if missing:
        raise TrainingError(
            f"the training split lacks transformed feature column(s) {missing[:5]}; it must be "
            "engineer_features' output for this transform"
        )
    dense = df[list(transform.dense_names)].to_numpy(dtype=np.float32)
    emb = df[list(transform.emb_names)].to_numpy(dtype=np.int64).reshape(len(df), -1)
    return np.ascontiguousarray(dense), np.ascontiguousarray(emb)


def split_tensors(
    df: pd.DataFrame,
    transform: FittedTransform,
    target: str,
    encode: Callable[[pd.Series], np.ndarray],
    *,
    transformed: bool,
) -> tuple[torch.Tensor, ...]:
    """``(numeric, codes, y)`` from a transformed split, or from a raw one via the transform.

    Which one is said, not guessed: transformed column names often equal raw ones."""
    import torch

    if transformed:
        x, c = model_inputs(df, transform)
    else:
        x, c = transform.transform(df)
    return torch.from_numpy(x), torch.from_numpy(c), torch.from_numpy(encode(df[target]))


def imbalance_settings(
    config: TrainConfig, labels: dict[str, Any], y: torch.Tensor, *, task: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The loss's class weights and the sampler's row weights of ``config`` (both trainers).

    Raises:
        ConfigError: class weights or a balanced sampler on a regression task, or a
            weight for a class the training split lacks.
    """
    from kfgpu.training.imbalance import class_weight_tensor, sample_weights

    if task != "classification":
        for name, off in (("class_weight", "none"), ("sampler", "shuffle")):
            if getattr(config, name) != off:
                raise ConfigError(
                    f"{name}={getattr(config, name)!r} applies to classification; this "
                    f"task is {task}: set {name}={off!r}"
                )
        return None, None
    y = y.long()
    return (
        class_weight_tensor(config.class_weight, labels["classes"], y),
        sample_weights(config.sampler, y, len(labels["classes"])),
    )


@dataclass(frozen=True)
class TrainingSetup:
    """What a trainer's loop starts from (:func:`prepare_training`).

    Attributes:
        task: ``classification`` or ``regression``.
        target: the target column.
        labels: the bundle's label mapping (classes) or target scaling (regression).
        train: ``(numeric, codes, y)`` tensors of the training split, or the split left
            on storage (a :class:`~kfgpu.training.streaming.ShardedSplit`, above
            ``config.stream_threshold_mb``), which each rank streams its share of.
        val: the same of the validation split (streamed above the same threshold,
            encoded with the training split's labels).
        train_rows: rows in the training split.
        val_rows: rows in the validation split.
        batch_size: the batch size to train with (per worker under Horovod), after
            :func:`effective_batch_size`.
        network_config: the model family's configuration (the bundle's ``model.config``).
        class_weight: the loss's class weights, or None.
        row_weights: a balanced sampler's per-row draw weights, or None.
    """

    task: str
    target: str
    labels: dict[str, Any]
    train: tuple[torch.Tensor, ...] | ShardedSplit
    val: tuple[torch.Tensor, ...] | ShardedSplit
    train_rows: int
    val_rows: int
    batch_size: int
    network_config: dict[str, Any]
    class_weight: torch.Tensor | None
    row_weights: torch.Tensor | None


def prepare_training(
    train_df: pd.DataFrame | ShardedSplit,
    val_df: pd.DataFrame | ShardedSplit,
    *,
    transform: FittedTransform,
    target: str,
    task: str,
    config: TrainConfig,
    transformed: bool,
    workers: int | None = None,
    say: Callable[[str], None] | None = None,
) -> TrainingSetup:
    """Labels, tensors, batch size and network configuration of a run (both trainers).

    Args:
        train_df: the training split: engineer_features' output with ``transformed``,
            else raw rows the transform is applied to; or a
            :class:`~kfgpu.training.streaming.ShardedSplit` of either, streamed per rank
            (:func:`~kfgpu.training.streaming.open_training_split` picks by size).
        val_df: the validation split, alike (:func:`~kfgpu.training.streaming.open_splits`
            opens both); a streamed one is encoded with the training split's labels.
        transform: the fitted feature transform.
        target: the target column.
        task: ``classification`` or ``regression``.
        config: the run's settings.
        transformed: whether the splits are already transformed.
        workers: Horovod's worker count: the batch size is then per worker, on each
            worker's share of the rows. None under Lightning, whose batch size is lowered
            on the whole split.
        say: where the batch-size notice goes (default: printed).

    Raises:
        ConfigError: the task or the imbalance settings are invalid.
        TrainingError: a split lacks the target, or the data cannot train a model.
    """
    from kfgpu.training.families import family_config
    from kfgpu.training.streaming import (
        ShardedSplit,
        label_encoder,
        streamed_imbalance_settings,
    )

    check_task(task)
    streamed = isinstance(train_df, ShardedSplit)  # above config.stream_threshold_mb
    for name, df in (("training", train_df), ("validation", val_df)):
        if not isinstance(df, ShardedSplit) and target not in df.columns:
            raise TrainingError(f"the {name} split has no target column {target!r}")
    train_t: tuple[torch.Tensor, ...] | ShardedSplit
    val_targets = [] if isinstance(val_df, ShardedSplit) else [val_df[target]]
    if isinstance(train_df, ShardedSplit):
        # Labels from the streamed target column; the rows stay on storage.
        labels, encode = train_df.labels, label_encoder(train_df.labels, task=task)
        train_t = train_df
    else:
        labels, encode = encode_labels(train_df[target], val_targets, task=task)
        train_t = split_tensors(train_df, transform, target, encode, transformed=transformed)
    val_t: tuple[torch.Tensor, ...] | ShardedSplit
    if isinstance(val_df, ShardedSplit):
        # Streamed like the training split (open_splits checked its classes); encoded with
        # the training split's labels, whatever it was opened with.
        if config.datamodule:
            raise ConfigError(
                f"datamodule={config.datamodule!r} receives the splits as in-memory tensors, "
                "and this validation split is streamed (above stream_threshold_mb="
                f"{config.stream_threshold_mb}); raise stream_threshold_mb or drop the "
                "datamodule"
            )
        val_t = val_df if val_df.labels == labels else val_df.with_labels(labels)
    else:
        val_t = split_tensors(val_df, transform, target, encode, transformed=transformed)
    rows, where = len(train_df), "training rows"
    if workers is not None:
        rows, where = len(train_df) // workers, "training rows per worker"
        if rows < 1:
            raise TrainingError(
                f"{len(train_df)} training rows cannot be shared among {workers} workers"
            )
    batch_size = effective_batch_size(config.batch_size, rows)
    if batch_size != config.batch_size:
        (say or _print)(
            f"batch_size {config.batch_size} would give under {MIN_STEPS_PER_EPOCH} steps per "
            f"epoch on {rows} {where}; using {batch_size}"
        )
    network_config = family_config(
        config.model_family,
        dense_names=tuple(transform.dense_names),
        cardinalities=tuple(transform.cardinalities),
        hidden_sizes=config.hidden_sizes,
        dropout=config.dropout,
        n_outputs=len(labels["classes"]) if task == "classification" else 1,
    )
    class_weight, row_weights = (
        streamed_imbalance_settings(config, labels, task=task)
        if streamed
        else imbalance_settings(config, labels, train_t[-1], task=task)  # type: ignore[index]
    )
    if isinstance(train_t, ShardedSplit) and config.sampler == "balanced":
        train_t = train_t.with_balanced_sampler()  # drawn by class in each shuffle window
    return TrainingSetup(
        task=task,
        target=target,
        labels=labels,
        train=train_t,
        val=val_t,
        train_rows=len(train_df),
        val_rows=len(val_df),
        batch_size=batch_size,
        network_config=network_config,
        class_weight=class_weight,
        row_weights=row_weights,
    )


def _print(message: str) -> None:
    print(message, flush=True)
