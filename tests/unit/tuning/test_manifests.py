"""manifests/postgres: valid Kubernetes objects that agree with the tuning pipeline."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3] / "manifests" / "postgres"


def test_postgres_manifests_are_valid_and_listed() -> None:
    import kubernetes_validate
    from kubernetes_validate import utils

    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in ROOT.glob("*.yaml")} - {"kustomization.yaml"}
    docs = {name: yaml.safe_load((ROOT / name).read_text()) for name in listed}
    for doc in docs.values():
        kubernetes_validate.validate(doc, utils.latest_version(), strict=True)
    # The Secret itself is generated from a git-ignored file (manifests/secrets); the
    # StatefulSet reads the one the tuning pipeline reads.
    from kfgpu.pipelines.tuning import STORAGE_SECRET

    container = docs["statefulset.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": STORAGE_SECRET}} in container["envFrom"]
    assert "secret.yaml" not in listed
