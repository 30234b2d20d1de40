"""The typed records (bundle description, evaluation, gate verdict): parsed once, checked,
and written back byte for byte as the current code writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kfgpu.bundle import DESCRIPTION_FILE, read_description
from kfgpu.description import BundleDescription
from kfgpu.errors import BundleError, SchemaError
from kfgpu.evaluation.records import (
    EvaluationRecord,
    GateVerdict,
    read_evaluation,
    read_verdict,
)


def _as_written(data: dict[str, Any]) -> str:
    # How write_bundle, evaluate_model and check_gate serialise their JSON.
    return json.dumps(data, indent=2, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def gated(fraud_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """evaluation.json and verdict.json written by the evaluate_model and check_gate steps."""
    from kfgpu.data import fraud, write_parquet
    from kfgpu.evaluation.release import check_gate_step
    from kfgpu.evaluation.step import evaluate_model_step

    out = tmp_path_factory.mktemp("gated")
    write_parquet(fraud(400, seed=5), str(out / "test.parquet"))
    result = evaluate_model_step(
        bundle_path=str(fraud_bundle),
        test_path=str(out / "test.parquet"),
        report_path=str(out / "report.html"),
        evaluation_path=str(out / "evaluation.json"),
        slice_columns="auto",
        track=False,
    )
    assert result.output.headline == "roc_auc" and result.output.classes == ["0", "1"]
    gate = check_gate_step(
        evaluation_path=str(out / "evaluation.json"),
        verdict_path=str(out / "verdict.json"),
        gate_spec='{"metrics": {"roc_auc": {"min": 2.0}}}',  # cannot pass: one failure
    )
    assert gate.output.blessed is False and gate.output.champion_version == ""
    return out / "evaluation.json", out / "verdict.json"


def test_bundle_description_round_trips_the_file_training_wrote(fraud_bundle: Path) -> None:
    text = (fraud_bundle / DESCRIPTION_FILE).read_text()
    desc = read_description(fraud_bundle)
    assert _as_written(desc.to_dict()) + "\n" == text
    assert desc.task == "classification" and desc.target == "is_fraud"
    assert desc.classes == [0, 1] and desc.model_family == "tabular_mlp"
    assert desc.input_names == [i["name"] for i in json.loads(text)["signature"]["inputs"]]
    assert desc.train_rows == json.loads(text)["training"]["train_rows"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"task": "ranking"}, "task='ranking' is not one of classification, regression"),
        ({"target": ""}, "target='' is not a column name"),
        ({"model": {"config": {}}}, "model.family=None is not a model family name"),
        ({"model": {"family": "tabular_mlp", "config": [1]}}, r"model.config=\[1\]"),
        ({"labels": {"classes": []}}, "describes a classifier with no labels.classes"),
        ({"signature": {"inputs": [{"kind": "numeric"}]}}, "signature.inputs="),
        ({"format": "kfgpu-bundle/99"}, "format='kfgpu-bundle/99'"),
    ],
)
def test_a_malformed_description_is_refused_naming_the_field(
    fraud_bundle: Path, change: dict[str, Any], match: str
) -> None:
    data = json.loads((fraud_bundle / DESCRIPTION_FILE).read_text())
    with pytest.raises(BundleError, match=match) as info:
        BundleDescription.from_dict({**data, **change}, where=" in 'b'")
    assert "bundle.json in 'b'" in str(info.value) and "retrain" in str(info.value)


def test_regression_description_needs_its_target_scaling(fraud_bundle: Path) -> None:
    data = json.loads((fraud_bundle / DESCRIPTION_FILE).read_text())
    data = {**data, "task": "regression", "labels": None}
    del data["labels"]
    with pytest.raises(BundleError, match="has no 'target_scaling'"):
        BundleDescription.from_dict(data)
    data["target_scaling"] = {"mean": "1.5", "scale": 2.0}
    with pytest.raises(BundleError, match=r"target_scaling\.mean='1\.5' is not a number"):
        BundleDescription.from_dict(data)


def test_evaluation_and_verdict_round_trip_the_files_the_steps_wrote(
    gated: tuple[Path, Path],
) -> None:
    evaluation_path, verdict_path = gated
    evaluation = read_evaluation(evaluation_path)
    assert _as_written(evaluation.to_dict()) == evaluation_path.read_text()
    assert evaluation.target == "is_fraud" and evaluation.metric("roc_auc") is not None
    verdict = read_verdict(verdict_path)
    assert _as_written(verdict.to_dict()) + "\n" == verdict_path.read_text()
    (failure,) = verdict.failures
    assert failure.check == "overall.roc_auc.min" and not verdict.blessed
    assert verdict.summary() == json.loads(verdict_path.read_text())["summary"]


def test_a_malformed_evaluation_or_verdict_is_refused_naming_the_field(
    gated: tuple[Path, Path], tmp_path: Path
) -> None:
    evaluation_path, verdict_path = gated
    data = json.loads(evaluation_path.read_text())
    data["metrics"]["roc_auc"] = "high"
    with pytest.raises(SchemaError, match=r"metrics.roc_auc='high' is not a number or null"):
        EvaluationRecord.from_dict(data)
    bad = tmp_path / "evaluation.json"
    bad.write_text('{"slices": {"hour": {"3": {"rows": 5}}}}')
    with pytest.raises(SchemaError, match=r"evaluation '.*evaluation.json': slices.hour.3="):
        read_evaluation(bad)
    verdict = json.loads(verdict_path.read_text())
    with pytest.raises(SchemaError, match="blessed='yes' is not true or false"):
        GateVerdict.from_dict({**verdict, "blessed": "yes"})
    with pytest.raises(SchemaError, match=r"reasons\[\].passed=None"):
        GateVerdict.from_dict({**verdict, "reasons": [{"check": "x", "message": "m"}]})
    with pytest.raises(SchemaError, match="does not exist; re-run check_gate"):
        read_verdict(tmp_path / "missing.json")
