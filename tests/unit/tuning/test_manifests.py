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
    from kfgpu.pipelines.tuning import STORAGE_SECRET

    secret = docs["secret.yaml"]
    assert secret["metadata"]["name"] == STORAGE_SECRET
    assert secret["stringData"]["url"].startswith("postgresql+psycopg://")
    service = docs["service.yaml"]["metadata"]["name"]
    assert f"@{service}:5432/" in secret["stringData"]["url"]
