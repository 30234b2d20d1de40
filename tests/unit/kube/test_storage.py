"""Object-storage credentials: the Secret on every compiled step that reads or writes data,
and the GCS key taken only when it is really mounted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError
from kfgpu.kube.storage import (
    DATA_INPUTS,
    GCS_FILE_ENV,
    GCS_KEY,
    MOUNT_PATH,
    S3_KEYS,
    STORAGE_SECRET,
    apply_gcs_credentials,
    use_object_storage_on_data_steps,
)

ROOT = Path(__file__).resolve().parents[3]
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


def _compiled(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform


def _data_executors(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(executors whose component takes a data input, all executors)."""
    data, every = set(), set()
    for comp in spec["components"].values():
        if "executorLabel" not in comp:
            continue
        every.add(comp["executorLabel"])
        inputs = set((comp.get("inputDefinitions") or {}).get("parameters") or {})
        if inputs & DATA_INPUTS:
            data.add(comp["executorLabel"])
    return data, every


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_every_data_step_gets_the_optional_storage_secret(path: Path) -> None:
    spec, platform = _compiled(path)
    param = spec["root"]["inputDefinitions"]["parameters"]["storage_secret"]
    assert param["defaultValue"] == STORAGE_SECRET and param["parameterType"] == "STRING"
    data, every = _data_executors(spec)
    assert data, f"{path.name}: no step reads data?"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    containers = spec["deploymentSpec"]["executors"]
    for label in every:
        config = executors.get(label, {})
        envs = [
            s
            for s in config.get("secretAsEnv", [])
            if "storage_secret" in str(s["secretNameParameter"])
        ]
        volumes = [
            s
            for s in config.get("secretAsVolume", [])
            if "storage_secret" in str(s["secretNameParameter"])
        ]
        env = {e["name"]: e["value"] for e in containers[label]["container"].get("env", [])}
        if label not in data:
            assert not envs and not volumes and GCS_FILE_ENV not in env, label
            continue
        (secret_env,) = envs
        assert secret_env["optional"] is True
        assert {m["secretKey"]: m["envVar"] for m in secret_env["keyToEnv"]} == {
            k: k for k in S3_KEYS
        }
        (volume,) = volumes
        assert volume["mountPath"] == MOUNT_PATH and volume["optional"] is True
        assert env[GCS_FILE_ENV] == f"{MOUNT_PATH}/{GCS_KEY}"


def test_the_training_pipelines_data_steps_are_the_expected_ones() -> None:
    """What the rule picks in the training pipeline (register_model sits in a condition)."""
    spec, _ = _compiled(ROOT / "pipelines" / "training.yaml")
    data, every = _data_executors(spec)
    assert {
        "exec-fingerprint-data",
        "exec-validate-data",
        "exec-train-model",
        "exec-evaluate-model",
        "exec-check-gate",
        "exec-register-model",
    } == data
    assert "exec-engineer-features" in every - data


def test_outside_a_pipeline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"outside a @dsl\.pipeline body"):
        use_object_storage_on_data_steps()


# --- the GCS key at run time ------------------------------------------------------------


def test_gcs_key_is_used_only_when_it_is_mounted(tmp_path: Path) -> None:
    key = tmp_path / GCS_KEY
    env: dict[str, str] = {GCS_FILE_ENV: str(key)}
    assert apply_gcs_credentials(env) is None  # no key in the Secret (or no Secret)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    key.write_text("{}")
    assert apply_gcs_credentials(env) == str(key)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == str(key)
    mine = {GCS_FILE_ENV: str(key), "GOOGLE_APPLICATION_CREDENTIALS": "/my/own.json"}
    assert apply_gcs_credentials(mine) is None
    assert mine["GOOGLE_APPLICATION_CREDENTIALS"] == "/my/own.json"
    assert apply_gcs_credentials({}) is None


def test_every_step_applies_the_mounted_gcs_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / GCS_KEY
    key.write_text("{}")
    monkeypatch.setenv(GCS_FILE_ENV, str(key))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    seen: list[str | None] = []

    @step("probe")
    def probe() -> StepResult:
        seen.append(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
        return StepResult()

    probe()
    assert seen == [str(key)]
