"""The KServe InferenceService (``serving.kserve.io/v1beta1``) for a bundle.

Two runtimes:

* ``kfgpu`` (default): kfgpu's own predictor image as a custom ServingRuntime
  (``manifests/serving/runtime.yaml``, model format ``kfgpu-bundle``). KServe's storage
  initializer downloads the bundle from ``storageUri`` to ``/mnt/models``; the container
  runs ``kfgpu serve`` on it: checksums verified, raw inputs, V1 and V2, micro-batching.
  It never needs an MLflow environment in the image (the trap of KServe issues 4122 and
  3682): the bundle is weights and JSON, and the image has kfgpu.
* ``triton``: KServe's Triton runtime (``kserve-tritonserver``) on an ONNX export of the
  served module (:func:`export_onnx`). Triton runs the network and the transform's
  arithmetic but not the string lookups: clients send the front half's arrays,
  ``numeric`` (FP32 ``[n, k]``) and ``codes`` (INT64 ``[n, m]``).

Two deployment modes, set with the ``serving.kserve.io/deploymentMode`` annotation:

* ``Serverless`` (Knative): autoscaling on ``concurrency`` or ``rps``, scale to zero with
  ``min_replicas=0``; a canary is ``predictor.canaryTrafficPercent``: Knative splits
  traffic between the new revision and the last ready one.
* ``RawDeployment`` (called ``Standard`` in newer KServe docs; both names are accepted,
  the annotation is written as ``RawDeployment``, which every KServe release reads):
  plain Deployments with an HPA on ``cpu`` or ``memory``. Here KServe ignores
  ``canaryTrafficPercent`` without a word (KServe issue 5335), so kfgpu never writes it
  in this mode. From KServe 0.20 the ``spec.canary`` list does split traffic in this
  mode (the installed SDK's ``V1beta1CanarySpec``); kfgpu uses it when
  ``kserve_version`` is 0.20 or later and refuses a canary for older versions.

Auth, by deployment mode (KServe itself authenticates no predictor request; kfgpu's
predictor does, and the mesh or the network does the rest):

* both modes: ``auth_token_secret`` names a Secret whose ``token`` key the predictor
  reads as ``KFGPU_AUTH_TOKEN``: every inference, metadata and repository request then
  needs ``Authorization: Bearer <token>``; health routes and ``/metrics`` stay open, so
  Knative's and the kubelet's probes and Prometheus need no secret;
* ``cluster_local``: no route from outside the cluster: Serverless writes Knative's
  ``networking.knative.dev/visibility: cluster-local`` label, RawDeployment KServe's
  ``networking.kserve.io/visibility: cluster-local`` (no Ingress or HTTPRoute is made);
* the NetworkPolicy in ``manifests/serving/networkpolicy.yaml`` admits to predictor pods
  only the ingress gateway, Knative's activator (Serverless) and namespaces labelled
  ``kfgpu.io/serving-client: "true"``; on an Istio mesh an ``AuthorizationPolicy`` can
  add identity checks at the gateway.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kfgpu._image import SERVE_GPU_IMAGE, SERVE_IMAGE
from kfgpu.errors import BundleError, ConfigError

__all__ = [
    "API_VERSION",
    "AUTH_TOKEN_KEY",
    "KFGPU_MODEL_FORMAT",
    "KFGPU_RUNTIME",
    "MODE_ANNOTATION",
    "SPEC_CANARY_SINCE",
    "TRITON_RUNTIME",
    "ServiceConfig",
    "build_inference_service",
    "build_serving_runtime",
    "deployment_mode",
    "export_onnx",
]

API_VERSION = "serving.kserve.io/v1beta1"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
KFGPU_RUNTIME = "kfgpu-bundle"
KFGPU_MODEL_FORMAT = "kfgpu-bundle"
TRITON_RUNTIME = "kserve-tritonserver"
#: The first KServe release whose ``spec.canary`` splits traffic in RawDeployment mode.
SPEC_CANARY_SINCE = (0, 20)
GPU_RESOURCE = "nvidia.com/gpu"
#: The predictor container's name in KServe's runtimes (the model spec embeds a Container).
MODEL_CONTAINER = "kserve-container"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: The key of the auth Secret that holds the bearer token.
AUTH_TOKEN_KEY = "token"
_VISIBILITY_LABEL = {
    "Serverless": "networking.knative.dev/visibility",
    "RawDeployment": "networking.kserve.io/visibility",
}

DeploymentMode = Literal["Serverless", "RawDeployment", "Standard"]
Runtime = Literal["kfgpu", "triton"]
ScaleMetric = Literal["concurrency", "rps", "cpu", "memory"]

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_SERVERLESS_METRICS = ("concurrency", "rps")
_RAW_METRICS = ("cpu", "memory")


def _version(text: str) -> tuple[int, int]:
    m = re.match(r"^v?(\d+)\.(\d+)", text.strip())
    if not m:
        raise ConfigError(f"kserve_version={text!r} is invalid; use MAJOR.MINOR such as '0.21'")
    return int(m[1]), int(m[2])


@dataclass(frozen=True)
class ServiceConfig:
    """What to deploy and how. Validated on construction.

    Attributes:
        name: the InferenceService name (DNS label: lower case, digits, ``-``).
        storage_uri: where the bundle (``kfgpu``) or the Triton model repository
            (``triton``) is: ``s3://``, ``gs://``, ``pvc://``, ``https://`` ...
        namespace: the namespace.
        runtime: ``kfgpu`` or ``triton``.
        deployment_mode: ``Serverless``, ``RawDeployment`` or ``Standard`` (= RawDeployment).
        gpus: GPUs per replica (``nvidia.com/gpu``); 0 serves on CPU.
        gpu_type: a GPU product for the node selector (``nvidia.com/gpu.product``).
        cpu: CPU request and limit per replica.
        memory: memory request and limit per replica.
        min_replicas: fewest replicas (0 scales to zero, Serverless only).
        max_replicas: most replicas.
        scale_metric: ``concurrency`` or ``rps`` (Serverless), ``cpu`` or ``memory``
            (RawDeployment); empty: ``concurrency`` / ``cpu``.
        scale_target: the autoscaler's target per replica for that metric (in-flight
            requests, requests/s, or % utilisation); 0 leaves KServe's default.
        canary_traffic_percent: send this share of traffic to the new model and the rest
            to the running one; None: all traffic to the new model.
        kserve_version: the cluster's KServe (decides the canary field in RawDeployment).
        service_account: the predictor's service account (storage credentials).
        image: the kfgpu runtime image, passed as the container image of the predictor
            (empty: the runtime's own CPU image, or ``kfgpu-serve-gpu`` when ``gpus`` > 0).
        max_batch_size: micro-batch size of the kfgpu predictor.
        max_wait_ms: micro-batch wait of the kfgpu predictor.
        precision: ``auto``, ``32`` or ``16`` for the kfgpu predictor.
        labels: extra labels on the InferenceService.
        auth_token_secret: a Secret in ``namespace`` whose ``token`` key is the bearer
            token the kfgpu predictor requires (``KFGPU_AUTH_TOKEN``); empty: no token.
        cluster_local: reachable from inside the cluster only (the mode's visibility label).
    """

    name: str
    storage_uri: str
    namespace: str = "kubeflow"
    runtime: Runtime = "kfgpu"
    deployment_mode: DeploymentMode = "Serverless"
    gpus: int = 0
    gpu_type: str = ""
    cpu: str = "1"
    memory: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 3
    scale_metric: str = ""
    scale_target: int = 0
    canary_traffic_percent: int | None = None
    kserve_version: str = "0.21"
    service_account: str = ""
    image: str = ""
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    precision: str = "auto"
    labels: Mapping[str, str] = field(default_factory=dict)
    auth_token_secret: str = ""
    cluster_local: bool = False

    def __post_init__(self) -> None:
        self._check_auth()
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"name={self.name!r} is not a valid InferenceService name; use lower-case "
                "letters, digits and '-', starting with a letter, at most 63 characters"
            )
        if not self.storage_uri:
            raise ConfigError("storage_uri is empty; point it at the bundle (s3://..., gs://...)")
        if self.runtime not in ("kfgpu", "triton"):
            raise ConfigError(f"runtime={self.runtime!r} is not supported; use 'kfgpu' or 'triton'")
        if self.deployment_mode not in ("Serverless", "RawDeployment", "Standard"):
            raise ConfigError(
                f"deployment_mode={self.deployment_mode!r} is not supported; use 'Serverless', "
                "'RawDeployment' or 'Standard'"
            )
        for key in ("gpus", "min_replicas", "max_replicas", "scale_target", "max_batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{key}={v!r} is invalid; use an integer >= 0")
        if self.max_replicas < max(1, self.min_replicas):
            raise ConfigError(
                f"max_replicas={self.max_replicas} is below min_replicas={self.min_replicas} "
                "(or 0); raise max_replicas"
            )
        serverless = self.mode == "Serverless"
        if self.min_replicas == 0 and not serverless:
            raise ConfigError(
                "min_replicas=0 (scale to zero) needs deployment_mode='Serverless'; "
                "RawDeployment keeps at least one replica"
            )
        allowed = _SERVERLESS_METRICS if serverless else _RAW_METRICS
        if self.scale_metric and self.scale_metric not in allowed:
            raise ConfigError(
                f"scale_metric={self.scale_metric!r} does not work in {self.mode} mode; use "
                + " or ".join(repr(m) for m in allowed)
                + (
                    " (concurrency and rps need Knative's autoscaler: Serverless)"
                    if not serverless
                    else " (cpu and memory scale RawDeployment's HPA)"
                )
            )
        pct = self.canary_traffic_percent
        if pct is not None:
            if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
                raise ConfigError(
                    f"canary_traffic_percent={pct!r} is invalid; use an integer 0..100, or "
                    "None for no canary"
                )
            if not serverless and _version(self.kserve_version) < SPEC_CANARY_SINCE:
                raise ConfigError(
                    f"canary_traffic_percent={pct} in RawDeployment mode on KServe "
                    f"{self.kserve_version}: that KServe ignores canaryTrafficPercent in this "
                    "mode without an error (kserve issue 5335), so the canary would silently "
                    "get all traffic. Use deployment_mode='Serverless', KServe >= 0.20 "
                    "(spec.canary; set kserve_version), or deploy without a canary."
                )
        _version(self.kserve_version)
        if self.precision not in ("auto", "32", "16"):
            raise ConfigError(f"precision={self.precision!r} is invalid; use 'auto', '32' or '16'")
        if self.precision == "16" and self.gpus == 0:
            raise ConfigError("precision='16' needs gpus >= 1; use 'auto' or '32' on CPU")

    def _check_auth(self) -> None:
        if self.auth_token_secret:
            if not _NAME.match(self.auth_token_secret.replace(".", "-")):
                raise ConfigError(
                    f"auth_token_secret={self.auth_token_secret!r} is not a valid Secret name; "
                    "use lower-case letters, digits, '-' and '.'"
                )
            if self.runtime != "kfgpu":
                raise ConfigError(
                    f"auth_token_secret with runtime={self.runtime!r}: only the kfgpu predictor "
                    "checks a bearer token; use runtime='kfgpu', or protect Triton with "
                    "cluster_local and the NetworkPolicy"
                )
        if not isinstance(self.cluster_local, bool):
            raise ConfigError(f"cluster_local={self.cluster_local!r} is invalid; use True or False")

    @property
    def mode(self) -> Literal["Serverless", "RawDeployment"]:
        """The annotation value: ``Standard`` is written as ``RawDeployment``."""
        return "Serverless" if self.deployment_mode == "Serverless" else "RawDeployment"

    @property
    def canary_name(self) -> str:
        """The canary predictor's name in RawDeployment mode: stable for one storage URI."""
        return "r" + hashlib.sha256(self.storage_uri.encode()).hexdigest()[:8]


def deployment_mode(obj: Mapping[str, Any]) -> Literal["Serverless", "RawDeployment"]:
    """An InferenceService's deployment mode from its annotation (default Serverless)."""
    value = (obj.get("metadata", {}).get("annotations") or {}).get(MODE_ANNOTATION, "Serverless")
    return "Serverless" if value == "Serverless" else "RawDeployment"


def _resources(cfg: ServiceConfig) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": cfg.cpu, "memory": cfg.memory}
    limits: dict[str, str] = {"cpu": cfg.cpu, "memory": cfg.memory}
    if cfg.gpus:
        requests[GPU_RESOURCE] = str(cfg.gpus)
        limits[GPU_RESOURCE] = str(cfg.gpus)
    return {"requests": requests, "limits": limits}


def _predictor(cfg: ServiceConfig) -> dict[str, Any]:
    model: dict[str, Any] = {"storageUri": cfg.storage_uri, "resources": _resources(cfg)}
    if cfg.runtime == "kfgpu":
        model.update(
            modelFormat={"name": KFGPU_MODEL_FORMAT, "version": "1"},
            runtime=KFGPU_RUNTIME,
            protocolVersion="v2",
            env=[
                {"name": "KFGPU_MAX_BATCH_SIZE", "value": str(cfg.max_batch_size)},
                {"name": "KFGPU_MAX_WAIT_MS", "value": str(cfg.max_wait_ms)},
                {"name": "KFGPU_PRECISION", "value": cfg.precision},
                {"name": "KFGPU_DEVICE", "value": "cuda" if cfg.gpus else "cpu"},
            ],
        )
        if cfg.auth_token_secret:
            model["env"].append(
                {
                    "name": "KFGPU_AUTH_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": cfg.auth_token_secret, "key": AUTH_TOKEN_KEY}
                    },
                }
            )
        # The runtime's image has CPU torch; with GPUs the predictor container runs the
        # CUDA build (images/serve-gpu). KServe merges this over the runtime's container.
        image = cfg.image or (SERVE_GPU_IMAGE if cfg.gpus else "")
        if image:
            model["image"] = image
    else:
        model.update(
            modelFormat={"name": "onnx", "version": "1"},
            runtime=TRITON_RUNTIME,
            protocolVersion="v2",
        )
    serverless = cfg.mode == "Serverless"
    predictor: dict[str, Any] = {
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "scaleMetric": cfg.scale_metric or ("concurrency" if serverless else "cpu"),
        "model": model,
    }
    if cfg.scale_target:
        predictor["scaleTarget"] = cfg.scale_target
    if cfg.service_account:
        predictor["serviceAccountName"] = cfg.service_account
    if cfg.gpus:
        predictor["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
        if cfg.gpu_type:
            predictor["nodeSelector"] = {GPU_PRODUCT_LABEL: cfg.gpu_type}
    return predictor


def build_inference_service(
    cfg: ServiceConfig, *, stable_predictor: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The InferenceService object (a plain dict, ready for the Kubernetes API).

    Args:
        cfg: the settings.
        stable_predictor: the running InferenceService's ``spec.predictor``. Needed for a
            canary in RawDeployment mode, where the running predictor stays in
            ``spec.predictor`` and the new one goes to ``spec.canary``.

    Raises:
        ConfigError: a RawDeployment canary without ``stable_predictor``.
    """
    predictor = _predictor(cfg)
    spec: dict[str, Any] = {"predictor": predictor}
    pct = cfg.canary_traffic_percent
    if pct is not None:
        if cfg.mode == "Serverless":
            predictor["canaryTrafficPercent"] = pct
        else:
            if not stable_predictor:
                raise ConfigError(
                    f"a RawDeployment canary of {cfg.name!r} needs the running predictor to "
                    "split traffic with; deploy without canary_traffic_percent first"
                )
            stable = dict(stable_predictor)
            if stable.get("name") == cfg.canary_name:
                raise ConfigError(
                    f"{cfg.name!r} already serves {cfg.storage_uri!r}; a canary of the same "
                    "model splits nothing: deploy a different storage_uri"
                )
            # KServe's CRD requires the container name on a canary's model (its
            # ModelSpec embeds a Container there); kserve-container is the runtime's.
            model = {"name": MODEL_CONTAINER, **predictor["model"]}
            spec = {
                "predictor": stable,
                "canary": [
                    {
                        "predictor": {"name": cfg.canary_name, **predictor, "model": model},
                        "trafficPercent": pct,
                    }
                ],
            }
    labels = {"app.kubernetes.io/managed-by": "kfgpu", **dict(cfg.labels)}
    if cfg.cluster_local:
        labels[_VISIBILITY_LABEL[cfg.mode]] = "cluster-local"
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": {MODE_ANNOTATION: cfg.mode},
        },
        "spec": spec,
    }


def build_serving_runtime(*, image: str = SERVE_IMAGE, cluster: bool = False) -> dict[str, Any]:
    """The ServingRuntime (or ClusterServingRuntime) that runs kfgpu bundles.

    ``manifests/serving/runtime.yaml`` is this object for the package's version (a test
    keeps the two equal). KServe's storage initializer puts the bundle at
    ``/mnt/models``; the container (entrypoint ``kfgpu``) serves it on 8080, V1 and V2.
    """
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime" if cluster else "ServingRuntime",
        "metadata": {
            "name": KFGPU_RUNTIME,
            "labels": {"app.kubernetes.io/managed-by": "kfgpu"},
        },
        "spec": {
            "supportedModelFormats": [
                {"name": KFGPU_MODEL_FORMAT, "version": "1", "autoSelect": True}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": MODEL_CONTAINER,
                    "image": image,
                    "args": [
                        "serve",
                        "/mnt/models",
                        "--host=0.0.0.0",
                        "--port=8080",
                        "--model-name={{.Name}}",
                    ],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    # Open routes (no token): ready only while the model is loaded.
                    "readinessProbe": {
                        "httpGet": {"path": "/v2/health/ready", "port": 8080},
                        "periodSeconds": 5,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/v2/health/live", "port": 8080},
                        "periodSeconds": 10,
                        "failureThreshold": 6,
                    },
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def export_onnx(bundle_path: str | Path, out_dir: str | Path, *, model_name: str = "model") -> Path:
    """Export the bundle's served module to ONNX as a Triton model repository.

    Writes ``out_dir/<model_name>/1/model.onnx`` and ``out_dir/<model_name>/config.pbtxt``
    (platform ``onnxruntime_onnx``; inputs ``numeric`` FP32 ``[-1, k]`` and ``codes``
    INT64 ``[-1, m]``: the transform's front half, see :meth:`FittedTransform.raw_arrays`;
    output ``output``: probabilities ``[-1, classes]`` or values ``[-1]``). The model is
    checked with ``onnx.checker`` and, when onnxruntime is installed, run on 16 rows and
    compared with torch (within 1e-4).

    Returns:
        ``out_dir`` (use it as the ``triton`` runtime's ``storage_uri`` once uploaded).

    Raises:
        BundleError: the export does not reproduce the torch module's outputs.
    """
    import numpy as np
    import onnx
    import torch

    from kfgpu.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    module = bundle.module.eval()
    k, m = len(bundle.transform.numeric), len(bundle.transform.code_inputs)
    gen = torch.Generator().manual_seed(0)
    num = torch.randn(16, k, generator=gen) * 3
    codes = torch.randint(0, 3, (16, m), generator=gen)
    out_root = Path(out_dir)
    target = out_root / model_name / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = torch.export.Dim("rows", min=1)
    with warnings.catch_warnings():
        # The exporter's own notices (a shared dynamic axis name, deprecations inside
        # torch.export) are not about this model.
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (num[:2], codes[:2]),
            input_names=["numeric", "codes"],
            output_names=["output"],
            dynamic_shapes=({0: rows}, {0: rows}),
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(target))
    onnx.checker.check_model(str(target))
    with torch.inference_mode():
        expected = module(num, codes).float().numpy()
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = session.run(None, {"numeric": num.numpy(), "codes": codes.numpy()})[0]
        if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
            raise BundleError(
                f"the ONNX export of {str(bundle_path)!r} does not reproduce the torch module "
                f"(max difference {float(np.max(np.abs(got - expected))):.3g}); serve it with "
                "the kfgpu runtime instead"
            )
    out_dims = "[ -1 ]" if expected.ndim == 1 else f"[ -1, {expected.shape[1]} ]"
    (out_root / model_name / "config.pbtxt").write_text(
        f'name: "{model_name}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        "input [\n"
        f'  {{ name: "numeric", data_type: TYPE_FP32, dims: [ -1, {k} ] }},\n'
        f'  {{ name: "codes", data_type: TYPE_INT64, dims: [ -1, {m} ] }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "output", data_type: TYPE_FP32, dims: {out_dims} }}\n'
        "]\n"
    )
    return out_root
