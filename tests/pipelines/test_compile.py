"""Golden compile: checked-in YAML equals a fresh compile, and compiling is deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfgpu.compile import CompileDrift, check, compile_all

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_checked_in_files_are_up_to_date() -> None:
    assert len(check(ROOT)) >= 5


def test_two_compiles_are_byte_identical(tmp_path: Path) -> None:
    compile_all(tmp_path / "a")
    compile_all(tmp_path / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b
    assert "pipelines/training.yaml" in a
    assert "components/train_model/component.yaml" in a
    assert "components/train_model/README.md" in a


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    compile_all(tmp_path)
    target = tmp_path / "components" / "validate_data" / "component.yaml"
    target.write_text(target.read_text().replace("validate", "validat", 1))
    with pytest.raises(CompileDrift, match=r"validate_data/component\.yaml is stale"):
        check(tmp_path)
    target.unlink()
    with pytest.raises(CompileDrift, match="is missing"):
        check(tmp_path)


def test_training_pipeline_wiring_and_resources(tmp_path: Path) -> None:
    compile_all(tmp_path)
    docs = list(yaml.safe_load_all((tmp_path / "pipelines" / "training.yaml").read_text()))
    spec, platform = docs[0], docs[1]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "fingerprint-data",
        "validate-data",
        "engineer-features",
        "tune-hyperparameters",
        "train-model",
        "evaluate-model",
        "check-gate",
        "condition-1",
    }
    # The tuner's best parameters reach train_model as overrides.
    tuned = tasks["train-model"]["inputs"]["parameters"]["tuned_hyperparameters"]
    assert tuned["taskOutputParameter"] == {
        "outputParameterKey": "best_params_json",
        "producerTask": "tune-hyperparameters",
    }
    # Registration runs only inside the gate's branch, only with a registry configured.
    outer = tasks["condition-1"]
    assert outer["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--check-gate-Output'] == true"
    )
    inner = spec["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    (branch,) = inner.values()
    assert "mlflow_tracking_uri" in branch["triggerPolicy"]["condition"]
    (register,) = spec["components"][branch["componentRef"]["name"]]["dag"]["tasks"].values()
    assert register["taskInfo"]["name"] == "register model"
    assert sorted(tasks["train-model"]["dependentTasks"]) == [
        "engineer-features",
        "tune-hyperparameters",
        "validate-data",
    ]
    assert sorted(tasks["evaluate-model"]["dependentTasks"]) == ["engineer-features", "train-model"]
    train_exec = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert train_exec["image"].split("/")[-1].startswith("kfgpu-train:")
    assert train_exec["resources"]["resourceMemoryLimit"] == "32G"
    shm = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert shm["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    assert shm["emptyDirMounts"][0]["medium"] == "Memory"
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert {"model", "metrics", "evaluation", "report", "verdict", "model_card"} <= set(outputs)
    # The data's fingerprint is an input of validate_data (its cache key); it is never cached.
    fp = tasks["validate-data"]["inputs"]["parameters"]["data_fingerprint"]
    assert fp["taskOutputParameter"]["producerTask"] == "fingerprint-data"
    assert tasks["fingerprint-data"]["cachingOptions"] == {}
    # The GPU count is a run-time parameter of the training task.
    resources = train_exec["resources"]
    assert "pipelinechannel--gpus" in str(resources["accelerator"])
