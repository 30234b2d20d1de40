"""Which image a predictor runs, and the storage credentials KServe downloads the model with.

A GPU predictor must run CUDA torch: `kfgpu deploy --gpus N` (and the gpu-prod overlay) name
``kfgpu-serve-gpu``; on CPU the runtime's own ``kfgpu-serve`` image stays. The predictor's
service account carries the object-storage Secret and KServe's ``s3-*`` annotations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kfgpu._image import SERVE_GPU_IMAGE, SERVE_IMAGE
from kfgpu.errors import ConfigError
from kfgpu.kube.storage import STORAGE_SECRET, KServeStorage, build_storage_service_account
from kfgpu.serving.isvc import ServiceConfig, build_inference_service, build_serving_runtime

ROOT = Path(__file__).resolve().parents[3]


def _dry_run(tmp_path: Path, *args: str) -> dict[str, Any]:
    from kfgpu.cli import cli

    argv = ["deploy", str(tmp_path), "--name", "fraud", "--storage-uri", "s3://m/v1", "--dry-run"]
    result = CliRunner().invoke(cli, [*argv, *args])
    assert result.exit_code == 0, result.output
    obj: dict[str, Any] = yaml.safe_load(result.output)
    return obj


def _model(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    model: dict[str, Any] = (spec["canary"][0] if spec.get("canary") else spec)["predictor"][
        "model"
    ]
    return model


def _env(model: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in model.get("env", [])}


def test_deploy_gpus_dry_run_names_the_gpu_serving_image(tmp_path: Path) -> None:
    model = _model(_dry_run(tmp_path, "--gpus", "1"))
    assert model["image"] == SERVE_GPU_IMAGE
    assert _env(model)["KFGPU_DEVICE"] == "cuda"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_deploy_gpu_canary_in_raw_mode_names_it_too(tmp_path: Path) -> None:
    obj = _dry_run(tmp_path, "--gpus", "2", "--mode", "RawDeployment", "--canary", "10")
    assert _model(obj)["image"] == SERVE_GPU_IMAGE


def test_cpu_deploy_keeps_the_runtimes_cpu_image(tmp_path: Path) -> None:
    model = _model(_dry_run(tmp_path))
    assert "image" not in model
    assert _env(model)["KFGPU_DEVICE"] == "cpu"
    runtime = build_serving_runtime()
    assert runtime["spec"]["containers"][0]["image"] == SERVE_IMAGE
    # The predictor container KServe merges the model spec into is the runtime's one.
    assert runtime["spec"]["containers"][0]["name"] == "kserve-container"


def test_an_explicit_image_wins() -> None:
    cfg = ServiceConfig(name="fraud", storage_uri="s3://m/v1", gpus=1, image="reg/mine:1")
    assert _model(build_inference_service(cfg))["image"] == "reg/mine:1"


def test_triton_runtime_gets_no_kfgpu_image() -> None:
    cfg = ServiceConfig(name="fraud", storage_uri="s3://m/v1", gpus=1, runtime="triton")
    assert "image" not in _model(build_inference_service(cfg))


def test_service_account_option_reaches_the_predictor(tmp_path: Path) -> None:
    obj = _dry_run(tmp_path, "--service-account", "kfgpu-serving")
    assert obj["spec"]["predictor"]["serviceAccountName"] == "kfgpu-serving"


def test_gpu_prod_overlay_runs_the_gpu_image_and_cpu_dev_does_not() -> None:
    patches = yaml.safe_load(
        (ROOT / "manifests" / "overlays" / "gpu-prod" / "kustomization.yaml").read_text()
    )["patches"]
    isvc_patch = next(p for p in patches if p["target"]["kind"] == "InferenceService")
    ops = {op["path"]: op.get("value") for op in yaml.safe_load(isvc_patch["patch"])}
    assert ops["/spec/predictor/model/image"] == SERVE_GPU_IMAGE
    assert ops["/spec/predictor/model/env/0/value"] == "cuda"
    base = yaml.safe_load((ROOT / "manifests" / "base" / "inferenceservice.yaml").read_text())
    assert base["spec"]["predictor"]["model"]["env"][0] == {"name": "KFGPU_DEVICE", "value": "cpu"}
    assert "image" not in base["spec"]["predictor"]["model"]


# --- storage credentials for KServe ------------------------------------------------------


def test_storage_service_account_lists_the_secret_with_kserve_annotations() -> None:
    import kubernetes_validate

    sa = build_storage_service_account(
        "kfgpu-serving",
        KServeStorage(s3_endpoint="minio.minio:9000", s3_region="eu-west-1", s3_use_https=False),
        namespace="ml",
    )
    kubernetes_validate.validate(sa, "1.30", strict=True)
    assert sa["secrets"] == [{"name": STORAGE_SECRET}]
    assert sa["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.minio:9000",
        "serving.kserve.io/s3-region": "eu-west-1",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-verifyssl": "1",
    }


def test_manifest_service_account_is_the_renderer_output() -> None:
    """manifests/serving's predictor account equals the renderer's (AWS S3 defaults)."""
    docs = yaml.safe_load_all((ROOT / "manifests" / "serving" / "rbac.yaml").read_text())
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa == build_storage_service_account("kfgpu-serving")


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"secret": "Bad_Name"}, "KServeStorage.secret='Bad_Name'"),
        ({"s3_endpoint": "https://minio:9000"}, "KServeStorage.s3_endpoint="),
    ],
)
def test_bad_storage_settings_name_the_field(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        KServeStorage(**kw)
