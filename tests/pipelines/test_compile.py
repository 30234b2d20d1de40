"""Golden compile: checked-in YAML equals a fresh compile, and compiling is deterministic."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from kfgpu.compile import CompileDrift, check, compile_all, compiled_kfp_versions

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


def _pretend_compiled_with(root: Path, version: str) -> int:
    """Rewrite every compiled file's sdkVersion, as an older or newer kfp would have written it."""
    n = 0
    for path in [*root.glob("components/*/component.yaml"), *root.glob("pipelines/*.yaml")]:
        text = path.read_text()
        new = re.sub(r"^sdkVersion: kfp-\S+$", f"sdkVersion: kfp-{version}", text, flags=re.M)
        n += new != text
        path.write_text(new)
    return n


def test_another_kfp_is_said_in_one_line_not_one_diff_per_file(tmp_path: Path) -> None:
    compile_all(tmp_path)
    changed = _pretend_compiled_with(tmp_path, "2.0.0")
    assert changed >= 20
    (tmp_path / "requirements.lock").write_text("kfp==2.0.0\n")
    with pytest.raises(CompileDrift) as err:
        check(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f"made with kfp 2.0.0 ({changed} files) but kfp {version('kfp')} is installed" in message
    assert "requirements.lock pins kfp 2.0.0" in message
    assert "is stale" not in message
    # A real difference besides the version is still named.
    target = tmp_path / "components" / "validate_data" / "component.yaml"
    target.write_text(target.read_text().replace("validate", "validat", 1))
    with pytest.raises(CompileDrift, match=r"besides that.*validate_data/component\.yaml is stale"):
        check(tmp_path)


def test_compile_refuses_to_rewrite_every_file_for_an_unlocked_kfp(tmp_path: Path) -> None:
    compile_all(tmp_path)
    _pretend_compiled_with(tmp_path, "2.0.0")
    before = _tree(tmp_path)
    with pytest.raises(CompileDrift, match="kfgpu compile --kfp-upgrade"):
        compile_all(tmp_path)
    assert _tree(tmp_path) == before
    compile_all(tmp_path, kfp_upgrade=True)
    assert set(compiled_kfp_versions(tmp_path)) == {version("kfp")}


def test_the_lock_pins_the_kfp_that_compiled_the_checked_in_files() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(
        line.split("==", 1) for line in lock.splitlines() if line and not line.startswith("#")
    )
    assert set(compiled_kfp_versions(ROOT)) == {pins["kfp"]}
    assert pins["kfp-kubernetes"] and pins["torch"] and pins["pytest"]
    # The README's two commands and CI install through the lock.
    readme = (ROOT / "README.md").read_text()
    torch = pins["torch"]
    assert f"pip install torch=={torch} && pip install -c requirements.lock -e . && kfgpu run" in readme
    test_cmd = f"pip install torch=={torch} && pip install -c requirements.lock -e '.[dev]' && scripts/check"
    assert test_cmd in readme
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


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
