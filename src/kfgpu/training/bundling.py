"""Packaging a trained model: score the best weights, describe them, write the bundle.

One layout for every trainer (Lightning, Horovod): each calls :func:`score_model` on the
weights it kept and :func:`package_model` with its own ``training`` figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
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

__all__ = [
    "ModelScore",
    "PackagedModel",
    "bundle_description",
    "package_model",
    "score_best_weights",
    "score_model",
    "validation_decision",
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


def score_best_weights(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    val: tuple[torch.Tensor, ...],
    *,
    task: str,
    config: TrainConfig,
) -> dict[str, float]:
    """Load the best weights into ``network`` and score them on the whole validation split.

    Raises:
        TrainingError: the loss is not finite (training diverged).
    """
    network.load_state_dict(state)
    metrics = _validation_metrics(_validation_outputs(network, val), val[-1], task=task)
    if not math.isfinite(metrics["val_loss"]):
        raise TrainingError(
            f"the best weights give a validation loss of {metrics['val_loss']}; lower "
            f"learning_rate (now {config.learning_rate}) or use precision='32-true'"
        )
    return metrics


def _validation_outputs(network: torch.nn.Module, val: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``network``'s fp32 outputs on the validation split, in chunks."""
    import torch

    numeric, codes, y = val
    network.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(y), 65536):
            sl = slice(start, start + 65536)
            outs.append(network(numeric[sl], codes[sl]).float())
    return torch.cat(outs)


def _validation_metrics(out: torch.Tensor, y: torch.Tensor, *, task: str) -> dict[str, float]:
    """Validation loss, accuracy and the gate's headline metric (ROC AUC, R²).

    The headline is the one :mod:`kfgpu.evaluation` reports on the test rows, so tuning
    can compare trials on what the gate will judge.
    """
    import numpy as np
    from sklearn import metrics as skm
    from torch.nn import functional as F

    if task == "classification":
        out_metrics = {
            "val_loss": float(F.cross_entropy(out, y)),
            "val_accuracy": float((out.argmax(dim=1) == y).float().mean()),
        }
        proba = _probabilities(out)
        yy = y.cpu().numpy()
        k = proba.shape[1]
        if len(np.unique(yy)) == k and np.isfinite(proba).all():
            if k == 2:
                out_metrics["val_roc_auc"] = float(skm.roc_auc_score(yy == 1, proba[:, 1]))
            else:
                out_metrics["val_roc_auc"] = float(
                    skm.roc_auc_score(yy, proba, multi_class="ovr", labels=list(range(k)))
                )
        return out_metrics
    pred = out.squeeze(1)
    out_metrics = {"val_loss": float(F.mse_loss(pred, y))}
    if len(y) >= 2 and bool(pred.isfinite().all()):
        out_metrics["val_r2"] = float(skm.r2_score(y.cpu().numpy(), pred.cpu().numpy()))
    return out_metrics


def _probabilities(out: torch.Tensor) -> Any:
    """Class probabilities as the served module computes them (fp32 softmax), on the host."""
    import torch

    return torch.softmax(out.float(), dim=1).cpu().numpy()


def validation_decision(
    network: torch.nn.Module,
    val: tuple[torch.Tensor, ...],
    *,
    task: str,
    labels: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any] | None:
    """The decision rule of ``config.threshold_policy``, chosen on the validation rows
    with the weights ``network`` holds (the bundle's); ``None`` for regression."""
    if task != "classification":
        return None
    from kfgpu.decision import choose_decision

    proba = _probabilities(_validation_outputs(network, val))
    return choose_decision(
        config.threshold_policy,
        val[-1].cpu().numpy(),
        proba,
        labels["classes"],
        positive_class=labels.get("positive_class"),
    )


@dataclass(frozen=True)
class ModelScore:
    """The best weights' validation figures and decision rule (:func:`score_model`).

    Empty on ranks that do not package the model.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] | None = None


def score_model(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    val: tuple[torch.Tensor, ...],
    *,
    setup: TrainingSetup,
    config: TrainConfig,
) -> ModelScore:
    """Load ``state`` into ``network``, score it on the whole validation split ``val`` and
    choose the decision rule on those rows (classification).

    Raises:
        TrainingError: the loss is not finite (training diverged).
    """
    metrics = score_best_weights(network, state, val, task=setup.task, config=config)
    decision = validation_decision(
        network, val, task=setup.task, labels=setup.labels, config=config
    )
    return ModelScore(metrics=metrics, decision=decision)


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
        training=training,
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
