"""kfgpu doctor against local stand-ins of the Kubernetes and KFP APIs (real clients)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from kfgpu.ops.client import Connection, connect
from kfgpu.ops.doctor import run_checks
from tests.kube_api import kube_api
from tests.unit.ops.kfp_standin import KfpState

CRD_PREFIX = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
ALL_CRDS = (
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "trainjobs.trainer.kubeflow.org",
    "mpijobs.kubeflow.org",
)


def _crd(name: str) -> dict[str, Any]:
    plural, group = name.split(".", 1)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "names": {"kind": plural.title(), "plural": plural},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


def _node(name: str, gpus: int, product: str = "", tainted: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if product:
        labels["nvidia.com/gpu.product"] = product
    node: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi"}},
    }
    if gpus:
        node["status"]["allocatable"]["nvidia.com/gpu"] = str(gpus)
    if tainted:
        node["spec"]["taints"] = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    return node


@contextmanager
def kube(
    crds: tuple[str, ...] = ALL_CRDS,
    nodes: list[dict[str, Any]] | None = None,
    default_class: bool = True,
    service_accounts: tuple[str, ...] = ("kfgpu-pipeline-runner",),
) -> Iterator[Any]:
    nodes = (
        nodes
        if nodes is not None
        else [_node("cpu-1", 0), _node("gpu-1", 8, "NVIDIA-H100-80GB-HBM3", True)]
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            missing = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            }
            if path == "/api/v1/nodes":
                return self._send(
                    200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": nodes}
                )
            if path.startswith(CRD_PREFIX):
                name = path.removeprefix(CRD_PREFIX)
                return self._send(200, _crd(name)) if name in crds else self._send(404, missing)
            if path == "/apis/storage.k8s.io/v1/storageclasses":
                annotations = (
                    {"storageclass.kubernetes.io/is-default-class": "true"} if default_class else {}
                )
                item = {
                    "metadata": {"name": "standard", "annotations": annotations},
                    "provisioner": "x",
                }
                return self._send(
                    200,
                    {
                        "kind": "StorageClassList",
                        "apiVersion": "storage.k8s.io/v1",
                        "metadata": {},
                        "items": [item],
                    },
                )
            if path.startswith("/api/v1/namespaces/") and "/serviceaccounts/" in path:
                name = path.rsplit("/", 1)[1]
                if name in service_accounts:
                    return self._send(
                        200,
                        {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": name}},
                    )
                return self._send(404, missing)
            return self._send(404, missing)

    with kube_api(Handler) as api:
        yield api


def _status(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_everything_present_passes(kfp_server: tuple[str, KfpState]) -> None:
    url, _ = kfp_server
    with kube() as api:
        checks = run_checks(
            api_client=api,
            kfp_client=lambda: connect(Connection(host=url)),
            host=url,
            namespace="team-a",
            gpus=8,
            gpu_type="NVIDIA-H100-80GB-HBM3",
        )
    assert _status(checks) == {
        "kfp": "PASS",
        "kubernetes": "PASS",
        "kserve": "PASS",
        "servingruntime": "PASS",
        "trainer": "PASS",
        "mpijob": "PASS",
        "gpus": "PASS",
        "gpu taints": "WARN",
        "storage": "PASS",
        "rbac": "PASS",
    }
    gpus = next(c for c in checks if c.name == "gpus")
    assert "1 nodes fit 8 x NVIDIA-H100-80GB-HBM3" in gpus.message


def test_missing_pieces_fail_with_a_fix() -> None:
    nodes = [_node("gpu-1", 4, "NVIDIA-A100-SXM4-40GB")]
    with kube(
        crds=("mpijobs.kubeflow.org",), nodes=nodes, default_class=False, service_accounts=()
    ) as api:
        checks = run_checks(
            api_client=api,
            kfp_client=None,
            namespace="team-a",
            gpus=8,
            gpu_type="NVIDIA-H100-80GB-HBM3",
        )
    by_name = {c.name: c for c in checks}
    assert _status(checks) == {
        "kfp": "FAIL",
        "kubernetes": "PASS",
        "kserve": "FAIL",
        "servingruntime": "WARN",
        "trainer": "FAIL",
        "mpijob": "PASS",
        "gpus": "FAIL",
        "storage": "FAIL",
        "rbac": "WARN",
    }
    assert "install KServe" in by_name["kserve"].fix
    assert (
        "trainjobs.trainer.kubeflow.org or pytorchjobs.kubeflow.org" in by_name["trainer"].message
    )
    assert "found NVIDIA-A100-SXM4-40GB: 1 nodes, 4 GPUs" in by_name["gpus"].message
    assert "is-default-class" in by_name["storage"].fix
    assert "FAIL  kserve" in by_name["kserve"].line() and "fix:" in by_name["kserve"].line()


def test_multi_user_without_namespace_fails(kfp_server: tuple[str, KfpState]) -> None:
    url, state = kfp_server
    state.multi_user = True
    with kube() as api:
        checks = run_checks(
            api_client=api, kfp_client=lambda: connect(Connection(host=url)), host=url, gpus=0
        )
    kfp_check = checks[0]
    assert kfp_check.status == "FAIL" and "--namespace" in kfp_check.fix
    assert _status(checks)["gpus"] == "PASS"


def test_cli_exits_nonzero_and_names_the_failed_checks(
    kfp_server: tuple[str, KfpState],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kfgpu.cli import main

    url, _ = kfp_server
    with kube(crds=()) as api:
        monkeypatch.setattr("kfgpu.kube.launcher.default_api_client", lambda: api)
        code = main(["doctor", "--host", url, "--gpus", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "PASS  kfp" in captured.out and "FAIL  kserve" in captured.out
    assert "required check(s) failed: kserve, trainer" in captured.err
