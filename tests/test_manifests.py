"""manifests/: every object validates offline, and each overlay builds with kustomize.

Built-in kinds are validated with kubernetes-validate in strict mode (unknown fields fail)
against Kubernetes 1.30; custom resources (InferenceService, ServingRuntime, TrainJob,
PyTorchJob, MPIJob) against the CRD schemas in tests/data/crds (hand-written envelopes of the
upstream CRDs, see the README there), with the Kubernetes core types they embed resolved from
the same strict 1.30 schema. `kubectl kustomize` (or `kustomize build`) of each overlay must
succeed where either is installed, and its output validates the same way. No API server runs:
admission webhooks and defaulting are not exercised.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
CRDS = ROOT / "tests" / "data" / "crds"
K8S_VERSION = "1.30.0"
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"
OVERLAYS = sorted(p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out.append((str(path.relative_to(ROOT)), doc))
    return out


@functools.cache
def _crd_validators() -> dict[tuple[str, str], Any]:
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    defs_path = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{K8S_VERSION}-local-strict"
        / "_definitions.json"
    )
    registry = Registry().with_resource(
        K8S_DEFS, Resource.from_contents(json.loads(defs_path.read_text()))
    )
    out = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        version = crd["spec"]["versions"][0]
        schema = dict(version["schema"]["openAPIV3Schema"])
        schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        api_version = f"{crd['spec']['group']}/{version['name']}"
        out[(api_version, crd["spec"]["names"]["kind"])] = cls(schema, registry=registry)
    return out


def _errors(doc: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    group = key[0].split("/")[0] if "/" in key[0] else ""
    if group.endswith(("kserve.io", "kubeflow.org")):
        validators = _crd_validators()
        assert key in validators, f"no CRD schema for {key} in tests/data/crds"
        return [f"{list(e.absolute_path)}: {e.message}" for e in validators[key].iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e)]
    return []


@pytest.mark.parametrize(
    ("path", "doc"),
    _documents(),
    ids=lambda v: v if isinstance(v, str) else v.get("metadata", {}).get("name", "?"),
)
def test_every_manifest_validates(path: str, doc: dict[str, Any]) -> None:
    assert _errors(doc) == [], f"{path}: {doc['kind']} {doc['metadata'].get('name')}"


def test_every_yaml_is_listed_by_its_kustomization() -> None:
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
        for resource in listed:
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert {"../postgres", "../serving"} <= set(base["resources"])
    here = {p.name for p in (MANIFESTS / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert here == set(base["resources"]) - {"../postgres", "../serving"}


def test_runner_rbac_allows_what_the_steps_create() -> None:
    docs = list(yaml.safe_load_all((MANIFESTS / "base" / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    allowed = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for key in (
        ("serving.kserve.io", "inferenceservices"),
        ("trainer.kubeflow.org", "trainjobs"),
        ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "mpijobs"),
    ):
        assert {"create", "get", "list", "watch", "patch", "delete"} <= allowed[key], key
    assert "get" in allowed[("", "pods/log")]
    from kfgpu.ops.doctor import RUNNER_SERVICE_ACCOUNT

    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT} in binding["subjects"]


def test_example_inference_service_uses_the_kfgpu_runtime() -> None:
    isvc = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())
    runtime_path = MANIFESTS / "serving" / "runtime.yaml"
    if not runtime_path.is_file():
        pytest.skip("manifests/serving (the serving work) is not in this checkout yet")
    runtime = yaml.safe_load(runtime_path.read_text())
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] in formats


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates(overlay: str) -> None:
    command = _kustomize()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is on PATH")
    result = subprocess.run(
        [*command, str(MANIFESTS / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "InferenceService",
        "StatefulSet",
    } <= kinds
    for doc in docs:
        assert _errors(doc) == [], f"{overlay}: {doc['kind']} {doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["kfgpu.dev/environment"] == overlay


def test_overlays_exist() -> None:
    assert OVERLAYS == ["cpu-dev", "gpu-prod"]


def test_validation_catches_a_misspelt_field() -> None:
    isvc = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())
    isvc["spec"]["predictor"]["minReplica"] = 1
    assert _errors(isvc)
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "secret": []}
    assert _errors(sa)
