"""Streamed evaluation: the same numbers as the in-memory one on a table that fits, exact
counts and a bounded AUC sketch above the exact-row budget (kfgpu.evaluation.streaming)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from kfgpu.errors import ConfigError, DataError
from kfgpu.evaluation.metrics import evaluate_classification, evaluate_regression, slice_labels
from kfgpu.evaluation.streaming import (
    ClassificationStream,
    RegressionStream,
    ScoreSketch,
    StreamSettings,
)


def _case(n: int, k: int, seed: int, rate: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n) if rate is None else (rng.random(n) < rate).astype(int)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def assert_same(got: Any, want: Any, path: str = "", rel: float = 1e-9) -> None:
    """Recursive equality, floats within ``rel``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (path, list(got), list(want))
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}", rel)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]", rel)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=rel, abs=1e-12, nan_ok=True), path
    else:
        assert got == want, path


def _stream(
    y: np.ndarray, proba: np.ndarray, batch: int, frame: pd.DataFrame, **kw: Any
) -> ClassificationStream:
    s = ClassificationStream(**kw)
    for sl in _batches(len(y), batch):
        s.update(y[sl], proba[sl], frame.iloc[sl])
    return s


@pytest.mark.parametrize("k", [2, 3])
def test_streamed_equals_in_memory_when_the_split_fits(k: int) -> None:
    y, proba = _case(3000, k, seed=k, rate=0.1 if k == 2 else None)
    classes = ["no", "yes"] if k == 2 else ["cat", "dog", "eel"]
    labels = np.asarray(classes, dtype=object)[y]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"region": rng.choice(["n", "s", "e"], 3000), "amount": rng.random(3000)})
    # A stored threshold that is not argmax: argmax_metrics are recomputed too.
    decision = (
        {"policy": "f1", "rule": "threshold", "threshold": 0.3, "positive_class": "yes"}
        if k == 2
        else {"policy": "argmax", "rule": "argmax"}
    )
    common: dict[str, Any] = {
        "positive_class": "yes" if k == 2 else None,
        "prior": np.asarray([0.8, 0.2] if k == 2 else [0.5, 0.3, 0.2]),
        "decision": decision,
    }
    sl = slice_labels(frame, ["region", "amount"])
    kwargs = {"slices": sl, "sensitive": ("region", sl["region"]), "bootstrap": 40}
    want = evaluate_classification(labels, proba, classes, seed=5, **common, **kwargs)
    s = _stream(labels, proba, 256, frame, classes=classes, seed=5, **common)
    assert s.sample.complete
    # The sample is the whole split in row order: the step labels slices on it.
    pd.testing.assert_frame_equal(s.sample_frame(), frame)
    got = s.finish(**kwargs).to_dict()
    assert got["settings"].pop("streaming") == {
        "exact_rows": 250_000,
        "sampled_rows": 3000,
        "rank_metrics": "exact",
    }
    assert_same(got, want.to_dict())


def test_streamed_regression_equals_in_memory() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(50, 20, 5000)
    pred = y + rng.normal(0, 5, 5000)
    frame = pd.DataFrame({"g": rng.choice(["a", "b"], 5000)})
    sl = slice_labels(frame, ["g"])
    want = evaluate_regression(y, pred, train_mean=48.0, slices=sl, bootstrap=30, seed=1)
    s = RegressionStream(train_mean=48.0, seed=1)
    for b in _batches(5000, 333):
        s.update(y[b], pred[b], frame.iloc[b])
    got = s.finish(slices=sl, bootstrap=30).to_dict()
    got["settings"].pop("streaming")
    assert_same(got, want.to_dict())
    # Above the sample size the sums stay exact; slices and intervals use the sample.
    s = RegressionStream(train_mean=48.0, settings=StreamSettings(exact_rows=700))
    for b in _batches(5000, 333):
        s.update(y[b], pred[b], frame.iloc[b])
    got_small = s.finish()
    assert got_small.rows == 5000 and len(s.sample_frame()) == 700
    assert_same(got_small.metrics, want.metrics)
    assert_same(got_small.baseline, want.baseline)


def _real_scores() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Out-of-fold probabilities of a logistic regression on scikit-learn's bundled data."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for name, loader in (("breast_cancer", load_breast_cancer), ("digits", load_digits)):
        x, y = loader(return_X_y=True)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
        yield name, y, cross_val_predict(model, x, y, cv=2, method="predict_proba")


def test_sketch_auc_matches_sklearn_within_its_bound_on_real_data() -> None:
    for name, y, proba in _real_scores():
        k = proba.shape[1]
        classes = list(range(k))
        frame = pd.DataFrame(index=range(len(y)))
        # exact_rows below the split's size: AUC and curves come from the sketch.
        s = _stream(y, proba, 200, frame, classes=classes, settings=StreamSettings(exact_rows=100))
        got = s.finish()
        streaming = got.settings["streaming"]
        assert streaming["rank_metrics"] == "sketch", name
        if k == 2:
            exact = skm.roc_auc_score(y == 1, proba[:, 1])
            ap = skm.average_precision_score(y == 1, proba[:, 1])
        else:
            exact = skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            ap = skm.average_precision_score(np.eye(k)[y], proba, average="macro")
        diff = abs(got.metrics["roc_auc"] - exact)
        assert diff <= streaming["roc_auc_error_bound"] + 1e-12, (name, diff)
        assert diff < 1e-3 and streaming["roc_auc_error_bound"] < 5e-3, (name, diff)
        assert got.metrics["pr_auc"] == pytest.approx(ap, abs=5e-3), name
        # The counts are exact whatever the sample size.
        want = evaluate_classification(y, proba, classes)
        for m in ("accuracy", "balanced_accuracy", "log_loss", "f1", "calibration_error"):
            assert got.metrics[m] == pytest.approx(want.metrics[m], rel=1e-9), (name, m)
        assert got.confusion_matrix == want.confusion_matrix and got.rows == len(y)
        assert_same(got.baseline, want.baseline)
        if k == 2:
            roc = got.roc_curve
            assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
            assert np.all(np.diff(roc["fpr"]) >= 0) and len(roc["fpr"]) <= 200


def test_sketch_bound_is_a_bound_when_scores_tie_within_bins() -> None:
    # Scores 1e-6 apart: one bin holds them all; the sketch says 1/2 and bounds it by 1/2.
    y = np.asarray([0, 1] * 50)
    score = 0.5 + 1e-6 * np.arange(100)
    sk = ScoreSketch(1, 1024)
    sk.update(0, y == 1, score)
    auc, bound = sk.auc(0)
    exact = skm.roc_auc_score(y, score)
    assert auc == 0.5 and bound == 0.5 and abs(auc - exact) <= bound
    assert exact != 0.5  # the test can fail: the order inside the bin is lost


def test_sample_is_seeded_uniform_and_in_row_order() -> None:
    n, size = 20_000, 1000
    y = np.zeros(n, dtype=int)
    y[::3] = 1
    proba = np.c_[1 - y * 0.7, y * 0.7 + 0.0]
    frame = pd.DataFrame({"row": np.arange(n)})
    settings = StreamSettings(exact_rows=size)
    a = _stream(y, proba, 700, frame, classes=[0, 1], settings=settings, seed=3)
    b = _stream(y, proba, 1900, frame, classes=[0, 1], settings=settings, seed=3)
    rows = a.sample_frame()["row"].to_numpy()
    assert len(rows) == size and np.all(np.diff(rows) > 0)
    # Uniform: each tenth of the split holds about a tenth of the sample.
    per_tenth = np.bincount(rows * 10 // n, minlength=10)
    assert per_tenth.min() > 60 and per_tenth.max() < 140, per_tenth
    # Keys follow rows, not batch boundaries: the same sample whatever the batch size.
    assert np.array_equal(rows, b.sample_frame()["row"].to_numpy())


def test_bad_settings_and_labels_are_named() -> None:
    with pytest.raises(ConfigError, match="exact_rows=0"):
        StreamSettings(exact_rows=0)
    s = ClassificationStream(["a", "b"])
    with pytest.raises(DataError, match=r"\['z'\] were never seen"):
        s.update(np.asarray(["a", "z"]), np.full((2, 2), 0.5), pd.DataFrame(index=[0, 1]))
    with pytest.raises(DataError, match="empty"):
        ClassificationStream(["a", "b"]).finish()


# ---------------------------------------------------------------- the evaluate_model step


@pytest.fixture(scope="module")
def split(fraud_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kfgpu.data import fraud

    path = tmp_path_factory.mktemp("split") / "test"
    path.mkdir()
    df = fraud(3000, seed=9)
    # Three shards of several row groups: batches never span a group.
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
        table = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        pq.write_table(table, path / f"part-{i}.parquet", row_group_size=400)
    return path


def _evaluate(bundle: Path, test: Path, out: Path, **kw: Any) -> dict[str, Any]:
    from kfgpu.evaluation.step import evaluate_model_step

    evaluate_model_step(
        bundle_path=str(bundle),
        test_path=str(test),
        report_path=str(out / "report.html"),
        evaluation_path=str(out / "evaluation.json"),
        track=False,
        **kw,
    )
    return dict(json.loads((out / "evaluation.json").read_text()))


def test_step_streams_the_split_and_matches_the_in_memory_evaluation(
    fraud_bundle: Path, split: Path, tmp_path: Path
) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.evaluation.step import model_summary

    kw: dict[str, Any] = {
        "slice_columns": "channel",
        "sensitive_column": "country",
        "bootstrap": 10,
    }
    got = _evaluate(
        fraud_bundle, split, tmp_path, stream_settings=StreamSettings(batch_rows=500), **kw
    )
    # The in-memory path, as evaluate_model computed it before it streamed.
    bundle = load_bundle(fraud_bundle)
    test = pd.read_parquet(split)
    raw = bundle.predict_raw(test.drop(columns=["is_fraud"]))
    desc = bundle.description
    dist = desc.train_distribution
    cols = got["settings"]["slice_columns"]
    assert cols == ["channel"]
    sl = slice_labels(test, [*cols, "country"])
    want = evaluate_classification(
        test["is_fraud"].to_numpy(),
        raw,
        bundle.classes,
        positive_class=bundle.decision.get("positive_class", desc.positive_class),
        prior=np.asarray([dist[str(c)] for c in bundle.classes], dtype=np.float64),
        decision=bundle.decision,
        slices={c: sl[c] for c in cols},
        sensitive=("country", sl["country"]),
        bootstrap=10,
    ).to_dict()
    want["model"] = model_summary(bundle.description, list(bundle.transform.input_columns))
    want["settings"].update(slice_columns=cols, importance_repeats=0)
    assert got["settings"].pop("streaming")["rank_metrics"] == "exact"
    assert_same(got, json.loads(json.dumps(want, sort_keys=True, default=str)))

    # Over the exact-row budget: counts unchanged, AUC within the sketch's bound.
    out = tmp_path / "sketch"
    out.mkdir()
    small = _evaluate(
        fraud_bundle, split, out, stream_settings=StreamSettings(exact_rows=500, batch_rows=300)
    )
    st = small["settings"]["streaming"]
    assert st["rank_metrics"] == "sketch" and st["sampled_rows"] == 500
    assert small["rows"] == 3000 and small["confusion_matrix"] == want["confusion_matrix"]
    for m in ("accuracy", "precision", "recall", "f1", "log_loss", "brier"):
        assert small["metrics"][m] == pytest.approx(want["metrics"][m], rel=1e-9), m
    diff = abs(small["metrics"]["roc_auc"] - want["metrics"]["roc_auc"])
    assert diff <= st["roc_auc_error_bound"], (diff, st)


def test_step_names_a_missing_slice_column(fraud_bundle: Path, split: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['nope'\] are not in the held-out split"):
        _evaluate(fraud_bundle, split, tmp_path, slice_columns="nope")


def test_step_regression_streams_to_the_in_memory_numbers(tmp_path: Path) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    rng = np.random.default_rng(4)
    df = pd.DataFrame({"x": rng.normal(size=1500), "c": rng.choice(["a", "b", "c"], 1500)})
    df["y"] = 3 * df["x"] + (df["c"] == "b") + rng.normal(0, 0.3, 1500)
    train, val, test = df.iloc[:900], df.iloc[900:1100], df.iloc[1100:]
    train_tabular(
        train,
        val,
        transform=fit_transform(train, infer_feature_spec(train, "y")),
        target="y",
        task="regression",
        config=TrainConfig(accelerator="cpu", max_epochs=1, hidden_sizes=(8,)),
        bundle_path=tmp_path / "bundle",
    )
    pq.write_table(
        pa.Table.from_pandas(test, preserve_index=False), tmp_path / "t.pq", row_group_size=150
    )
    got = _evaluate(
        tmp_path / "bundle",
        tmp_path / "t.pq",
        tmp_path,
        slice_columns="c",
        bootstrap=10,
        stream_settings=StreamSettings(batch_rows=64),
    )
    bundle = load_bundle(tmp_path / "bundle")
    want = evaluate_regression(
        test["y"].to_numpy(),
        bundle.predict_raw(test),
        train_mean=bundle.description.target_mean,
        slices=slice_labels(test, ["c"]),
        bootstrap=10,
    ).to_dict()
    assert got["rows"] == 400
    for key in ("metrics", "baseline", "intervals", "slices"):
        assert_same(got[key], json.loads(json.dumps(want[key], sort_keys=True)), key)
