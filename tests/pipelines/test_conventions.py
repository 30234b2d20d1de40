"""KFP conventions of the shipped pipelines: no cache on side effects, one GPU setting for the
training pod and its trainer, GPUs for tuning workers (read from the checked-in compiled
files, which test_compile keeps equal to a fresh compile)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfgpu.ops.platform import SIDE_EFFECTS

ROOT = Path(__file__).resolve().parents[2]


def _spec(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = list(yaml.safe_load_all((ROOT / "pipelines" / f"{name}.yaml").read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _tasks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every task of every DAG (conditions and loops included): (component name, task)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        for task in dag["tasks"].values():
            ref = task["componentRef"]["name"]
            if "dag" not in spec["components"][ref]:
                yield ref.removeprefix("comp-").replace("-", "_"), task


@pytest.mark.parametrize("pipeline", ["training", "tuning", "monitoring", "batch_inference"])
def test_side_effecting_steps_are_never_cached(pipeline: str) -> None:
    spec, _ = _spec(pipeline)
    for component, task in _tasks(spec):
        if component in SIDE_EFFECTS:
            # KFP writes enableCache: false as an empty cachingOptions (proto3 default).
            assert not task["cachingOptions"].get("enableCache"), (pipeline, component)


def test_the_shipped_side_effects_are_the_ones_turned_off() -> None:
    found = {c for p in ("training", "monitoring") for c, _ in _tasks(_spec(p)[0])}
    assert {"check_gate", "register_model", "trigger_retraining"} <= found & SIDE_EFFECTS


def test_component_readmes_say_to_turn_caching_off() -> None:
    for name in SIDE_EFFECTS:
        text = (ROOT / "components" / name / "README.md").read_text()
        assert "task.set_caching_options(False)" in text, name
    assert "set_caching_options" not in (ROOT / "components/train_model/README.md").read_text()


def test_one_gpu_setting_sizes_the_training_pod_and_its_trainer() -> None:
    spec, _ = _spec("training")
    assert "devices" not in spec["root"]["inputDefinitions"]["parameters"]
    train = spec["root"]["dag"]["tasks"]["train-model"]
    assert train["inputs"]["parameters"]["devices"] == {"componentInputParameter": "gpus"}
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == (
        "{{$.inputs.parameters['pipelinechannel--gpus']}}"
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["gpus"]["defaultValue"] == 0


def test_tuning_workers_can_take_gpus() -> None:
    spec, platform = _spec("tuning")
    assert spec["root"]["inputDefinitions"]["parameters"]["gpus_per_worker"]["defaultValue"] == 0
    executor = spec["deploymentSpec"]["executors"]["exec-tune-worker"]["container"]
    assert executor["resources"]["accelerator"]["resourceCount"] == (
        "{{$.inputs.parameters['pipelinechannel--gpus_per_worker']}}"
    )
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-tune-worker"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[
        "tolerations"
    ]


def test_devices_zero_means_the_cpu() -> None:
    """gpus=0 reaches the trainer as devices=0: the CPU (tests/gpu checks it beside a GPU)."""
    from kfgpu.errors import ConfigError
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import resolve_accelerator

    assert resolve_accelerator(TrainConfig(accelerator="auto", devices=0)) == "cpu"
    with pytest.raises(ConfigError, match="devices=0 means no GPU"):
        TrainConfig(accelerator="gpu", devices=0)
    with pytest.raises(ConfigError, match="devices=-2 is invalid"):
        TrainConfig(devices=-2)
