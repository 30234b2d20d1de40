"""Upload a pipeline and a content-named version to Kubeflow Pipelines, idempotently.

The pipeline is named by its ``@dsl.pipeline(name=...)`` (``kfgpu-training``); a version is
named ``<kfgpu version>-<first 12 hex of the package's sha256>``. Compiling is deterministic,
so the same code gives the same version name: uploading twice finds the version and creates
nothing, and changed code (or a changed kfp) gives a new version beside the old ones.

Which pipeline a name means (``training`` is compiled from this checkout) is
:func:`kfgpu.compile.compiled`'s business; this module starts from a compiled package, or,
for a run started from inside a pod (the retraining trigger), from what is already uploaded
(:func:`find_uploaded`).

The pipeline is created on its own (``POST /apis/v2beta1/pipelines``) and the package uploaded
as a version of it (``POST /apis/v2beta1/pipelines/upload_version``), rather than through
``upload_pipeline``, which would also add a first version named after the pipeline: every
version kfgpu makes is content-named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kfgpu._version import __version__
from kfgpu.errors import ConfigError, OpsError
from kfgpu.ops.client import api_call

__all__ = [
    "CompiledPipeline",
    "UploadResult",
    "UploadedPipeline",
    "find_pipeline",
    "find_uploaded",
    "find_version",
    "latest_version",
    "read_package",
    "upload",
    "version_name",
]


@dataclass(frozen=True)
class CompiledPipeline:
    """A compiled pipeline package on disk and what identifies it."""

    path: Path
    name: str
    description: str
    sha256: str
    parameters: dict[str, dict[str, Any]]

    @property
    def version_name(self) -> str:
        return version_name(self.sha256)


def version_name(sha256: str) -> str:
    """``<kfgpu version>-<sha256[:12]>``: the name of the version holding this content."""
    return f"{__version__}-{sha256[:12]}"


def read_package(path: Path) -> CompiledPipeline:
    """What identifies the compiled pipeline package at ``path``.

    Raises:
        ConfigError: the file is not a compiled KFP pipeline.
    """
    content = path.read_bytes()
    try:
        docs = list(yaml.safe_load_all(content))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not a compiled pipeline (YAML error: {e})") from e
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise ConfigError(
            f"{path} is not a compiled KFP pipeline (no pipelineInfo/root); compile one with "
            "`kfgpu compile` or name a pipeline kfgpu knows"
        )
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {}) or {}
    return CompiledPipeline(
        path=path,
        name=spec["pipelineInfo"]["name"],
        description=str(spec["pipelineInfo"].get("description", "")),
        sha256=hashlib.sha256(content).hexdigest(),
        parameters=params,
    )


def _filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


def find_pipeline(client: Any, name: str, namespace: str = "") -> str | None:
    """The ID of the pipeline called ``name`` (in ``namespace``, when given), or ``None``."""
    response = api_call(
        f"list pipelines named {name!r}",
        client.list_pipelines,
        filter=_filter("display_name", name),
        namespace=namespace or None,
        page_size=2,
    )
    found = [p for p in (response.pipelines or []) if p.display_name == name]
    if len(found) > 1:
        raise OpsError(
            f"{len(found)} pipelines are named {name!r}; delete the extra ones in the KFP UI"
        )
    return found[0].pipeline_id if found else None


def find_version(client: Any, pipeline_id: str, name: str) -> str | None:
    """The ID of the version called ``name`` of ``pipeline_id``, or ``None``."""
    response = api_call(
        f"list versions named {name!r}",
        client.list_pipeline_versions,
        pipeline_id=pipeline_id,
        filter=_filter("display_name", name),
        page_size=2,
    )
    found = [v for v in (response.pipeline_versions or []) if v.display_name == name]
    return found[0].pipeline_version_id if found else None


def latest_version(client: Any, pipeline_id: str) -> tuple[str, str] | None:
    """``(id, name)`` of the newest version of ``pipeline_id``, or ``None``."""
    newest = _newest(client, pipeline_id)
    return (newest.pipeline_version_id, newest.display_name) if newest is not None else None


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload` found or made."""

    pipeline_name: str
    pipeline_id: str
    version_name: str
    version_id: str
    created_pipeline: bool
    created_version: bool

    def summary(self) -> str:
        if not self.created_version:
            return (
                f"pipeline {self.pipeline_name!r} version {self.version_name!r} is already "
                f"uploaded (id {self.version_id}); nothing to do"
            )
        what = "created pipeline and version" if self.created_pipeline else "uploaded version"
        return (
            f"{what} {self.pipeline_name!r} / {self.version_name!r} "
            f"(pipeline {self.pipeline_id}, version {self.version_id})"
        )


def upload(client: Any, package: CompiledPipeline, *, namespace: str = "") -> UploadResult:
    """Make sure ``package`` exists on the server as a version named by its content.

    Creates the pipeline if no pipeline has its name, then the version if no version has
    its content name; otherwise does nothing and says so.
    """
    import kfp_server_api

    created_pipeline = False
    pipeline_id = find_pipeline(client, package.name, namespace)
    if pipeline_id is None:
        body = kfp_server_api.V2beta1Pipeline(
            display_name=package.name,
            description=package.description or None,
            namespace=namespace or None,
        )
        made = api_call(
            f"create pipeline {package.name!r}",
            client.pipelines.pipeline_service_create_pipeline,
            pipeline=body,
        )
        pipeline_id, created_pipeline = made.pipeline_id, True
    version_id = (
        None if created_pipeline else find_version(client, pipeline_id, package.version_name)
    )
    if version_id is not None:
        return UploadResult(
            package.name, pipeline_id, package.version_name, version_id, False, False
        )
    made_version = api_call(
        f"upload version {package.version_name!r} of {package.name!r}",
        client.upload_pipeline_version,
        pipeline_package_path=str(package.path),
        pipeline_version_name=package.version_name,
        pipeline_id=pipeline_id,
        description=f"kfgpu {__version__}, package sha256 {package.sha256}",
    )
    return UploadResult(
        package.name,
        pipeline_id,
        package.version_name,
        made_version.pipeline_version_id,
        created_pipeline,
        True,
    )


@dataclass(frozen=True)
class UploadedPipeline:
    """The newest version of an uploaded pipeline, and its parameters (from its spec)."""

    name: str
    pipeline_id: str
    version_id: str
    version_name: str
    parameters: dict[str, dict[str, Any]]


def find_uploaded(client: Any, pipeline: str, namespace: str = "") -> UploadedPipeline:
    """The newest version of the uploaded pipeline ``pipeline``.

    ``pipeline`` is the uploaded pipeline's name (``kfgpu-training``; kfgpu's short names,
    ``training``, mean ``kfgpu-training`` when no pipeline has the short name itself) or its
    ID. Nothing is compiled: the trigger inside a pod starts what ``kfgpu upload`` put there.

    Raises:
        OpsError: no such pipeline, or it has no version.
    """
    candidates = [pipeline] if pipeline.startswith("kfgpu-") else [pipeline, f"kfgpu-{pipeline}"]
    pipeline_id = name = None
    for candidate in candidates:
        pipeline_id = find_pipeline(client, candidate, namespace)
        if pipeline_id is not None:
            name = candidate
            break
    if pipeline_id is None:
        # Perhaps an ID: listing its versions answers 404 when it is not one.
        from kfgpu.errors import KfpApiError

        try:
            newest = _newest(client, pipeline)
        except KfpApiError as e:
            if e.status not in (400, 404):
                raise
            newest = None
        if newest is None:
            raise OpsError(
                f"pipeline={pipeline!r}: no uploaded pipeline has that name"
                + (f" (nor {candidates[1]!r})" if len(candidates) > 1 else "")
                + f" or ID; upload it first with `kfgpu upload {pipeline}`"
            )
        pipeline_id, name = pipeline, pipeline
    else:
        newest = _newest(client, pipeline_id)
        if newest is None:
            raise OpsError(
                f"pipeline {name!r} ({pipeline_id}) has no version; upload one with `kfgpu upload`"
            )
    spec = newest.pipeline_spec or {}
    root = spec.get("root", {}) if isinstance(spec, dict) else {}
    params = root.get("inputDefinitions", {}).get("parameters", {}) or {}
    return UploadedPipeline(
        name=str(name),
        pipeline_id=str(pipeline_id),
        version_id=str(newest.pipeline_version_id),
        version_name=str(newest.display_name),
        parameters=params,
    )


def _newest(client: Any, pipeline_id: str) -> Any:
    response = api_call(
        "list pipeline versions",
        client.list_pipeline_versions,
        pipeline_id=pipeline_id,
        sort_by="created_at desc",
        page_size=1,
    )
    versions = response.pipeline_versions or []
    return versions[0] if versions else None
