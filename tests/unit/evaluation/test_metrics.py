"""Tests for kfgpu.evaluation: metrics against scikit-learn, the baseline, the HTML report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from kfgpu.description import BundleDescription
from kfgpu.errors import DataError
from kfgpu.evaluation.metrics import evaluate_classification, evaluate_regression
from kfgpu.evaluation.report import render_html


def _random_case(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0  # informative, not perfect
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("positive", [1, 0])
def test_binary_metrics_match_sklearn(positive: int) -> None:
    y, proba = _random_case(400, 2, seed=0)
    ev = evaluate_classification(y, proba, [0, 1], positive_class=positive)
    pred = proba.argmax(axis=1)
    m = ev.metrics
    assert ev.task == "classification" and ev.headline == "roc_auc" and ev.rows == 400
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-6)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label=positive))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label=positive))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=positive))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == positive, proba[:, positive]))
    assert m["pr_auc"] == pytest.approx(
        skm.average_precision_score(y == positive, proba[:, positive])
    )
    assert ev.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert ev.classes == [0, 1]
    curve = ev.roc_curve
    assert len(curve["fpr"]) == len(curve["tpr"]) == len(curve["threshold"]) <= 200
    assert curve["fpr"][0] == 0.0 and curve["fpr"][-1] == 1.0 and curve["tpr"][-1] == 1.0
    assert all(0.0 <= t <= 1.0 for t in curve["threshold"])


def test_multiclass_metrics_match_sklearn() -> None:
    y, proba = _random_case(500, 3, seed=1)
    classes = ["cat", "dog", "eel"]
    labels = np.asarray(classes)[y]
    ev = evaluate_classification(labels, proba, classes)
    pred = proba.argmax(axis=1)
    m = ev.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-6)
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert m[name] == pytest.approx(fn(y, pred, average="macro")), name
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    onehot = np.eye(3, dtype=int)[y]
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(onehot, proba, average="macro"))
    assert ev.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert ev.roc_curve == {}


def test_constant_baseline() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.2).astype(int)
    _, proba = _random_case(300, 2, seed=3)
    prior = np.array([0.8, 0.2])
    ev = evaluate_classification(y, proba, [0, 1], positive_class=1, prior=prior)
    b = ev.baseline
    majority = max(np.mean(y == 0), np.mean(y == 1))
    assert b["roc_auc"] == pytest.approx(0.5)
    assert b["accuracy"] == pytest.approx(majority)
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert b["recall"] == 0.0  # never predicts the positive class
    assert b["log_loss"] == pytest.approx(skm.log_loss(y, np.tile(prior, (len(y), 1))))
    # Without a prior the baseline is uniform; an unnormalised prior is normalised.
    uniform = evaluate_classification(y, proba, [0, 1]).baseline
    assert uniform["log_loss"] == pytest.approx(np.log(2))
    scaled = evaluate_classification(y, proba, [0, 1], prior=prior * 40).baseline
    assert scaled["log_loss"] == pytest.approx(b["log_loss"])


def test_probabilities_are_clipped_and_renormalised() -> None:
    y = np.array([0, 1, 1, 0])
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])  # a hard miss, a 2x row
    ev = evaluate_classification(y, proba, [0, 1])
    assert np.isfinite(ev.metrics["log_loss"])
    assert ev.metrics["log_loss"] > 1.0


def test_unknown_labels_and_empty_input() -> None:
    _, proba = _random_case(4, 2, seed=4)
    with pytest.raises(DataError, match="'2'"):
        evaluate_classification(np.array([0, 1, 2, 1]), proba, [0, 1])
    with pytest.raises(DataError, match="empty"):
        evaluate_classification(np.array([]), np.zeros((0, 2)), [0, 1])
    with pytest.raises(DataError, match="empty"):
        evaluate_regression(np.array([]), np.array([]), train_mean=0.0)


def test_single_class_held_out_has_no_roc_auc() -> None:
    _, proba = _random_case(20, 2, seed=5)
    ev = evaluate_classification(np.zeros(20, dtype=int), proba, [0, 1])
    assert "roc_auc" not in ev.metrics
    assert ev.headline == "accuracy"
    # With one class present, balanced accuracy is that class's recall, i.e. the accuracy.
    assert ev.metrics["balanced_accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == 0))
    assert ev.metrics["balanced_accuracy"] == pytest.approx(ev.metrics["accuracy"])


def test_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(10.0, 2.0, size=200)
    pred = y + rng.normal(0.0, 1.0, size=200)
    ev = evaluate_regression(y, pred, train_mean=9.5)
    m, b = ev.metrics, ev.baseline
    assert ev.task == "regression" and ev.headline == "r2" and ev.rows == 200
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    const = np.full_like(y, 9.5)
    assert b["mse"] == pytest.approx(skm.mean_squared_error(y, const))
    assert b["r2"] == pytest.approx(skm.r2_score(y, const))
    assert evaluate_regression(y, pred, train_mean=float(y.mean())).baseline["r2"] == (
        pytest.approx(0.0, abs=1e-12)
    )


def test_render_html_classification() -> None:
    y, proba = _random_case(100, 2, seed=7)
    ev = evaluate_classification(y, proba, [0, 1], prior=np.array([0.5, 0.5]))
    description = BundleDescription(
        task="classification",
        target="<script>alert('x')</script> & co",
        model_family="tabular_mlp",
        model_config={},
        kfgpu_version="9.9",
        lineage={"mlflow_run_id": "run<1>"},
        labels={"classes": [0, 1]},
    )
    page = render_html(ev, description)
    assert page.startswith("<!doctype html>")
    assert "Headline metric <b>roc_auc</b>" in page
    assert f"<b>{ev.metrics['roc_auc']:.4f}</b>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "run&lt;1&gt;" in page
    assert "Confusion matrix" in page
    for row in ev.confusion_matrix:
        for v in row:
            assert f"<td>{v}</td>" in page


def test_render_html_regression() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=50)
    ev = evaluate_regression(y, y * 0.9, train_mean=0.0)
    desc = BundleDescription(
        task="regression", target="price", model_family="tabular_mlp", model_config={}
    )
    page = render_html(ev, desc)
    assert "Headline metric <b>r2</b>" in page
    assert "Evaluation: price (regression)" in page
    assert "Confusion matrix" not in page
    # Lower-is-better metrics are marked better when below the baseline.
    assert "<tr><td>mse</td><td class='better'>" in page
