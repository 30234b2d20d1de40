"""manifests/: every object validates offline, and each overlay builds with kustomize.

Built-in kinds are validated with kubernetes-validate in strict mode (unknown fields fail)
against Kubernetes 1.30; custom resources (InferenceService, ServingRuntime, TrainJob,
PyTorchJob, MPIJob) against the operators' CRDs in ../shared/crds (tests/crds.py: schema
errors and fields the API server would prune; the envelopes in tests/data/crds where that
folder is absent). `kubectl kustomize` (or `kustomize build`) of each overlay must
succeed where either is installed, and its output validates the same way. No API server runs:
admission webhooks and defaulting are not exercised.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import crds

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
OVERLAYS = sorted(p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out.append((str(path.relative_to(ROOT)), doc))
    return out


def _errors(doc: dict[str, Any]) -> list[str]:
    """kubernetes-validate (strict) for built-in kinds; the real CRDs, schema errors and
    pruned fields, for custom resources (tests/crds.py)."""
    return crds.errors(doc)


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


# --- credentials: generated from git-ignored files, never committed ------------------------

SECRETS = MANIFESTS / "secrets"


def test_no_secret_with_values_is_committed() -> None:
    """No committed manifest carries a credential: Secrets come from manifests/secrets'
    generator over git-ignored files, or from `kubectl create secret`."""
    for path, doc in _documents():
        assert doc["kind"] != "Secret", f"{path}: a committed Secret"
    url_with_password = re.compile(r"://[^/\s:@]+:(?!__PASSWORD__@)[^/\s@]+@")
    for path in sorted([*MANIFESTS.rglob("*"), *(ROOT / "images").rglob("*")]):
        if path.is_file():
            text = path.read_text()
            assert "change-me" not in text, path
            assert not url_with_password.search(text), f"{path}: a URL with a password"
    for name in ("postgres.env", "storage.env", "gcloud-application-credentials.json"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(SECRETS / name)], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"manifests/secrets/{name} must be git-ignored"


def test_secret_generator_builds_the_secrets_the_pipelines_read(tmp_path: Path) -> None:
    import secrets as random_secrets

    import kubernetes_validate

    from kfgpu.kube.storage import S3_KEYS, STORAGE_SECRET
    from kfgpu.tuning.study import STORAGE_ENV

    command = _kustomize()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is on PATH")
    work = tmp_path / "secrets"
    shutil.copytree(SECRETS, work)
    password = random_secrets.token_hex(12)
    for example in work.glob("*.env.example"):
        text = example.read_text().replace("__PASSWORD__", password)
        text = re.sub(r"^(AWS_\w+)=$", rf"\1={random_secrets.token_hex(4)}", text, flags=re.M)
        example.with_suffix("").write_text(text)
    result = subprocess.run(
        [*command, str(work)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout) if d}
    from kfgpu.ops.platform import STUDY_STORAGE_SECRET

    assert set(docs) == {STUDY_STORAGE_SECRET, STORAGE_SECRET}  # no hash suffix
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.30", strict=True)
    postgres = {
        k: base64.b64decode(v).decode() for k, v in docs[STUDY_STORAGE_SECRET]["data"].items()
    }
    assert postgres["POSTGRES_PASSWORD"] == password
    assert postgres["url"] == f"postgresql+psycopg://optuna:{password}@optuna-postgres:5432/optuna"
    assert STORAGE_ENV == "KFGPU_TUNING_STORAGE"
    assert set(docs[STORAGE_SECRET]["data"]) <= set(S3_KEYS)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(docs[STORAGE_SECRET]["data"])
