"""The decision threshold: chosen on validation rows, stored, and applied by every consumer.

Trains on imbalanced data (kfgpu's fraud set, 2% positives) with ``threshold_policy=f1``.
The stored threshold must be the F1-best one on the VALIDATION rows (recomputed here from
the bundle's own predictions), must not move when only the test rows change (it used to
be picked on the test rows by evaluate_model), and the labels that the KServe server
(V1 and V2), ``kfgpu predict``, and the MLflow pyfunc return on the test rows must give
exactly the confusion matrix that the evaluation, and so the model card, reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.features.split import split_frame
from kfgpu.features.transform import fit_transform, infer_feature_spec
from kfgpu.serving.process import Server, start_server, stop_server
from tests.conftest import run_kfgpu

pytestmark = pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    root = tmp_path_factory.mktemp("threshold")
    train, val, test = split_frame(fraud(12_000, seed=3), LABEL_COLUMN, task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, LABEL_COLUMN))
    train_tabular(
        train,
        val,
        transform=fitted,
        target=LABEL_COLUMN,
        task="classification",
        config=TrainConfig(
            accelerator="cpu", max_epochs=4, hidden_sizes=(32,), threshold_policy="f1"
        ),
        bundle_path=root / "bundle",
    )
    test_path = root / "test.parquet"
    test.to_parquet(test_path)
    return {
        "root": root,
        "bundle": root / "bundle",
        "val": val,
        "test": test,
        "test_path": test_path,
    }


def _evaluate(bundle: Path, test_path: Path, out: Path) -> dict[str, Any]:
    from kfgpu.evaluation.step import evaluate_model_step

    out.mkdir(parents=True, exist_ok=True)
    evaluate_model_step(
        bundle_path=str(bundle),
        test_path=str(test_path),
        report_path=str(out / "report.html"),
        evaluation_path=str(out / "evaluation.json"),
        card_path=str(out / "card.md"),
        slice_columns="",
        track=False,
    )
    return dict(json.loads((out / "evaluation.json").read_text()))


def _cm(y_true: Any, y_pred: Any) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(
        np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str), labels=["0", "1"]
    ).tolist()


@pytest.fixture(scope="module")
def evaluation(trained: dict[str, Any]) -> dict[str, Any]:
    return _evaluate(trained["bundle"], trained["test_path"], trained["root"] / "eval")


def test_threshold_is_chosen_on_validation_rows_only(
    trained: dict[str, Any], evaluation: dict[str, Any]
) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.decision import choose_decision
    from kfgpu.evaluation.metrics import evaluate_classification

    bundle = load_bundle(trained["bundle"])
    stored = bundle.decision
    assert stored["policy"] == "f1" and stored["chosen_on"] == "validation"
    assert stored["rows"] == len(trained["val"])
    # The F1-best threshold of the bundle's own predictions on the validation rows.
    val = trained["val"]
    again = choose_decision(
        "f1",
        val[LABEL_COLUMN].to_numpy(),
        bundle.predict_raw(val.drop(columns=[LABEL_COLUMN])),
        bundle.classes,
        positive_class=1,
    )
    assert again["threshold"] == pytest.approx(stored["threshold"], abs=1e-6)
    assert evaluation["threshold"]["value"] == stored["threshold"]
    assert evaluation["threshold"]["chosen_on"] == "validation"

    # Change only the test rows: other rows, and their labels shuffled. The threshold
    # stays; choosing on the test rows (what evaluate_model used to do) would move it.
    test = trained["test"]
    other = test.sample(frac=0.6, random_state=1).reset_index(drop=True)
    other[LABEL_COLUMN] = np.random.default_rng(0).permutation(other[LABEL_COLUMN].to_numpy())
    other_path = trained["root"] / "other.parquet"
    other.to_parquet(other_path)
    changed = _evaluate(trained["bundle"], other_path, trained["root"] / "eval-other")
    assert changed["threshold"]["value"] == stored["threshold"]
    assert changed["confusion_matrix"] != evaluation["confusion_matrix"]
    old_way = [
        evaluate_classification(
            frame[LABEL_COLUMN].to_numpy(),
            bundle.predict_raw(frame.drop(columns=[LABEL_COLUMN])),
            bundle.classes,
            positive_class=1,
            threshold_policy="f1",
        ).threshold["value"]
        for frame in (test, other)
    ]
    assert old_way[0] != old_way[1]
    # The card states the stored threshold and where it came from.
    card = (trained["root"] / "eval" / "card.md").read_text()
    assert f"Decision threshold {stored['threshold']:.4f}" in card
    assert "validation rows" in card


def test_the_threshold_is_not_argmax_on_this_imbalanced_set(
    trained: dict[str, Any], evaluation: dict[str, Any]
) -> None:
    # Otherwise the consumer checks below could pass with plain argmax.
    from kfgpu.bundle import load_bundle

    test = trained["test"]
    proba = load_bundle(trained["bundle"]).predict_raw(test.drop(columns=[LABEL_COLUMN]))
    argmax_cm = _cm(test[LABEL_COLUMN], proba.argmax(axis=1))
    assert argmax_cm != evaluation["confusion_matrix"]


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[Server]:
    srv = start_server(trained["bundle"], trained["root"] / "server.log", model_name="fraud")
    try:
        yield srv
    finally:
        stop_server(srv)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    raw = frame.drop(columns=[LABEL_COLUMN])
    return [
        {k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in raw.to_dict(orient="records")
    ]


def test_v1_and_v2_labels_give_the_cards_confusion_matrix(
    trained: dict[str, Any], evaluation: dict[str, Any], server: Server
) -> None:
    test = trained["test"]
    records = _records(test)
    r = httpx.post(f"{server.url}/v1/models/fraud:predict", json={"instances": records}, timeout=60)
    assert r.status_code == 200, r.text
    v1 = [p["label"] for p in r.json()["predictions"]]
    assert _cm(test[LABEL_COLUMN], v1) == evaluation["confusion_matrix"]

    meta = httpx.get(f"{server.url}/v2/models/fraud", timeout=10).json()
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    inputs = [
        {"name": k, "shape": [len(records)], "datatype": types[k], "data": [r[k] for r in records]}
        for k in records[0]
    ]
    r = httpx.post(f"{server.url}/v2/models/fraud/infer", json={"inputs": inputs}, timeout=60)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert _cm(test[LABEL_COLUMN], out["label"]["data"]) == evaluation["confusion_matrix"]


def test_kfgpu_predict_gives_the_cards_confusion_matrix(
    trained: dict[str, Any], evaluation: dict[str, Any]
) -> None:
    out = trained["root"] / "predictions.parquet"
    done = run_kfgpu("predict", str(trained["bundle"]), str(trained["test_path"]), str(out))
    assert done.returncode == 0, done.stderr
    pred = pd.read_parquet(out)["prediction"]
    assert _cm(trained["test"][LABEL_COLUMN], pred) == evaluation["confusion_matrix"]


def test_mlflow_pyfunc_gives_the_cards_confusion_matrix(
    trained: dict[str, Any], evaluation: dict[str, Any]
) -> None:
    import mlflow.pyfunc

    import kfgpu.registry.pyfunc as wrapper

    path = trained["root"] / "pyfunc"
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=str(Path(wrapper.__file__).with_name("_pyfunc_entry.py")),
        artifacts={"bundle": str(trained["bundle"])},
    )
    model = mlflow.pyfunc.load_model(str(path))
    test = trained["test"]
    pred = model.predict(test.drop(columns=[LABEL_COLUMN]))["prediction"]
    assert _cm(test[LABEL_COLUMN], pred) == evaluation["confusion_matrix"]
