"""``kfgpu doctor``: check what a run on the cluster will need, and say plainly what is missing.

Each check gives one line, ``PASS``, ``WARN`` or ``FAIL``, and for anything not passing the fix.
Required (``FAIL``): the KFP API answers, the Kubernetes API answers, KServe's
InferenceService CRD, a training CRD (Kubeflow Trainer's TrainJob or Training Operator's
PyTorchJob), allocatable GPUs of the asked product, and a default StorageClass. Advisory
(``WARN``): MPIJob (only Horovod needs it), KServe's ServingRuntime CRD, GPU node taints, and
the pipeline runner's service account from ``manifests/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kfgpu.errors import KfgpuError

__all__ = ["GPU_PRODUCT_LABEL", "GPU_RESOURCE", "RUNNER_SERVICE_ACCOUNT", "Check", "run_checks"]

GPU_RESOURCE = "nvidia.com/gpu"
#: Set on every GPU node by NVIDIA's GPU feature discovery (GPU Operator).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: The service account manifests/base creates for pipeline runs.
RUNNER_SERVICE_ACCOUNT = "kfgpu-pipeline-runner"

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    """One check's outcome."""

    name: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<16} {self.message}"
        return text + (f"\n      fix: {self.fix}" if self.fix and self.status != "PASS" else "")


def _kfp_check(kfp_client: Callable[[], Any] | None, host: str, namespace: str) -> Check:
    from kfgpu.ops.client import api_call

    if kfp_client is None:
        return Check(
            "kfp",
            "FAIL",
            "no KFP endpoint given",
            "pass --host URL or set KFGPU_KFP_HOST or KF_PIPELINES_ENDPOINT",
        )
    try:
        client = kfp_client()
        # kfp.Client's public generated API (``client.<service>s``), not its private
        # ``_healthz_api``: HealthzServiceApi becomes ``client.healthzs``.
        health = api_call("read healthz", client.healthzs.healthz_service_get_healthz)
    except KfgpuError as e:
        return Check(
            "kfp",
            "FAIL",
            f"the KFP API at {host or 'the in-cluster service'} did not answer: {e}",
            "check --host (e.g. kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80 "
            "and --host http://localhost:8080) and the credentials (--token, --token-path)",
        )
    multi = bool(health.multi_user)
    if multi and not namespace:
        return Check(
            "kfp",
            "FAIL",
            f"reachable at {host or 'the in-cluster service'}; multi-user deployment but no "
            "namespace given",
            "pass --namespace <your profile namespace> or set KFGPU_KFP_NAMESPACE",
        )
    mode = f"multi-user, namespace {namespace}" if multi else "single-user"
    return Check("kfp", "PASS", f"reachable at {host or 'the in-cluster service'} ({mode})")


def _crd(ext: Any, name: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        ext.read_custom_resource_definition(name)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _quantity(value: Any) -> int:
    text = str(value or "0")
    return int(text) if text.isdigit() else 0


def run_checks(
    *,
    api_client: Any = None,
    kfp_client: Callable[[], Any] | None = None,
    host: str = "",
    namespace: str = "",
    gpus: int = 1,
    gpu_type: str = "",
) -> list[Check]:
    """Run every check and return them in order (none raises).

    Args:
        api_client: a ``kubernetes.client.ApiClient``; ``None`` loads the in-cluster
            configuration, else the kubeconfig.
        kfp_client: builds the ``kfp.Client`` (called once); ``None`` when no endpoint is set.
        namespace: the namespace runs go to (multi-user profile namespace).
        gpus: GPUs one task asks for (on one node); 0 skips the GPU check.
        gpu_type: the GPU product (``nvidia.com/gpu.product`` label, e.g.
            ``NVIDIA-H100-80GB-HBM3``); empty: any product.
    """
    checks = [_kfp_check(kfp_client, host, namespace)]
    try:
        from kubernetes import client

        if api_client is None:
            from kfgpu.kube.launcher import default_api_client

            api_client = default_api_client()
        core = client.CoreV1Api(api_client)
        nodes = core.list_node().items
    except Exception as e:  # any failure here means: no usable Kubernetes API
        checks.append(
            Check(
                "kubernetes",
                "FAIL",
                f"the Kubernetes API did not answer: {' '.join(str(e).split())[:200]}",
                "set KUBECONFIG (or run in a pod with a service account allowed to list nodes, "
                "CRDs and storage classes)",
            )
        )
        return checks
    checks.append(Check("kubernetes", "PASS", f"reachable; {len(nodes)} nodes"))
    ext = client.ApiextensionsV1Api(api_client)

    def crd_check(label: str, names: list[str], required: bool, fix: str, purpose: str) -> None:
        present = [n for n in names if _crd(ext, n)]
        if present:
            checks.append(Check(label, "PASS", f"CRD {', '.join(present)} present ({purpose})"))
        else:
            checks.append(
                Check(
                    label,
                    "FAIL" if required else "WARN",
                    f"CRD {' or '.join(names)} not found: {purpose} will not work",
                    fix,
                )
            )

    try:
        crd_check(
            "kserve",
            ["inferenceservices.serving.kserve.io"],
            True,
            "install KServe (https://kserve.github.io/website/ , Kubeflow ships it)",
            "deploy_model and `kfgpu deploy`",
        )
        crd_check(
            "servingruntime",
            ["servingruntimes.serving.kserve.io"],
            False,
            "install KServe 0.11 or later",
            "the kfgpu-bundle ServingRuntime",
        )
        crd_check(
            "trainer",
            ["trainjobs.trainer.kubeflow.org", "pytorchjobs.kubeflow.org"],
            True,
            "install Kubeflow Trainer v2 (TrainJob) or Training Operator v1 (PyTorchJob)",
            "multi-node training (launch_training)",
        )
        crd_check(
            "mpijob",
            ["mpijobs.kubeflow.org"],
            False,
            "install the MPI Operator (only Horovod training needs it)",
            "Horovod training",
        )
    except Exception as e:
        checks.append(
            Check(
                "crds",
                "FAIL",
                f"cannot read CRDs: {' '.join(str(e).split())[:200]}",
                "allow get on customresourcedefinitions.apiextensions.k8s.io",
            )
        )
    checks += _gpu_checks(nodes, gpus, gpu_type)
    checks.append(_storage_check(client.StorageV1Api(api_client)))
    if namespace:
        checks.append(_runner_check(core, namespace))
    return checks


def _gpu_checks(nodes: list[Any], gpus: int, gpu_type: str) -> list[Check]:
    if gpus <= 0:
        return [Check("gpus", "PASS", "no GPUs asked for (--gpus 0)")]
    per_product: dict[str, list[int]] = {}
    tainted = 0
    for node in nodes:
        count = _quantity((node.status.allocatable or {}).get(GPU_RESOURCE))
        if count <= 0:
            continue
        product = (node.metadata.labels or {}).get(GPU_PRODUCT_LABEL, "(no product label)")
        per_product.setdefault(product, []).append(count)
        if any(t.key == GPU_RESOURCE for t in (node.spec.taints or [])):
            tainted += 1
    seen = ", ".join(
        f"{p}: {len(c)} nodes, {sum(c)} GPUs (max {max(c)}/node)"
        for p, c in sorted(per_product.items())
    )
    wanted = gpu_type or "any product"
    candidates = (
        per_product.get(gpu_type, [])
        if gpu_type
        else [c for counts in per_product.values() for c in counts]
    )
    out: list[Check] = []
    if not per_product:
        out.append(
            Check(
                "gpus",
                "FAIL",
                f"no node has allocatable {GPU_RESOURCE}",
                "install the NVIDIA GPU Operator (device plugin) on GPU nodes, or run with "
                "accelerator=cpu",
            )
        )
    elif not any(c >= gpus for c in candidates):
        out.append(
            Check(
                "gpus",
                "FAIL",
                f"no node has {gpus} allocatable {GPU_RESOURCE} of {wanted}; found {seen}",
                f"ask for a product and count that exists (--gpu-type, --gpus; the label is "
                f"{GPU_PRODUCT_LABEL}) or add such nodes",
            )
        )
    else:
        fits = sum(c >= gpus for c in candidates)
        out.append(Check("gpus", "PASS", f"{fits} nodes fit {gpus} x {wanted}; {seen}"))
    if tainted:
        out.append(
            Check(
                "gpu taints",
                "WARN",
                f"{tainted} GPU nodes are tainted {GPU_RESOURCE}",
                "give GPU tasks the toleration (kfgpu.ops.platform.PlatformConfig's default "
                f"tolerates {GPU_RESOURCE}:NoSchedule)",
            )
        )
    return out


def _storage_check(storage: Any) -> Check:
    try:
        classes = storage.list_storage_class().items
    except Exception as e:
        return Check(
            "storage", "FAIL", f"cannot list storage classes: {e}", "allow list on storageclasses"
        )
    default = [
        c.metadata.name
        for c in classes
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    if default:
        return Check("storage", "PASS", f"default StorageClass {default[0]}")
    names = ", ".join(c.metadata.name for c in classes) or "none"
    return Check(
        "storage",
        "FAIL",
        f"no default StorageClass (classes: {names}): PVCs of PostgreSQL, MLflow and KFP "
        "artifacts stay Pending",
        "mark one default: kubectl patch storageclass NAME -p "
        '\'{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}\'',
    )


def _runner_check(core: Any, namespace: str) -> Check:
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_service_account(RUNNER_SERVICE_ACCOUNT, namespace)
    except ApiException as e:
        if e.status != 404:
            return Check("rbac", "WARN", f"cannot read service accounts in {namespace}: {e.reason}")
        return Check(
            "rbac",
            "WARN",
            f"service account {RUNNER_SERVICE_ACCOUNT} not found in {namespace}: steps that "
            "create InferenceServices or training jobs will be forbidden",
            f"kubectl apply -k manifests/overlays/gpu-prod -n {namespace}",
        )
    return Check("rbac", "PASS", f"service account {RUNNER_SERVICE_ACCOUNT} in {namespace}")
