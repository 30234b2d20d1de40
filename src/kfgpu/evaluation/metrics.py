"""Held-out metrics, always beside the score of a constant predictor.

A metric means little alone: 98% accuracy on 2% fraud is what predicting "no fraud"
gets. Every evaluation therefore reports the same metrics for the constant predictor
that knows only the training label distribution, and the model's margin over it.

Beyond the point estimates an evaluation can carry:

* a decision rule: the bundle's stored one (a binary threshold chosen on the validation
  rows at training time, see :mod:`kfgpu.decision`), which is what serving applies; or,
  for a caller without a bundle, a policy applied to these rows (argmax, a fixed value,
  best F1, least cost). The hard-label metrics (accuracy, precision, recall, F1,
  confusion matrix) are those of that rule;
* the expected calibration error (ECE, equal-width bins, 10 by default);
* per-slice metrics on columns the caller names, and fairness across a sensitive column
  (demographic parity difference, equal opportunity difference);
* seeded percentile bootstrap confidence intervals, computed for all resamples at once
  as weighted metrics (a resample is a vector of multinomial row counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "LOWER_IS_BETTER",
    "Evaluation",
    "calibration_bins",
    "choose_threshold",
    "evaluate_classification",
    "evaluate_regression",
    "expected_calibration_error",
    "fairness_metrics",
    "slice_labels",
    "thin_pr_curve",
    "thin_roc_curve",
]

#: The metric printed as "the held-out score" and used as the headline, per task.
HEADLINE = {"classification": "roc_auc", "regression": "r2"}

#: Metrics where a smaller value is better (everything else: larger is better).
LOWER_IS_BETTER = frozenset(
    {
        "log_loss",
        "brier",
        "calibration_error",
        "mse",
        "rmse",
        "mae",
        "demographic_parity_difference",
        "equal_opportunity_difference",
        "equalized_odds_difference",
    }
)

#: Rows of the points a KFP curve keeps (the UI draws a few hundred well).
CURVE_POINTS = 200


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
    pr_curve: dict[str, list[float]] = field(default_factory=dict)
    #: metric -> [low, high] of the bootstrap interval.
    intervals: dict[str, list[float]] = field(default_factory=dict)
    #: policy, value, positive_class and the argmax metrics it replaced (binary).
    threshold: dict[str, Any] = field(default_factory=dict)
    #: column -> slice label -> {"rows": n, "metrics": {...}}.
    slices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: column, groups and the differences across them.
    fairness: dict[str, Any] = field(default_factory=dict)
    #: [{"feature", "importance", "std"}], most important first.
    importance: list[dict[str, Any]] = field(default_factory=list)
    #: How it was computed: bootstrap resamples, confidence, ECE bins, seed.
    settings: dict[str, Any] = field(default_factory=dict)
    #: What the card needs of the model: target, family, lineage (filled by the step).
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "headline": self.headline,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "rows": self.rows,
            "confusion_matrix": self.confusion_matrix,
            "classes": self.classes,
            "curves": {"roc": self.roc_curve, "pr": self.pr_curve},
            "intervals": self.intervals,
            "threshold": self.threshold,
            "slices": self.slices,
            "fairness": self.fairness,
            "importance": self.importance,
            "settings": self.settings,
            "model": self.model,
        }


def thin_roc_curve(
    fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray, points: int = CURVE_POINTS
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


def thin_pr_curve(
    precision: np.ndarray, recall: np.ndarray, thr: np.ndarray, points: int = CURVE_POINTS
) -> dict[str, list[float]]:
    import numpy as np

    thr = np.append(thr, 1.0)  # the last (precision 1, recall 0) point has no threshold
    if len(precision) > points:
        idx = np.unique(np.linspace(0, len(precision) - 1, points).round().astype(int))
        precision, recall, thr = precision[idx], recall[idx], thr[idx]
    return {
        "precision": [float(x) for x in precision],
        "recall": [float(x) for x in recall],
        "threshold": [float(min(max(x, 0.0), 1.0)) for x in thr],
    }


# ---------------------------------------------------------------- thresholds, calibration


def _parse_policy(policy: str) -> tuple[str, float | None]:
    p = (policy or "argmax").strip().lower()
    if p in {"argmax", "f1", "cost"}:
        return p, None
    try:
        value = float(p)
    except ValueError:
        raise ConfigError(
            f"threshold_policy {policy!r} is not understood; use 'argmax', 'f1', 'cost' "
            "(with a cost matrix) or a number in [0, 1]"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold_policy {policy!r} must lie in [0, 1]")
    return "fixed", value


def _cost_array(cost_matrix: Any, k: int) -> np.ndarray:
    import numpy as np

    if cost_matrix is None:
        raise ConfigError(
            "threshold_policy 'cost' needs cost_matrix: a k x k list, rows the true class, "
            'columns the predicted one, e.g. [[0, 1], [20, 0]] for "a missed positive costs 20"'
        )
    c = np.asarray(cost_matrix, dtype=np.float64)
    if c.shape != (k, k) or not np.all(np.isfinite(c)):
        raise ConfigError(
            f"cost_matrix has shape {list(c.shape)}; it must be {k} x {k} finite numbers "
            "(rows: true class, columns: predicted class, in the order of the classes)"
        )
    return c


def choose_threshold(
    y_pos: np.ndarray, score: np.ndarray, *, policy: str = "f1", cost: np.ndarray | None = None
) -> float:
    """The threshold ``t`` (predict positive when ``score >= t``) that maximises F1, or
    minimises the total cost ``cost[true, predicted]`` (index 1 = positive), over every
    distinct score (and "never positive")."""
    import numpy as np

    y_pos = np.asarray(y_pos, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y_pos[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # end of each distinct score
    tp = np.cumsum(y_sorted)[last].astype(np.float64)
    fp = (last + 1) - tp
    p = float(y_pos.sum())
    fn, tn = p - tp, (len(s) - p) - fp
    thresholds = s_sorted[last]
    never = float(np.nextafter(s_sorted[0], np.inf)) if len(s) else 1.0
    if policy == "f1":
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        return float(thresholds[int(np.argmax(f1))]) if len(f1) and f1.max() > 0 else never
    if policy == "cost":
        if cost is None:
            raise ConfigError("threshold policy 'cost' needs a cost matrix")
        total = tp * cost[1, 1] + fp * cost[0, 1] + fn * cost[1, 0] + tn * cost[0, 0]
        never_cost = p * cost[1, 0] + (len(s) - p) * cost[0, 0]
        i = int(np.argmin(total))
        return float(thresholds[i]) if total[i] <= never_cost else never
    raise ConfigError(f"unknown threshold policy {policy!r}; use 'f1' or 'cost'")


def calibration_bins(prob: np.ndarray, bins: int) -> np.ndarray:
    """scikit-learn's calibration_curve(strategy="uniform") binning."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], prob)


def expected_calibration_error(target: np.ndarray, prob: np.ndarray, *, bins: int = 10) -> float:
    """ECE: the row-weighted mean of |observed rate - mean predicted probability| over
    ``bins`` equal-width bins of ``prob`` (bins as scikit-learn's ``calibration_curve``)."""
    import numpy as np

    prob = np.asarray(prob, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ids = calibration_bins(prob, bins)
    gap = np.bincount(ids, weights=target - prob, minlength=bins)
    return float(np.abs(gap).sum() / max(len(prob), 1))


# ---------------------------------------------------------------- slices and fairness


def slice_labels(
    df: pd.DataFrame, columns: Sequence[str], *, bins: int = 4, max_values: int = 20
) -> dict[str, np.ndarray]:
    """One label per row for each column: the value for categorical columns (and numeric
    ones with at most 10 distinct values; the ``max_values`` most frequent, the rest
    ``(other)``), a quantile bin ``[lo, hi)`` for other numeric columns, ``(missing)``.

    Raises:
        ConfigError: a column is not in the frame (the message lists those that are).
    """
    import numpy as np
    import pandas as pd

    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"slice/sensitive column(s) {missing} are not in the held-out split; "
            f"available columns: {sorted(map(str, df.columns))}"
        )
    out: dict[str, np.ndarray] = {}
    for col in columns:
        s = df[col]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if numeric and s.nunique(dropna=True) > 10:
            cut = pd.qcut(s.astype("float64"), q=bins, duplicates="drop")
            labels = np.asarray(
                [
                    "(missing)" if pd.isna(v) else f"[{v.left:.4g}, {v.right:.4g}]"
                    for v in cut.astype(object)
                ],
                dtype=object,
            )
        else:
            text = s.astype(object).where(s.notna(), "(missing)").astype(str)
            keep = set(text.value_counts().index[:max_values])
            labels = np.where(text.isin(keep), text, "(other)").astype(object)
        out[col] = labels
    return out


def fairness_metrics(
    y_pos: np.ndarray, pred_pos: np.ndarray, groups: np.ndarray, *, column: str = ""
) -> dict[str, Any]:
    """Demographic parity difference (max - min selection rate over groups), equal
    opportunity difference (max - min true-positive rate over groups with positives) and
    equalized odds difference (the larger of the TPR and FPR differences)."""
    import numpy as np

    y_pos = np.asarray(y_pos, dtype=bool)
    pred_pos = np.asarray(pred_pos, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    per: dict[str, dict[str, Any]] = {}
    for g in sorted({str(v) for v in groups}):
        m = groups.astype(str) == g
        pos, neg = y_pos[m], ~y_pos[m]
        per[g] = {
            "rows": int(m.sum()),
            "positives": int(pos.sum()),
            "selection_rate": float(pred_pos[m].mean()),
            "true_positive_rate": float(pred_pos[m][pos].mean()) if pos.any() else None,
            "false_positive_rate": float(pred_pos[m][neg].mean()) if neg.any() else None,
        }

    def spread(key: str) -> float | None:
        vals = [v[key] for v in per.values() if v[key] is not None]
        return float(max(vals) - min(vals)) if len(vals) >= 2 else None

    dpd, eod, fpr_d = (
        spread("selection_rate"),
        spread("true_positive_rate"),
        spread("false_positive_rate"),
    )
    eq_odds = None if eod is None and fpr_d is None else max(eod or 0.0, fpr_d or 0.0)
    return {
        "column": column,
        "groups": per,
        "metrics": {
            k: v
            for k, v in (
                ("demographic_parity_difference", dpd),
                ("equal_opportunity_difference", eod),
                ("equalized_odds_difference", eq_odds),
            )
            if v is not None
        },
    }


# ---------------------------------------------------------------- classification


def _class_scores(
    y: np.ndarray, p: np.ndarray, hard: np.ndarray, k: int, pos: int, ece_bins: int
) -> dict[str, float]:
    """Every classification metric of one set of predictions, through scikit-learn."""
    import numpy as np
    from sklearn import metrics as skm

    labels = list(range(k))
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
        out["precision"] = float(skm.precision_score(y, hard, pos_label=pos, zero_division=0))
        out["recall"] = float(skm.recall_score(y, hard, pos_label=pos, zero_division=0))
        out["f1"] = float(skm.f1_score(y, hard, pos_label=pos, zero_division=0))
        out["brier"] = float(skm.brier_score_loss(y == pos, p[:, pos]))
        out["calibration_error"] = expected_calibration_error(y == pos, p[:, pos], bins=ece_bins)
        if len(present) == 2:
            score = p[:, pos]
            out["roc_auc"] = float(skm.roc_auc_score(y == pos, score))
            out["pr_auc"] = float(skm.average_precision_score(y == pos, score))
    else:
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            out[name] = float(fn(y, hard, average="macro", labels=labels, zero_division=0))
        out["calibration_error"] = expected_calibration_error(
            p.argmax(axis=1) == y, p.max(axis=1), bins=ece_bins
        )
        if len(present) == k:
            out["roc_auc"] = float(
                skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels)
            )
            onehot = np.eye(k, dtype=np.int64)[y]
            out["pr_auc"] = float(skm.average_precision_score(onehot, p, average="macro"))
    return out


def evaluate_classification(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[Any],
    *,
    positive_class: Any = None,
    prior: np.ndarray | None = None,
    threshold_policy: str = "argmax",
    cost_matrix: Any = None,
    decision: Mapping[str, Any] | None = None,
    ece_bins: int = 10,
    slices: Mapping[str, np.ndarray] | None = None,
    sensitive: tuple[str, np.ndarray] | None = None,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> Evaluation:
    """Classification metrics of probabilities ``proba`` (n, k) against labels ``y_true``.

    Binary problems report precision/recall/F1 for ``positive_class``; multiclass ones
    macro averages. ``prior`` (the training class distribution) defines the constant
    baseline; it defaults to the uniform distribution.

    Args:
        threshold_policy: how hard labels are made. ``argmax`` (0.5 for binary); a number
            (binary: positive when its probability >= it); ``f1`` (binary: the threshold
            that maximises F1 on these rows; multiclass: argmax); ``cost`` (binary: the
            threshold with the least total cost; multiclass: the class of least expected
            cost), with ``cost_matrix[true][predicted]`` in the order of ``classes``.
            Choosing on the rows being evaluated is optimistic: pass ``decision`` instead.
        decision: a bundle's stored decision rule (:mod:`kfgpu.decision`), chosen on the
            validation rows; hard labels are exactly those serving returns, and
            ``threshold_policy``/``cost_matrix`` are not used.
        slices: column -> one slice label per row (see :func:`slice_labels`).
        sensitive: (column, one group label per row) for fairness metrics (binary only).
        bootstrap: resamples for percentile confidence intervals (0: none).
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
    if positive_class is not None and str(positive_class) not in index:
        raise ConfigError(
            f"positive_class {positive_class!r} is not one of the classes {list(classes)}"
        )
    y = np.asarray([index[str(v)] for v in y_true], dtype=np.int64)
    stored_pred = None
    if decision is not None:
        from kfgpu.decision import label_indices

        # On the probabilities as served, before the clipping below.
        stored_pred = label_indices(proba, decision, classes)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    pos = index[str(positive_class)] if (positive_class is not None and k == 2) else 1
    policy, fixed = _parse_policy(threshold_policy) if decision is None else ("stored", None)
    cost = _cost_array(cost_matrix, k) if policy == "cost" else None
    argmax_pred = proba.argmax(axis=1)
    threshold: dict[str, Any] = {"policy": policy}
    if stored_pred is not None and decision is not None:
        pred = stored_pred
        threshold = {
            "policy": decision.get("policy", "argmax"),
            "chosen_on": decision.get("chosen_on", "validation"),
            "rule": decision.get("rule", "argmax"),
        }
        if k == 2:
            t = decision.get("threshold") if decision.get("rule") == "threshold" else 0.5
            threshold.update(
                value=float(t if t is not None else 0.5),
                positive_class=classes[pos],
                validation=decision.get("validation", {}),
                validation_rows=decision.get("rows"),
            )
        if decision.get("note"):
            threshold["note"] = decision["note"]
        # For the argmax comparison below: a stored rule other than argmax.
        policy = "argmax" if threshold["rule"] == "argmax" else "stored"
    elif k == 2 and policy != "argmax":
        # Reorder so that index 1 is the positive class for choose_threshold's cost.
        neg = 1 - pos
        c2 = None if cost is None else cost[np.ix_([neg, pos], [neg, pos])]
        t = (
            fixed
            if fixed is not None
            else choose_threshold(y == pos, proba[:, pos], policy=policy, cost=c2)
        )
        pred = np.where(proba[:, pos] >= t, pos, neg)
        threshold.update({"value": float(t), "positive_class": classes[pos]})
    elif k > 2 and policy == "cost":
        assert cost is not None
        pred = (proba @ cost).argmin(axis=1)  # least expected cost per row
    else:
        if k > 2 and policy != "argmax":
            threshold["note"] = f"policy {policy!r} applies to binary tasks; multiclass uses argmax"
        pred = argmax_pred
        if k == 2:
            threshold.update({"value": 0.5, "positive_class": classes[pos]})
    prior_p = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, dtype=np.float64)
    prior_p = prior_p / prior_p.sum()
    constant_proba = np.tile(prior_p, (len(y), 1))
    constant_pred = np.full(len(y), int(prior_p.argmax()))

    model_scores = _class_scores(y, proba, pred, k, pos, ece_bins)
    baseline = _class_scores(y, constant_proba, constant_pred, k, pos, ece_bins)
    if policy != "argmax":
        threshold["argmax_metrics"] = {
            m: v
            for m, v in _class_scores(y, proba, argmax_pred, k, pos, ece_bins).items()
            if m in {"accuracy", "balanced_accuracy", "precision", "recall", "f1"}
        }
    cm = skm.confusion_matrix(y, pred, labels=list(range(k))).tolist()
    roc: dict[str, list[float]] = {}
    pr: dict[str, list[float]] = {}
    if k == 2 and len(np.unique(y)) == 2:
        fpr, tpr, thr = skm.roc_curve(y == pos, proba[:, pos])
        roc = thin_roc_curve(fpr, tpr, thr)
        prec, rec, pthr = skm.precision_recall_curve(y == pos, proba[:, pos])
        pr = thin_pr_curve(prec, rec, pthr)
    headline = "roc_auc" if "roc_auc" in model_scores else "accuracy"

    slice_out: dict[str, dict[str, dict[str, Any]]] = {}
    for col, labels in (slices or {}).items():
        labels = np.asarray(labels, dtype=object)
        slice_out[col] = {}
        for value in sorted({str(v) for v in labels}):
            m = labels.astype(str) == value
            slice_out[col][value] = {
                "rows": int(m.sum()),
                "metrics": _class_scores(y[m], proba[m], pred[m], k, pos, ece_bins),
            }
    fairness: dict[str, Any] = {}
    if sensitive is not None:
        col, groups = sensitive
        if k == 2:
            fairness = fairness_metrics(y == pos, pred == pos, groups, column=col)
        else:
            fairness = {"column": col, "note": "fairness metrics need a binary task"}
    intervals: dict[str, list[float]] = {}
    if bootstrap > 0:
        intervals = _bootstrap_classification(
            y, proba, pred, k, pos, ece_bins, n=bootstrap, confidence=confidence, seed=seed
        )
    return Evaluation(
        task="classification",
        headline=headline,
        metrics=model_scores,
        baseline=baseline,
        rows=len(y),
        confusion_matrix=cm,
        classes=list(classes),
        roc_curve=roc,
        pr_curve=pr,
        intervals=intervals,
        threshold=threshold,
        slices=slice_out,
        fairness=fairness,
        settings={
            "bootstrap": bootstrap,
            "confidence": confidence,
            "seed": seed,
            "ece_bins": ece_bins,
            "threshold_policy": threshold.get("policy", threshold_policy),
        },
    )


# ---------------------------------------------------------------- regression


def _reg_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    mse = float(skm.mean_squared_error(y, p))
    out = {"mse": mse, "rmse": mse**0.5, "mae": float(skm.mean_absolute_error(y, p))}
    if len(y) >= 2:
        out["r2"] = float(skm.r2_score(y, p))
    return out


def evaluate_regression(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    train_mean: float,
    slices: Mapping[str, np.ndarray] | None = None,
    sensitive: tuple[str, np.ndarray] | None = None,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> Evaluation:
    """MSE, RMSE, MAE and R² of the model and of always predicting the training mean."""
    import numpy as np

    y = np.asarray(y_true, dtype=np.float64)
    if len(y) == 0:
        raise DataError("the held-out split is empty; raise test_fraction or add rows")
    p = np.asarray(y_pred, dtype=np.float64)
    slice_out: dict[str, dict[str, dict[str, Any]]] = {}
    for col, labels in (slices or {}).items():
        labels = np.asarray(labels, dtype=object).astype(str)
        slice_out[col] = {
            v: {
                "rows": int((labels == v).sum()),
                "metrics": _reg_scores(y[labels == v], p[labels == v]),
            }
            for v in sorted(set(labels))
        }
    fairness: dict[str, Any] = {}
    if sensitive is not None:
        fairness = {"column": sensitive[0], "note": "fairness metrics need a binary task"}
    return Evaluation(
        task="regression",
        headline="r2",
        metrics=_reg_scores(y, p),
        baseline=_reg_scores(y, np.full_like(y, train_mean)),
        rows=len(y),
        intervals=_bootstrap_regression(y, p, n=bootstrap, confidence=confidence, seed=seed)
        if bootstrap > 0
        else {},
        slices=slice_out,
        fairness=fairness,
        settings={"bootstrap": bootstrap, "confidence": confidence, "seed": seed},
    )


# ---------------------------------------------------------------- bootstrap


def _resample_weights(n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """``b`` bootstrap resamples of ``n`` rows as a (b, n) matrix of row counts."""
    import numpy as np

    idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


BOOTSTRAP_CHUNK_CELLS = 2_000_000
"""Resample x row cells of one bootstrap chunk. The (resamples, rows) weight matrix and each
product of it are then 16 MB (float64); evaluate_model's peak stays far under 1 GB at any
sample size (20M cells held about 1.4 GB at 225k rows, issue 19)."""


def _chunks(n: int, total: int) -> list[int]:
    per = max(1, BOOTSTRAP_CHUNK_CELLS // max(n, 1))
    return [min(per, total - s) for s in range(0, total, per)]


def _interval(values: np.ndarray, confidence: float) -> list[float] | None:
    import numpy as np

    v = values[np.isfinite(values)]
    if len(v) == 0:
        return None
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return [float(lo), float(hi)]


def _rank_order(y_pos: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows by descending score, the start of each run of tied scores, and the targets in
    that order: what :func:`_weighted_rank_metrics` needs, sorted once for every chunk."""
    import numpy as np

    order = np.argsort(-score, kind="stable")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    return order, starts, y_pos[order].astype(np.float64)


def _weighted_rank_metrics(
    w: np.ndarray,
    y_pos: np.ndarray,
    score: np.ndarray,
    ranked: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of every resample (rows of ``w``) at once.

    ``ranked``: :func:`_rank_order` of ``y_pos`` and ``score``, when already computed.
    """
    import numpy as np

    order, starts, yo = ranked if ranked is not None else _rank_order(y_pos, score)
    wo = w[:, order]
    pos_u = np.add.reduceat(wo * yo, starts, axis=1)
    neg_u = np.add.reduceat(wo * (1.0 - yo), starts, axis=1)
    p_tot, n_tot = pos_u.sum(axis=1), neg_u.sum(axis=1)
    cum_neg, cum_pos = np.cumsum(neg_u, axis=1), np.cumsum(pos_u, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos_u * (n_tot[:, None] - cum_neg + 0.5 * neg_u)).sum(axis=1) / (p_tot * n_tot)
        seen = cum_pos + cum_neg
        precision = np.divide(cum_pos, seen, out=np.zeros_like(seen), where=seen > 0)
        ap = (pos_u * precision).sum(axis=1) / p_tot
    bad = (p_tot == 0) | (n_tot == 0)
    auc[bad] = np.nan
    ap[bad] = np.nan
    return auc, ap


def _bootstrap_classification(
    y: np.ndarray,
    proba: np.ndarray,
    pred: np.ndarray,
    k: int,
    pos: int,
    ece_bins: int,
    *,
    n: int,
    confidence: float,
    seed: int,
) -> dict[str, list[float]]:
    """Percentile intervals of every metric, the threshold held fixed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = len(y)
    onehot_y = np.eye(k)[y]
    onehot_p = np.eye(k)[pred]
    tp_mat = onehot_y * onehot_p
    nll = -np.log(proba[np.arange(rows), y])
    if k == 2:
        cal_t, cal_p = (y == pos).astype(np.float64), proba[:, pos]
    else:
        cal_t, cal_p = (proba.argmax(axis=1) == y).astype(np.float64), proba.max(axis=1)
    bins = np.eye(ece_bins)[calibration_bins(cal_p, ece_bins)]
    gap = bins * (cal_t - cal_p)[:, None]
    classes = [pos] if k == 2 else list(range(k))
    ranked = {c: _rank_order(y == c, proba[:, c]) for c in classes}
    out: dict[str, list[np.ndarray]] = {}

    def add(name: str, value: np.ndarray) -> None:
        out.setdefault(name, []).append(value)

    for b in _chunks(rows, n):
        w = _resample_weights(rows, b, rng)
        tp, n_true, n_pred = w @ tp_mat, w @ onehot_y, w @ onehot_p
        with np.errstate(divide="ignore", invalid="ignore"):
            prec_c = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
            rec_c = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
            f1_c = np.divide(
                2 * tp, n_pred + n_true, out=np.zeros_like(tp), where=(n_pred + n_true) > 0
            )
            rec_present = np.where(n_true > 0, rec_c, np.nan)
            add("balanced_accuracy", np.nanmean(rec_present, axis=1))
        add("accuracy", tp.sum(axis=1) / rows)
        add("log_loss", (w @ nll) / rows)
        add("calibration_error", np.abs(w @ gap).sum(axis=1) / rows)
        if k == 2:
            add("precision", prec_c[:, pos])
            add("recall", rec_c[:, pos])
            add("f1", f1_c[:, pos])
            add("brier", (w @ (proba[:, pos] - (y == pos)) ** 2) / rows)
            auc, ap = _weighted_rank_metrics(w, y == pos, proba[:, pos], ranked[pos])
        else:
            add("precision", prec_c.mean(axis=1))
            add("recall", rec_c.mean(axis=1))
            add("f1", f1_c.mean(axis=1))
            per = [_weighted_rank_metrics(w, y == c, proba[:, c], ranked[c]) for c in range(k)]
            auc = np.mean([a for a, _ in per], axis=0)  # NaN when a class is absent
            ap = np.mean([p for _, p in per], axis=0)
        add("roc_auc", auc)
        add("pr_auc", ap)
    result = {}
    for name, parts in out.items():
        iv = _interval(np.concatenate(parts), confidence)
        if iv is not None:
            result[name] = iv
    return result


def _bootstrap_regression(
    y: np.ndarray, p: np.ndarray, *, n: int, confidence: float, seed: int
) -> dict[str, list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = len(y)
    err2, abserr = (y - p) ** 2, np.abs(y - p)
    mse, mae, r2 = [], [], []
    for b in _chunks(rows, n):
        w = _resample_weights(rows, b, rng)
        sse = w @ err2
        sst = w @ (y**2) - (w @ y) ** 2 / rows
        mse.append(sse / rows)
        mae.append((w @ abserr) / rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2.append(np.where(sst > 0, 1.0 - sse / sst, np.nan))
    m = np.concatenate(mse)
    out = {
        "mse": _interval(m, confidence),
        "rmse": _interval(np.sqrt(m), confidence),
        "mae": _interval(np.concatenate(mae), confidence),
        "r2": _interval(np.concatenate(r2), confidence),
    }
    return {k: v for k, v in out.items() if v is not None}
