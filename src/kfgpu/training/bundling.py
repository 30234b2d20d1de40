"""Packaging a trained model: score the best weights, describe them, write the bundle.

One layout for every trainer (Lightning, Horovod): each calls :func:`score_model` on the
weights it kept and :func:`package_model` with its own ``training`` figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import TrainingError

if TYPE_CHECKING:
    import os

    import torch

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.prepare import TrainingSetup
    from kfgpu.training.streaming import ShardedSplit

__all__ = [
    "SCORED_ROWS",
    "ModelScore",
    "PackagedModel",
    "ValidationOutputs",
    "bundle_description",
    "package_model",
    "score_best_weights",
    "score_model",
    "validation_decision",
    "validation_outputs",
]


def bundle_description(
    *,
    task: str,
    target: str,
    config: TrainConfig,
    family_config: dict[str, Any],
    transform: FittedTransform,
    labels: dict[str, Any],
    metrics: dict[str, float],
    training: dict[str, Any],
    lineage: dict[str, Any],
    decision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """bundle.json's content: one layout for every trainer (Lightning, Horovod).

    ``decision``: the decision rule chosen on the validation rows
    (:func:`validation_decision`), applied by every consumer of the bundle.
    """
    from kfgpu import __version__

    description: dict[str, Any] = {
        "kfgpu_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": task,
        "target": target,
        "model": {"family": config.model_family, "config": family_config},
        "hyperparameters": config.to_dict(),
        "signature": {
            "inputs": transform.input_signature(),
            "outputs": (
                [{"name": "prediction"}] + [{"name": f"proba_{c}"} for c in labels["classes"]]
                if task == "classification"
                else [{"name": "prediction"}]
            ),
        },
        "metrics": metrics,
        "training": training,
        "lineage": {**lineage, "code_version": __version__},
    }
    if task == "classification":
        description["labels"] = labels
        if decision:
            description["decision"] = decision
    else:
        description["target_scaling"] = {
            "mean": labels["target_mean"],
            "scale": labels["target_scale"],
        }
    return description


#: Validation rows whose outputs are kept for the headline metric (ROC AUC) and the
#: decision threshold by default (``TrainConfig.val_sample_rows``): every row up to this
#: many (exact), else a seeded uniform sample of this many
#: (:class:`~kfgpu.data.stream.RowSample`). Loss, accuracy and R² are exact sums over every
#: row whatever the size. 1,000,000 rows of a binary model's outputs and labels hold 16 MB;
#: scoring them (scikit-learn's curves) takes ~100 bytes a row at its peak.
SCORED_ROWS = 1_000_000
#: Rows per forward pass when scoring.
_SCORE_BATCH = 65_536


@dataclass(frozen=True)
class ValidationOutputs:
    """One pass of a network over the whole validation split (:func:`validation_outputs`).

    Attributes:
        rows: validation rows scored (all of them).
        loss_sum: the summed loss over every row (cross-entropy, or squared error), fp64.
        correct: rows whose argmax is their class (classification).
        y_sum, y_squares: the sum and the sum of squares of the encoded targets
            (regression), fp64: R² from them is exact over every row.
        out: fp32 outputs of the kept rows: every row up to ``sample_rows``, else a
            seeded uniform sample of that many, in row order.
        y: the kept rows' encoded targets.
    """

    rows: int
    loss_sum: float
    correct: int
    y_sum: float
    y_squares: float
    out: torch.Tensor
    y: torch.Tensor

    @property
    def sampled(self) -> bool:
        """Whether ``out`` holds a sample, not every row."""
        return len(self.y) < self.rows

    def scoring(self) -> dict[str, Any]:
        """What the headline and the decision were computed on (the bundle's
        ``training.validation_scoring``)."""
        kept = len(self.y)
        return {
            "rows": self.rows,
            "kept_rows": kept,
            "sampled": self.sampled,
            "note": (
                f"val_roc_auc and the decision threshold: sampled {kept} of {self.rows} rows "
                "(seeded uniform); val_loss, val_accuracy and val_r2: every row"
                if self.sampled
                else f"every metric on all {self.rows} validation rows"
            ),
        }


def _val_batches(
    val: tuple[torch.Tensor, ...] | ShardedSplit,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The whole validation split in order, a chunk at a time (streamed when sharded)."""
    from kfgpu.training.streaming import ShardedSplit

    if isinstance(val, ShardedSplit):
        yield from val.batches(batch_size=_SCORE_BATCH, shuffle=False, seed=0)
        return
    for start in range(0, len(val[-1]), _SCORE_BATCH):
        yield tuple(t[start : start + _SCORE_BATCH] for t in val)


def validation_outputs(
    network: torch.nn.Module,
    val: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    task: str,
    sample_rows: int = SCORED_ROWS,
    seed: int = 0,
) -> ValidationOutputs:
    """Score ``network`` (fp32 outputs) on every row of ``val``, in chunks: exact sums over
    every row, and the outputs of at most ``sample_rows`` rows (all of them, or a seeded
    uniform sample). ``val``: tensors, or a streamed split read one window at a time."""
    import pandas as pd
    import torch
    from torch.nn import functional as F

    from kfgpu.data.stream import RowSample

    device = next(network.parameters()).device
    network.eval()
    sample = RowSample(sample_rows, seed=seed)
    loss_sum = y_sum = y_squares = 0.0
    correct = rows = 0
    k = 0
    with torch.inference_mode():
        for numeric, codes, y in _val_batches(val):
            numeric, codes, y = (t.to(device) for t in (numeric, codes, y))
            out = network(numeric, codes).float()
            if task == "classification":
                loss_sum += float(F.cross_entropy(out, y, reduction="sum").double())
                correct += int((out.argmax(dim=1) == y).sum())
            else:
                pred = out.squeeze(1)
                loss_sum += float(F.mse_loss(pred, y, reduction="sum").double())
                yd = y.double()
                y_sum += float(yd.sum())
                y_squares += float((yd * yd).sum())
            rows += len(y)
            host = out.cpu().numpy()
            k = host.shape[1]
            frame = pd.DataFrame({f"o{j}": host[:, j] for j in range(k)})
            frame["y"] = y.cpu().numpy()
            sample.add(frame)
    if rows == 0:
        raise TrainingError("the validation split holds no rows; it needs at least one")
    kept = sample.frame()
    out_kept = torch.from_numpy(kept[[f"o{j}" for j in range(k)]].to_numpy(copy=True))
    y_kept = torch.from_numpy(kept["y"].to_numpy(copy=True))
    return ValidationOutputs(
        rows=rows,
        loss_sum=loss_sum,
        correct=correct,
        y_sum=y_sum,
        y_squares=y_squares,
        out=out_kept,
        y=y_kept,
    )


def score_best_weights(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    val: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    task: str,
    config: TrainConfig,
) -> dict[str, float]:
    """Load the best weights into ``network`` and score them on the whole validation split.

    Raises:
        TrainingError: the loss is not finite (training diverged).
    """
    network.load_state_dict(state)
    outputs = validation_outputs(
        network, val, task=task, sample_rows=config.val_sample_rows, seed=config.seed
    )
    return _checked(_validation_metrics(outputs, task=task), config)


def _checked(metrics: dict[str, float], config: TrainConfig) -> dict[str, float]:
    if not math.isfinite(metrics["val_loss"]):
        raise TrainingError(
            f"the best weights give a validation loss of {metrics['val_loss']}; lower "
            f"learning_rate (now {config.learning_rate}) or use precision='32-true'"
        )
    return metrics


def _validation_metrics(outputs: ValidationOutputs, *, task: str) -> dict[str, float]:
    """Validation loss, accuracy and the gate's headline metric (ROC AUC, R²).

    Loss, accuracy and R² are exact over every row; ROC AUC is computed on the kept
    outputs (every row up to ``val_sample_rows``, else a uniform sample). The headline is
    the one :mod:`kfgpu.evaluation` reports on the test rows, so tuning can compare trials
    on what the gate will judge.
    """
    import numpy as np
    from sklearn import metrics as skm

    n = outputs.rows
    if task == "classification":
        out_metrics = {
            "val_loss": outputs.loss_sum / n,
            "val_accuracy": outputs.correct / n,
        }
        proba = _probabilities(outputs.out)
        yy = outputs.y.cpu().numpy()
        k = proba.shape[1]
        if len(np.unique(yy)) == k and np.isfinite(proba).all():
            if k == 2:
                out_metrics["val_roc_auc"] = float(skm.roc_auc_score(yy == 1, proba[:, 1]))
            else:
                out_metrics["val_roc_auc"] = float(
                    skm.roc_auc_score(yy, proba, multi_class="ovr", labels=list(range(k)))
                )
        return out_metrics
    sse = outputs.loss_sum
    out_metrics = {"val_loss": sse / n}
    if n >= 2 and math.isfinite(sse):
        # R² = 1 - SSE / SST, both exact sums over every row (fp64); sklearn's convention
        # where the targets are constant.
        sst = outputs.y_squares - outputs.y_sum * outputs.y_sum / n
        if sst > 1e-12 * max(outputs.y_squares, 1.0):
            out_metrics["val_r2"] = 1.0 - sse / sst
        else:
            out_metrics["val_r2"] = 1.0 if sse == 0 else 0.0
    return out_metrics


def _probabilities(out: torch.Tensor) -> Any:
    """Class probabilities as the served module computes them (fp32 softmax), on the host."""
    import torch

    return torch.softmax(out.float(), dim=1).cpu().numpy()


def _decision(
    outputs: ValidationOutputs, *, task: str, labels: dict[str, Any], config: TrainConfig
) -> dict[str, Any] | None:
    if task != "classification":
        return None
    from kfgpu.decision import choose_decision

    return choose_decision(
        config.threshold_policy,
        outputs.y.cpu().numpy(),
        _probabilities(outputs.out),
        labels["classes"],
        positive_class=labels.get("positive_class"),
    )


def validation_decision(
    network: torch.nn.Module,
    val: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    task: str,
    labels: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any] | None:
    """The decision rule of ``config.threshold_policy``, chosen on the validation rows
    (every row up to ``config.val_sample_rows``, else a seeded uniform sample of that many) with
    the weights ``network`` holds (the bundle's); ``None`` for regression."""
    if task != "classification":
        return None
    outputs = validation_outputs(
        network, val, task=task, sample_rows=config.val_sample_rows, seed=config.seed
    )
    return _decision(outputs, task=task, labels=labels, config=config)


@dataclass(frozen=True)
class ModelScore:
    """The best weights' validation figures and decision rule (:func:`score_model`).

    Empty on ranks that do not package the model. ``scoring``: what the figures were
    computed on (:meth:`ValidationOutputs.scoring`), recorded in the bundle's
    ``training.validation_scoring``.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    scoring: dict[str, Any] = field(default_factory=dict)


def score_model(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    val: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    setup: TrainingSetup,
    config: TrainConfig,
) -> ModelScore:
    """Load ``state`` into ``network``, score it on the whole validation split ``val`` and
    choose the decision rule on those rows (classification), in one pass over ``val``
    (streamed when it is a :class:`~kfgpu.training.streaming.ShardedSplit`).

    Raises:
        TrainingError: the loss is not finite (training diverged).
    """
    network.load_state_dict(state)
    outputs = validation_outputs(
        network, val, task=setup.task, sample_rows=config.val_sample_rows, seed=config.seed
    )
    metrics = _checked(_validation_metrics(outputs, task=setup.task), config)
    decision = _decision(outputs, task=setup.task, labels=setup.labels, config=config)
    return ModelScore(metrics=metrics, decision=decision, scoring=outputs.scoring())


@dataclass(frozen=True)
class PackagedModel:
    """The bundle's description, and where the bundle was written (None: not written)."""

    description: dict[str, Any]
    bundle_path: Path | None


def package_model(
    setup: TrainingSetup,
    *,
    config: TrainConfig,
    transform: FittedTransform,
    score: ModelScore,
    state: dict[str, torch.Tensor],
    training: dict[str, Any],
    lineage: dict[str, Any],
    bundle_path: str | os.PathLike[str] | None,
    extras: Mapping[str, Callable[[Path], object]] | None = None,
) -> PackagedModel:
    """Describe the model and, with a ``bundle_path``, write its bundle there.

    ``training``: the trainer's own figures (the bundle's ``training``); ``lineage``: the
    run's lineage. Call it with ``bundle_path=None`` where no bundle is written (ranks
    other than 0) to get the same description.
    """
    description = bundle_description(
        task=setup.task,
        target=setup.target,
        config=config,
        family_config=setup.network_config,
        transform=transform,
        labels=setup.labels,
        metrics=score.metrics,
        training={**training, "validation_scoring": score.scoring} if score.scoring else training,
        lineage=lineage,
        decision=score.decision,
    )
    written: Path | None = None
    if bundle_path is not None:
        from kfgpu.bundle import write_bundle

        written = write_bundle(
            bundle_path,
            state_dict=state,
            transform=transform,
            description=description,
            extras=extras,
        )
    return PackagedModel(description=description, bundle_path=written)
