"""Held-out metrics, always beside the score of a constant predictor.

A metric means little alone: 98% accuracy on 2% fraud is what predicting "no fraud"
gets. Every evaluation therefore reports the same metrics for the constant predictor
that knows only the training label distribution, and the model's margin over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Evaluation", "evaluate_classification", "evaluate_regression"]

#: The metric printed as "the held-out score" and used as the headline, per task.
HEADLINE = {"classification": "roc_auc", "regression": "r2"}


@dataclass
class Evaluation:
    """Metrics of the model and of the constant baseline on one held-out set."""

    task: str
    headline: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    rows: int
    confusion_matrix: list[list[int]] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    roc_curve: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "headline": self.headline,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "rows": self.rows,
            "confusion_matrix": self.confusion_matrix,
            "classes": self.classes,
        }


def _thin_curve(
    fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray, points: int = 200
) -> dict[str, list[float]]:
    """At most ``points`` points of a ROC curve (the KFP UI draws a few hundred well)."""
    import numpy as np

    thr = np.where(np.isfinite(thr), thr, 1.0)
    if len(fpr) > points:
        idx = np.unique(np.linspace(0, len(fpr) - 1, points).round().astype(int))
        fpr, tpr, thr = fpr[idx], tpr[idx], thr[idx]
    return {
        "fpr": [float(x) for x in fpr],
        "tpr": [float(x) for x in tpr],
        "threshold": [float(min(max(x, 0.0), 1.0)) for x in thr],
    }


def evaluate_classification(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[Any],
    *,
    positive_class: Any = None,
    prior: np.ndarray | None = None,
) -> Evaluation:
    """Classification metrics of probabilities ``proba`` (n, k) against labels ``y_true``.

    Binary problems report precision/recall/F1 for ``positive_class``; multiclass ones
    macro averages. ``prior`` (the training class distribution) defines the constant
    baseline; it defaults to the uniform distribution.
    """
    import numpy as np
    from sklearn import metrics as skm

    if len(y_true) == 0:
        raise DataError("the held-out split is empty; raise test_fraction or add rows")
    k = len(classes)
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in y_true} - set(index))
    if unknown:
        raise DataError(f"held-out labels {unknown} were never seen in training")
    y = np.asarray([index[str(v)] for v in y_true], dtype=np.int64)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    prior_p = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, dtype=np.float64)
    prior_p = prior_p / prior_p.sum()
    constant_proba = np.tile(prior_p, (len(y), 1))
    constant_pred = np.full(len(y), int(prior_p.argmax()))
    labels = list(range(k))

    def scores(p: np.ndarray, hard: np.ndarray) -> dict[str, float]:
        present = np.unique(y)
        out = {
            "accuracy": float(skm.accuracy_score(y, hard)),
            # Balanced accuracy as the mean recall of the classes present: the same number as
            # balanced_accuracy_score, without its warning when a held-out set lacks a class.
            "balanced_accuracy": float(
                skm.recall_score(y, hard, labels=present, average="macro", zero_division=0)
            ),
            "log_loss": float(skm.log_loss(y, p, labels=labels)),
        }
        if k == 2:
            pos = index[str(positive_class)] if positive_class is not None else 1
            out["precision"] = float(skm.precision_score(y, hard, pos_label=pos, zero_division=0))
            out["recall"] = float(skm.recall_score(y, hard, pos_label=pos, zero_division=0))
            out["f1"] = float(skm.f1_score(y, hard, pos_label=pos, zero_division=0))
            if len(present) == 2:
                score = p[:, pos]
                out["roc_auc"] = float(skm.roc_auc_score(y == pos, score))
                out["pr_auc"] = float(skm.average_precision_score(y == pos, score))
        else:
            out["precision"] = float(
                skm.precision_score(y, hard, average="macro", labels=labels, zero_division=0)
            )
            out["recall"] = float(
                skm.recall_score(y, hard, average="macro", labels=labels, zero_division=0)
            )
            out["f1"] = float(
                skm.f1_score(y, hard, average="macro", labels=labels, zero_division=0)
            )
            if len(present) == k:
                out["roc_auc"] = float(
                    skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels)
                )
        return out

    model_scores = scores(proba, pred)
    baseline = scores(constant_proba, constant_pred)
    cm = skm.confusion_matrix(y, pred, labels=labels).tolist()
    curve: dict[str, list[float]] = {}
    if k == 2 and len(np.unique(y)) == 2:
        pos = index[str(positive_class)] if positive_class is not None else 1
        fpr, tpr, thr = skm.roc_curve(y == pos, proba[:, pos])
        curve = _thin_curve(fpr, tpr, thr)
    headline = "roc_auc" if "roc_auc" in model_scores else "accuracy"
    return Evaluation(
        task="classification",
        headline=headline,
        metrics=model_scores,
        baseline=baseline,
        rows=len(y),
        confusion_matrix=cm,
        classes=list(classes),
        roc_curve=curve,
    )


def evaluate_regression(y_true: np.ndarray, y_pred: np.ndarray, *, train_mean: float) -> Evaluation:
    """MSE, RMSE, MAE and R² of the model and of always predicting the training mean."""
    import numpy as np
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=np.float64)
    if len(y) == 0:
        raise DataError("the held-out split is empty; raise test_fraction or add rows")

    def scores(p: np.ndarray) -> dict[str, float]:
        mse = float(skm.mean_squared_error(y, p))
        return {
            "mse": mse,
            "rmse": mse**0.5,
            "mae": float(skm.mean_absolute_error(y, p)),
            "r2": float(skm.r2_score(y, p)),
        }

    return Evaluation(
        task="regression",
        headline="r2",
        metrics=scores(np.asarray(y_pred, dtype=np.float64)),
        baseline=scores(np.full_like(y, train_mean)),
        rows=len(y),
    )
