"""Custom resources checked the way a Kubernetes API server checks them, offline.

The CRDs come from ``../shared/crds`` beside the repository (the upstream files, verbatim; CI
has the folder) and, where that folder is absent, from the hand-written envelopes in
``tests/data/crds``. For an object, :func:`schema_errors` validates it with ``jsonschema``
against ``spec.versions[name=VERSION].schema.openAPIV3Schema`` of the CRD for its
``apiVersion`` and ``kind``, and :func:`pruned_fields` lists the fields the API server would
drop without a word: a property that the schema does not declare, outside
``x-kubernetes-preserve-unknown-fields`` (the upstream schemas are open, so an unknown or
misspelt field passes ``jsonschema`` and is then pruned on admission). An object is accepted
when both lists are empty. Built-in kinds (Deployment, ServiceAccount, ...) are validated with
``kubernetes-validate`` in strict mode instead: see :func:`errors`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_CRDS = ROOT.parent / "shared" / "crds"
ENVELOPE_CRDS = ROOT / "tests" / "data" / "crds"
K8S_VERSION = "1.30.0"
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"
#: The kinds kfgpu renders; each must have a CRD in the folder in use.
KINDS = ("InferenceService", "ServingRuntime", "TrainJob", "PyTorchJob", "MPIJob")


def crd_dir() -> Path:
    """The upstream CRDs when ``../shared/crds`` exists, else the envelopes."""
    return SHARED_CRDS if SHARED_CRDS.is_dir() else ENVELOPE_CRDS


def using_upstream() -> bool:
    """Whether the upstream CRDs (not the envelopes) are in use."""
    return crd_dir() == SHARED_CRDS


@dataclass(frozen=True)
class Crd:
    """One served version of a CRD: its file, schema and a compiled validator."""

    path: Path
    api_version: str
    kind: str
    schema: dict[str, Any]
    validator: Any


def _load_yaml(path: Path) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)  # a safe loader


@functools.cache
def _registry() -> Any:
    import kubernetes_validate
    from referencing import Registry, Resource

    defs = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{K8S_VERSION}-local-strict"
        / "_definitions.json"
    )
    # The envelopes $ref embedded Kubernetes types here; the upstream files have no $ref.
    return Registry().with_resource(K8S_DEFS, Resource.from_contents(json.loads(defs.read_text())))


def crds(directory: Path | None = None) -> dict[tuple[str, str], Crd]:
    """Every served version of every CRD in ``directory`` (default :func:`crd_dir`), by
    ``(apiVersion, kind)``."""
    return _crds(directory or crd_dir())


@functools.cache
def _crds(directory: Path) -> dict[tuple[str, str], Crd]:
    import jsonschema

    out: dict[tuple[str, str], Crd] = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = _load_yaml(path)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = dict(version["schema"]["openAPIV3Schema"])
            schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
            # No check_schema: the files are the operators' own, and checking the 2 MB
            # InferenceService schema takes longer than every validation here together.
            cls = jsonschema.validators.validator_for(schema)
            api_version = f"{group}/{version['name']}"
            out[(api_version, kind)] = Crd(
                path, api_version, kind, schema, cls(schema, registry=_registry())
            )
    return out


def crd_for(obj: dict[str, Any], directory: Path | None = None) -> Crd:
    """The CRD version that serves ``obj``; fails naming what is missing."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    found = crds(directory)
    assert key in found, f"no CRD for {key} in {directory or crd_dir()} (has {sorted(found)})"
    return found[key]


def schema_errors(obj: dict[str, Any], directory: Path | None = None) -> list[str]:
    """``jsonschema`` errors of ``obj`` against its CRD, as ``path: message`` lines."""
    crd = crd_for(obj, directory)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in crd.validator.iter_errors(obj)
    ]


def pruned_fields(obj: dict[str, Any], directory: Path | None = None) -> list[str]:
    """The paths of the fields an API server would prune from ``obj`` (empty: none)."""
    crd = crd_for(obj, directory)
    out: list[str] = []
    _prune_walk(obj, crd.schema, "", out, root=True)
    return out


def _prune_walk(
    value: Any, schema: dict[str, Any], path: str, out: list[str], *, root: bool
) -> None:
    if "$ref" in schema or "allOf" in schema or schema.get("x-kubernetes-int-or-string"):
        return  # envelopes: closed ($ref'd) types, checked by jsonschema instead
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _prune_walk(item, items, f"{path}[{i}]", out, root=False)
        return
    if not isinstance(value, dict):
        return
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    props: dict[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    # apiVersion, kind and metadata are the API machinery's at the root and in embedded
    # resources; the metadata there is pruned to ObjectMeta by other code, not the schema.
    implicit = (
        {"apiVersion", "kind", "metadata"}
        if root or schema.get("x-kubernetes-embedded-resource")
        else set()
    )
    for key, sub in value.items():
        where = f"{path}.{key}" if path else key
        if key in implicit:
            continue
        if key in props:
            _prune_walk(sub, props[key], where, out, root=False)
        elif isinstance(extra, dict):
            _prune_walk(sub, extra, where, out, root=False)
        elif preserve or extra is True:
            continue
        else:
            out.append(where)


def errors(obj: dict[str, Any], directory: Path | None = None) -> list[str]:
    """Everything an API server would refuse or silently drop in ``obj``.

    Custom resources (``*.kserve.io``, ``*.kubeflow.org``): schema errors and pruned fields
    against ``directory`` (default :func:`crd_dir`). Built-in kinds: ``kubernetes-validate`` in strict mode.
    """
    import kubernetes_validate

    api_version = obj.get("apiVersion", "")
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group.endswith(("kserve.io", "kubeflow.org")):
        pruned = pruned_fields(obj, directory)
        return schema_errors(obj, directory) + [f"{p}: would be pruned" for p in pruned]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e)]
    return []
