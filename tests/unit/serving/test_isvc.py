"""InferenceService building: both modes, with and without canary, GPU and CPU, checked
against the kserve SDK models and KServe's CRD (../shared/crds, see tests/crds.py); the manifests under manifests/serving; the ONNX export for Triton."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfgpu._image import SERVE_IMAGE
from kfgpu.errors import ConfigError
from kfgpu.serving.isvc import (
    MODE_ANNOTATION,
    ServiceConfig,
    build_inference_service,
    build_serving_runtime,
)
from tests import crds

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests" / "serving"

MODES = ["Serverless", "RawDeployment", "Standard"]
STABLE = build_inference_service(ServiceConfig(name="fraud", storage_uri="s3://m/v1"))["spec"][
    "predictor"
]


@pytest.fixture(scope="module")
def sdk() -> Iterator[Any]:
    """The kserve SDK's ApiClient, able to (de)serialize embedded Kubernetes core models."""
    import kserve.models
    import kubernetes.client.models as core
    from kserve.api_client import ApiClient

    added = [n for n in dir(core) if n[:1].isupper() and not hasattr(kserve.models, n)]
    for n in added:
        setattr(kserve.models, n, getattr(core, n))
    try:
        yield ApiClient()
    finally:
        for n in added:
            delattr(kserve.models, n)


def _prune(obj: Any) -> Any:
    """Drop the empty defaults the SDK models add (``name: ''``) and None values."""
    if isinstance(obj, dict):
        return {k: _prune(v) for k, v in obj.items() if v not in (None, "")}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def _round_trip(sdk: Any, obj: dict[str, Any], klass: str) -> dict[str, Any]:
    model = sdk._ApiClient__deserialize(json.loads(json.dumps(obj)), klass)
    out: dict[str, Any] = _prune(sdk.sanitize_for_serialization(model))
    return out


def _crd_errors(obj: dict[str, Any]) -> list[str]:
    """Schema errors and pruned fields against the real CRD (tests/crds.py)."""
    return crds.errors(obj)


def _cfg(mode: str, canary: bool, gpus: int, **kw: Any) -> ServiceConfig:
    return ServiceConfig(
        name="fraud",
        namespace="ml",
        storage_uri="s3://m/v2",
        deployment_mode=mode,  # type: ignore[arg-type]
        gpus=gpus,
        gpu_type="NVIDIA-L4" if gpus else "",
        canary_traffic_percent=20 if canary else None,
        scale_target=10,
        service_account="kfgpu-serving",
        **kw,
    )


CASES = [(m, c, g) for m in MODES for c in (False, True) for g in (0, 1)]
IDS = [f"{m}-{'canary' if c else 'full'}-{'gpu' if g else 'cpu'}" for m, c, g in CASES]


@pytest.mark.parametrize(("mode", "canary", "gpus"), CASES, ids=IDS)
def test_inference_service_validates_against_sdk_and_crd(
    sdk: Any, mode: str, canary: bool, gpus: int
) -> None:
    obj = build_inference_service(_cfg(mode, canary, gpus), stable_predictor=STABLE)
    assert _crd_errors(obj) == []
    assert _round_trip(sdk, obj, "V1beta1InferenceService") == _prune(obj)
    serverless = mode == "Serverless"
    assert obj["metadata"]["annotations"][MODE_ANNOTATION] == (
        "Serverless" if serverless else "RawDeployment"
    )
    spec = obj["spec"]
    if canary and serverless:
        assert spec["predictor"]["canaryTrafficPercent"] == 20
        assert "canary" not in spec
    elif canary:
        # RawDeployment never gets canaryTrafficPercent (ignored there: kserve issue 5335).
        assert "canaryTrafficPercent" not in json.dumps(obj)
        assert spec["predictor"] == STABLE
        (entry,) = spec["canary"]
        assert entry["trafficPercent"] == 20
        assert entry["predictor"]["model"]["storageUri"] == "s3://m/v2"
    else:
        assert "canary" not in spec and "canaryTrafficPercent" not in spec["predictor"]
    new = spec["canary"][0]["predictor"] if canary and not serverless else spec["predictor"]
    res = new["model"]["resources"]
    assert res["limits"].get("nvidia.com/gpu") == ("1" if gpus else None)
    assert ("tolerations" in new) == bool(gpus)
    assert new["scaleMetric"] == ("concurrency" if serverless else "cpu")
    assert new["scaleTarget"] == 10 and new["minReplicas"] == 1 and new["maxReplicas"] == 3


def test_schema_and_sdk_catch_a_misspelt_field(sdk: Any) -> None:
    obj = build_inference_service(_cfg("Serverless", False, 1))
    obj["spec"]["predictor"]["canaryTraficPercent"] = 10
    assert _crd_errors(obj)
    bad = build_inference_service(_cfg("Serverless", False, 1))
    bad["spec"]["predictor"]["tolerations"][0]["operater"] = "Exists"
    assert _crd_errors(bad)
    assert _round_trip(sdk, bad, "V1beta1InferenceService") != _prune(bad)


def test_triton_runtime(sdk: Any) -> None:
    obj = build_inference_service(_cfg("Serverless", False, 1, runtime="triton"))
    model = obj["spec"]["predictor"]["model"]
    assert model["runtime"] == "kserve-tritonserver"
    assert model["modelFormat"]["name"] == "onnx" and model["protocolVersion"] == "v2"
    assert _crd_errors(obj) == []
    assert _round_trip(sdk, obj, "V1beta1InferenceService") == _prune(obj)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (
            {
                "deployment_mode": "RawDeployment",
                "canary_traffic_percent": 10,
                "kserve_version": "0.19",
            },
            "kserve issue 5335",
        ),
        ({"deployment_mode": "RawDeployment", "scale_metric": "concurrency"}, "Serverless"),
        ({"scale_metric": "cpu"}, "does not work in Serverless"),
        ({"deployment_mode": "RawDeployment", "min_replicas": 0}, "scale to zero"),
        ({"canary_traffic_percent": 150}, "0..100"),
        ({"name": "Fraud_Model"}, "not a valid InferenceService name"),
        ({"min_replicas": 4, "max_replicas": 2}, "below min_replicas"),
        ({"precision": "16"}, "needs gpus"),
        ({"kserve_version": "latest"}, "MAJOR.MINOR"),
    ],
)
def test_config_errors_name_the_field_and_fix(kw: dict[str, Any], words: str) -> None:
    base: dict[str, Any] = {"name": "fraud", "storage_uri": "s3://m/v2"}
    with pytest.raises(ConfigError, match=words):
        ServiceConfig(**{**base, **kw})


def test_raw_canary_needs_the_running_predictor() -> None:
    cfg = _cfg("RawDeployment", True, 0)
    with pytest.raises(ConfigError, match="deploy without canary_traffic_percent first"):
        build_inference_service(cfg)


# --- manifests ------------------------------------------------------------------------------


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def test_runtime_manifest_is_the_builder_output_and_valid(sdk: Any) -> None:
    (runtime,) = _docs("runtime.yaml")
    assert runtime == build_serving_runtime()
    assert runtime["spec"]["containers"][0]["image"] == SERVE_IMAGE
    assert _round_trip(sdk, runtime, "V1alpha1ServingRuntime") == _prune(runtime)
    formats = runtime["spec"]["supportedModelFormats"]
    isvc = build_inference_service(_cfg("Serverless", False, 0))
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == formats[0]["name"]
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


def test_rbac_manifests_are_valid_kubernetes() -> None:
    import kubernetes_validate

    docs = _docs("rbac.yaml")
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}
    for d in docs:
        kubernetes_validate.validate(d, "1.30", strict=True)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    verbs = next(r["verbs"] for r in role["rules"] if "inferenceservices" in r["resources"])
    assert {"create", "get", "update", "delete"} <= set(verbs)


def test_example_inference_service_is_valid(sdk: Any) -> None:
    (isvc,) = _docs("inferenceservice.yaml")
    assert _crd_errors(isvc) == []
    assert _round_trip(sdk, isvc, "V1beta1InferenceService") == _prune(isvc)
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for res in kustomization["resources"]:
        assert (MANIFESTS / res).is_file()


# --- ONNX for Triton ------------------------------------------------------------------------


def test_onnx_export_reproduces_the_served_module(bundle_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import numpy as np
    import torch

    from kfgpu.bundle import load_bundle
    from kfgpu.serving.isvc import export_onnx

    repo = export_onnx(bundle_path, tmp_path / "repo", model_name="fraud")
    assert (repo / "fraud" / "1" / "model.onnx").is_file()
    config = (repo / "fraud" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and 'name: "codes"' in config
    ort = pytest.importorskip("onnxruntime")
    bundle = load_bundle(bundle_path)
    from kfgpu.data import fraud

    df = fraud(50, seed=3)
    num, codes = bundle.transform.raw_arrays(df)
    session = ort.InferenceSession(str(repo / "fraud" / "1" / "model.onnx"))
    got = session.run(None, {"numeric": num, "codes": codes})[0]
    with torch.inference_mode():
        want = bundle.module(torch.from_numpy(num), torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- auth (issue 17) ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_auth_secret_and_cluster_local_render_for_each_mode(sdk: Any, mode: str) -> None:
    isvc = build_inference_service(
        _cfg(mode, False, 0, auth_token_secret="fraud-token", cluster_local=True)
    )
    env = {e["name"]: e for e in isvc["spec"]["predictor"]["model"]["env"]}
    assert env["KFGPU_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "fraud-token",
        "key": "token",
    }
    label = (
        "networking.knative.dev/visibility"
        if mode == "Serverless"
        else "networking.kserve.io/visibility"
    )
    assert isvc["metadata"]["labels"][label] == "cluster-local"
    assert _crd_errors(isvc) == []
    assert _round_trip(sdk, isvc, "V1beta1InferenceService") == _prune(isvc)
    plain = build_inference_service(_cfg(mode, False, 0))
    assert "KFGPU_AUTH_TOKEN" not in {e["name"] for e in plain["spec"]["predictor"]["model"]["env"]}
    assert not any("visibility" in k for k in plain["metadata"]["labels"])


def test_auth_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="only the kfgpu predictor checks a bearer token"):
        ServiceConfig(name="f", storage_uri="s3://m", runtime="triton", auth_token_secret="t")
    with pytest.raises(ConfigError, match="not a valid Secret name"):
        ServiceConfig(name="f", storage_uri="s3://m", auth_token_secret="Bad_Name")


def test_runtime_probes_use_the_open_health_routes() -> None:
    container = build_serving_runtime()["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_network_policy_admits_only_the_gateway_activator_and_labelled_namespaces() -> None:
    import kubernetes_validate

    (policy,) = _docs("networkpolicy.yaml")
    kubernetes_validate.validate(policy, "1.30", strict=True)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    sources = rule["from"]
    assert all("namespaceSelector" in s for s in sources)  # never all namespaces' pods
    names = [s["namespaceSelector"].get("matchLabels", {}) for s in sources]
    assert {"kubernetes.io/metadata.name": "istio-system"} in names
    assert {"kfgpu.io/serving-client": "true"} in names
    assert (
        "networkpolicy.yaml"
        in yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    )
