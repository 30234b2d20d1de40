"""GPU platform settings compile into the KFP and kfp-kubernetes specs; the caching policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kfgpu.errors import ConfigError, DataNotFoundError
from kfgpu.ops.fingerprint import source_fingerprint
from kfgpu.ops.platform import PlatformConfig
from tests.unit.ops._pipelines import cached_pipeline, gpu_pipeline

CONFIG = {
    "gpus": 8,
    "gpu_product": "NVIDIA-A100-SXM4-80GB",
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
    "node_selector": {"pool": "gpu"},
    "shm_size": "16Gi",
    "pvc_mounts": [{"claim": "training-data", "mount_path": "/data", "sub_path": "fraud"}],
    "object_storage_secret": "minio-creds",
    "mlflow_secret": "mlflow-creds",
    "env": {"AWS_ENDPOINT_URL": "http://minio.kubeflow:9000"},
    "retries": 3,
    "retry_backoff": "120s",
    "timeout_seconds": 7200,
    "memory_limit": "64Gi",
}


def _compile(pipeline: Any, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def test_gpu_settings_compile_into_the_platform_spec(tmp_path: Path) -> None:
    spec, platform = _compile(gpu_pipeline(CONFIG), tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    param_exec = tasks["train"]["componentRef"]["name"].replace("comp-", "exec-")
    literal_exec = tasks["train-2"]["componentRef"]["name"].replace("comp-", "exec-")
    # GPU count from a pipeline parameter: a placeholder the backend resolves at run time.
    accel = executors[param_exec]["container"]["resources"]["accelerator"]
    assert accel["resourceType"] == "nvidia.com/gpu"
    assert accel["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--gpus']}}"
    literal = executors[literal_exec]["container"]["resources"]
    assert literal["accelerator"]["resourceCount"] == "8"
    assert literal["resourceMemoryLimit"] == "64Gi"
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.kubeflow:9000"} in executors[
        literal_exec
    ]["container"]["env"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    param, lit = k8s[param_exec], k8s[literal_exec]
    # The product as a dict parameter: node_selector_json replaces the literal selectors.
    assert param["nodeSelector"] == {"nodeSelectorJson": {"componentInputParameter": "gpu_nodes"}}
    assert lit["nodeSelector"]["labels"] == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "pool": "gpu",
    }
    assert lit["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    assert lit["emptyDirMounts"] == [
        {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "16Gi"}
    ]
    assert lit["pvcMount"][0]["mountPath"] == "/data"
    assert lit["pvcMount"][0]["subPath"] == "fraud"
    assert lit["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "training-data"
    secrets = {s["secretName"]: s for s in lit["secretAsEnv"]}
    from kfgpu.kube.storage import MOUNT_PATH, S3_KEYS

    assert [k["envVar"] for k in secrets["minio-creds"]["keyToEnv"]] == list(S3_KEYS)
    assert secrets["minio-creds"]["optional"] is True
    (volume,) = [v for v in lit["secretAsVolume"] if v["secretName"] == "minio-creds"]
    assert volume["mountPath"] == MOUNT_PATH and volume["optional"] is True
    assert secrets["mlflow-creds"]["optional"] is True
    assert lit["activeDeadlineSeconds"] == "7200"
    assert tasks["train-2"]["retryPolicy"]["maxRetryCount"] == 3
    assert tasks["train-2"]["retryPolicy"]["backoffDuration"] == "120s"


def test_no_gpus_sets_no_accelerator(tmp_path: Path) -> None:
    spec, platform = _compile(gpu_pipeline({"gpus": 0, "gpu_product": "X"}), tmp_path)
    literal_exec = spec["root"]["dag"]["tasks"]["train-2"]["componentRef"]["name"].replace(
        "comp-", "exec-"
    )
    assert "resources" not in spec["deploymentSpec"]["executors"][literal_exec]["container"]
    assert literal_exec not in platform.get("platforms", {}).get("kubernetes", {}).get(
        "deploymentSpec", {}
    ).get("executors", {})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"gpu": 1}, r"unknown field\(s\) \['gpu'\]"),
        ({"gpus": -1}, "gpus must be a non-negative integer"),
        ({"shm_size": "lots"}, "shm_size 'lots' is not a Kubernetes quantity"),
        ({"retry_backoff": "1m"}, "retry_backoff '1m' must be seconds"),
        ({"tolerations": [{"key": "k", "operator": "Like"}]}, "operator must be Exists or Equal"),
        ({"pvc_mounts": [{"claim": "c"}]}, "mount_path"),
    ],
)
def test_bad_platform_config_names_the_field(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlatformConfig.from_mapping(mapping)


def test_platform_config_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    config = PlatformConfig.from_file(path)
    assert config.gpus == 8 and config.pvc_mounts[0].claim == "training-data"


def test_cache_policy_keys_validate_data_on_the_fingerprint(tmp_path: Path) -> None:
    spec, _ = _compile(cached_pipeline(wire_fingerprint=True), tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["fingerprint-data"]["cachingOptions"] == {}  # enableCache false is omitted
    assert tasks["validate-data"]["cachingOptions"] == {"enableCache": True}
    fp_input = tasks["validate-data"]["inputs"]["parameters"]["data_fingerprint"]
    assert fp_input["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "fingerprint-data",
    }


def test_cache_policy_refuses_a_reader_keyed_on_the_uri_alone() -> None:
    with pytest.raises(ConfigError, match="validate_data must get data_fingerprint"):
        cached_pipeline(wire_fingerprint=False)


def test_fingerprint_follows_the_content(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    first = source_fingerprint(str(data))
    assert first == source_fingerprint(str(data))
    data.write_text("a,b\n1,3\n")
    assert source_fingerprint(str(data)) != first
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "p0.parquet").write_bytes(b"x")
    before = source_fingerprint(str(folder))
    (folder / "p1.parquet").write_bytes(b"y")
    assert source_fingerprint(str(folder)) != before
    assert source_fingerprint("kfgpu://fraud?rows=10") == source_fingerprint(
        "kfgpu://fraud?rows=10"
    )
    assert source_fingerprint("kfgpu://fraud?rows=10") != source_fingerprint(
        "kfgpu://fraud?rows=11"
    )
    with pytest.raises(DataNotFoundError):
        source_fingerprint(str(tmp_path / "missing.csv"))


def test_fingerprint_of_a_remote_object_changes_with_it() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/kfgpu-test/data.csv", b"a\n1\n")
    first = source_fingerprint("memory://kfgpu-test/data.csv")
    fs.pipe("/kfgpu-test/data.csv", b"a\n2\n")
    assert source_fingerprint("memory://kfgpu-test/data.csv") != first
    fs.rm("/kfgpu-test", recursive=True)


def test_the_component_leaves_a_missing_source_to_validate_data(tmp_path: Path) -> None:
    from kfgpu.components import fingerprint_data

    # validate_data runs next and fails with its report; the fingerprint only says "absent".
    assert fingerprint_data.python_func(data_uri=str(tmp_path / "missing.csv")) == "absent"
    (tmp_path / "x.csv").write_text("a\n1\n")
    assert fingerprint_data.python_func(data_uri=str(tmp_path / "x.csv")).startswith("sha256:")
