"""The training pipeline end to end under kfp.local, and its bundle served in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kfgpu.bundle import WEIGHTS_FILE, read_description, verify_bundle
from kfgpu.errors import ChecksumError
from kfgpu.local import LocalRun, run_local
from kfgpu.registry import local_tracking_uri

pytestmark = pytest.mark.slow

#: A constant predictor scores ROC AUC 0.5 whatever constant it picks; the floor leaves a
#: margin that only a model that learned from the features clears.
AUC_FLOOR = 0.75


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    work = tmp_path_factory.mktemp("pipeline")
    return run_local(
        "training",
        {
            "data_uri": "kfgpu://fraud?rows=30000&seed=7",
            "target": "is_fraud",
            "max_epochs": 10,
            "hidden_sizes": "64,64",
            "mlflow_tracking_uri": local_tracking_uri(work),
        },
        workdir=work,
    )


def _split(run: LocalRun, name: str) -> Path:
    (path,) = run.run_dir.glob(f"*/engineer-features/{name}")
    return path


def test_every_step_ran(run: LocalRun) -> None:
    assert [e["step"] for e in run.events if e["event"] == "success"] == [
        "validate_data",
        "engineer_features",
        "tune_hyperparameters",
        "train_model",
        "evaluate_model",
        "check_gate",
        "register_model",
    ]
    assert not [e for e in run.events if e["event"] == "failure"]


def test_bundle_loads_in_a_fresh_process_and_beats_the_floor(run: LocalRun) -> None:
    bundle = run.output_path("model")
    assert bundle is not None
    script = f"""
import json
import numpy as np
from sklearn.metrics import roc_auc_score, log_loss
from kfgpu.bundle import load_bundle
from kfgpu.data import read_parquet

bundle = load_bundle({str(bundle)!r})          # verifies checksums first
test = read_parquet({str(_split(run, "test"))!r})
raw = test.drop(columns=["is_fraud"])
pred = bundle.predict(raw)
y = test["is_fraud"].to_numpy()
p = pred["proba_1"].to_numpy()
prior = float(np.mean(y))
print(json.dumps({{
    "rows": len(test),
    "auc": float(roc_auc_score(y, p)),
    "log_loss": float(log_loss(y, p, labels=[0, 1])),
    "constant_log_loss": float(log_loss(y, np.full(len(y), prior), labels=[0, 1])),
    "classes": sorted(set(pred["prediction"].tolist())),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] > 1000
    assert result["auc"] > AUC_FLOOR
    assert result["log_loss"] < result["constant_log_loss"]
    assert set(result["classes"]) <= {0, 1}


def test_bundle_describes_itself_and_verifies(run: LocalRun, tmp_path: Path) -> None:
    bundle = run.output_path("model")
    assert bundle is not None
    digests = verify_bundle(bundle)
    assert set(digests) == {
        "model.safetensors",
        "transform.json",
        "bundle.json",
        "reference/profile.json",
        "reference/sample.parquet",
    }
    desc = read_description(bundle).to_dict()
    assert desc["task"] == "classification"
    assert desc["labels"]["classes"] == [0, 1]
    assert desc["labels"]["positive_class"] == 1
    names = [i["name"] for i in desc["signature"]["inputs"]]
    assert "amount" in names and "merchant_category" in names and "is_fraud" not in names
    assert len(desc["lineage"]["data_fingerprint"]) == 64
    assert desc["lineage"]["mlflow_run_id"]
    # The training split's reference profile travels in the bundle, label included.
    from kfgpu.bundle import load_reference

    reference = load_reference(str(bundle))
    assert reference.rows == desc["training"]["train_rows"]
    assert {"amount", "merchant_category", "is_fraud"} <= set(reference.columns)
    # A bundle with a flipped byte must be refused.
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    weights = copy / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"model\.safetensors"):
        verify_bundle(copy)


def test_mlflow_run_holds_params_metrics_and_bundle(run: LocalRun) -> None:
    from mlflow.tracking import MlflowClient

    bundle = run.output_path("model")
    assert bundle is not None
    lineage = read_description(bundle).lineage or {}
    client = MlflowClient(tracking_uri=lineage["mlflow_tracking_uri"])
    mlrun = client.get_run(lineage["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["hidden_sizes"] == "[64, 64]"
    assert 0.5 < mlrun.data.metrics["test_roc_auc"] <= 1.0
    history = client.get_metric_history(mlrun.info.run_id, "val_loss")
    assert len(history) >= 2, "per-epoch validation loss is tracked"
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id, "bundle")}
    assert "bundle/model.safetensors" in artifacts


def test_step_reports_are_written(run: LocalRun) -> None:
    (report,) = run.run_dir.glob("*/validate-data/report")
    assert "PASS" in report.read_text().upper()
    html = run.output_path("report")
    assert html is not None and "roc_auc" in html.read_text()


def test_every_dataset_artifact_carries_a_fingerprint(run: LocalRun) -> None:
    seen = 0
    for step in ("validate-data", "engineer-features"):
        (output,) = run.run_dir.glob(f"*/{step}/executor_output.json")
        artifacts = json.loads(output.read_text())["artifacts"]
        for name in {
            "validate-data": ["dataset"],
            "engineer-features": ["train", "validation", "test"],
        }[step]:
            (artifact,) = artifacts[name]["artifacts"]
            meta = artifact["metadata"]
            assert len(meta["fingerprint"]) == 64, (step, name)
            assert meta["rows"] > 0 and meta["schema"]["is_fraud"].startswith("int")
            seen += 1
    assert seen == 4
