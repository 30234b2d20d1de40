"""Compile components and pipelines into the files a Kubeflow user consumes without Python.

``components/<name>/component.yaml`` plus a README generated from the component's
docstring, and ``pipelines/<name>.yaml``. This module is also where a pipeline's short name
(``training``) becomes a pipeline: :func:`pipeline` and :func:`compiled` (for ``kfgpu
upload``, ``submit`` and ``schedule``); the library below (``kfgpu.ops``, the retraining
trigger) never reaches ``kfgpu.pipelines``. Output is byte-for-byte reproducible for a given
kfgpu and kfp version, so :func:`check` can say whether checked-in files are stale.
"""

from __future__ import annotations

import difflib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, KfgpuError
from kfgpu.ops.platform import SIDE_EFFECTS

if TYPE_CHECKING:
    from kfgpu.ops.upload import CompiledPipeline

__all__ = [
    "CompileDrift",
    "PipelineParameters",
    "check",
    "compile_all",
    "compiled",
    "compiled_kfp_versions",
    "component_readme",
    "kfp_version_problem",
    "pipeline",
    "pipeline_names",
    "pipeline_parameters",
]


class CompileDrift(KfgpuError):
    """Checked-in compiled files differ from a fresh compile."""


def pipeline_names() -> list[str]:
    """The short names of kfgpu's pipelines (``training``, ``tuning``, ...)."""
    from kfgpu.pipelines import PIPELINES

    return sorted(PIPELINES)


def pipeline(name: str) -> Any:
    """The pipeline kfgpu calls ``name`` (a KFP ``GraphComponent``).

    Raises:
        ConfigError: no pipeline has that name (the known ones listed).
    """
    from kfgpu.pipelines import PIPELINES

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {sorted(PIPELINES)}")
    return PIPELINES[name]


@dataclass(frozen=True)
class PipelineParameters:
    """A kfgpu pipeline's parameters as its compiled spec declares them.

    ``parameters`` maps each name to ``parameterType``, ``defaultValue`` (when it has one)
    and ``description``: the docstring ``Args:`` line of the component input the parameter
    feeds (KFP copies it into the compiled spec), ``""`` for one that only sets resources.
    """

    name: str
    parameters: dict[str, dict[str, Any]]


def pipeline_parameters(name: str) -> PipelineParameters:
    """The parameters of the pipeline kfgpu calls ``name``, with their descriptions.

    Raises:
        ConfigError: no pipeline has that name.
    """
    from google.protobuf.json_format import MessageToDict

    graph = pipeline(name)
    spec = MessageToDict(graph.pipeline_spec)
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {}) or {}
    described = _descriptions(spec)
    order = list(graph.component_spec.inputs or {})  # the signature's order
    return PipelineParameters(
        name=name,
        parameters={
            k: {**params[k], "description": params[k].get("description") or described.get(k, "")}
            for k in sorted(params, key=lambda k: order.index(k) if k in order else len(order))
        },
    )


_CHANNEL = "pipelinechannel--"


def _descriptions(spec: dict[str, Any]) -> dict[str, str]:
    """Pipeline parameter -> the description of the first component input it feeds.

    Walks the root DAG, then every nested one (``dsl.If``, ``dsl.ParallelFor``, where a
    pipeline parameter arrives as ``pipelinechannel--<name>``); in each, the tasks that
    depend on fewest others first, so a parameter is described by the step that reads it
    first (``data_uri`` by the validation step, not by the registry's use of it).
    """
    components = spec.get("components", {})
    out: dict[str, str] = {}
    dags = [spec["root"].get("dag", {})]
    dags += [components[c]["dag"] for c in sorted(components) if "dag" in components[c]]
    for dag in dags:
        tasks = sorted(
            dag.get("tasks", {}).items(),
            key=lambda item: (len(item[1].get("dependentTasks", [])), item[0]),
        )
        for _, task in tasks:
            inputs = components.get(task["componentRef"]["name"], {}).get("inputDefinitions", {})
            declared = inputs.get("parameters", {})
            for key, source in task.get("inputs", {}).get("parameters", {}).items():
                fed = source.get("componentInputParameter", "").removeprefix(_CHANNEL)
                text = " ".join(str(declared.get(key, {}).get("description", "")).split())
                if fed and text and fed not in out:
                    out[fed] = text
    return out


@contextmanager
def compiled(name: str) -> Iterator[CompiledPipeline]:
    """Compile a pipeline kfgpu knows (``training``) to a temporary package, or read a
    compiled package (a ``.yaml`` path), and yield what identifies it.

    Raises:
        ConfigError: neither a known name nor a compiled package.
    """
    from kfgpu.ops.upload import read_package
    from kfgpu.pipelines import PIPELINES

    if name in PIPELINES:
        with tempfile.TemporaryDirectory(prefix="kfgpu-upload-") as tmp:
            path = Path(tmp) / f"{name}.yaml"
            _compile_to(PIPELINES[name], path)
            yield read_package(path)
        return
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        yield read_package(path)
        return
    raise ConfigError(
        f"unknown pipeline {name!r}: name one of {sorted(PIPELINES)} or a compiled .yaml package"
    )


def _compile_to(obj: Any, path: Path) -> None:
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(obj, str(path))


def _type_name(spec: Any) -> str:
    t = str(spec.type)
    return t.split("@")[0].removeprefix("system.") if "@" in t else t


def component_readme(name: str, component: Any) -> str:
    """A README for one component, from its spec (which KFP built from the docstring)."""
    from kfgpu._image import IMAGE_REGISTRY
    from kfgpu._version import __version__

    spec = component.component_spec
    executor = spec.implementation.container
    lines = [
        f"# {name}",
        "",
        "<!-- Generated by `kfgpu compile` from the component's docstring; do not edit. -->",
        "",
        (spec.description or "").strip(),
        "",
        f"Image: `{executor.image}` (kfgpu {__version__}; registry `{IMAGE_REGISTRY}`)",
        "",
        "## Inputs",
        "",
        "| name | type | default | description |",
        "|---|---|---|---|",
    ]
    for key, inp in (spec.inputs or {}).items():
        default = "required" if inp.default is None and not inp.optional else f"`{inp.default!r}`"
        desc = " ".join((inp.description or "").split())
        lines.append(f"| `{key}` | {_type_name(inp)} | {default} | {desc} |")
    lines += ["", "## Outputs", "", "| name | type | description |", "|---|---|---|"]
    for key, out in (spec.outputs or {}).items():
        desc = " ".join((out.description or "").split())
        lines.append(f"| `{key}` | {_type_name(out)} | {desc} |")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from kfp import components",
        "",
        f'{name} = components.load_component_from_file("components/{name}/component.yaml")',
        "```",
        "",
    ]
    if name in SIDE_EFFECTS:
        lines += [
            "## Caching",
            "",
            "This step has side effects (or judges against state that changes): turn KFP's cache",
            "off on it, as kfgpu's own pipelines do, or a cache hit reports it done without",
            "running it:",
            "",
            "```python",
            f"task = {name}(...)",
            "task.set_caching_options(False)",
            "```",
            "",
        ]
    return "\n".join(lines)


_SDK_VERSION = re.compile(rb"^sdkVersion: kfp-(\S+)$", re.MULTILINE)
_LOCK_PIN = re.compile(r"^kfp==(\S+)$", re.MULTILINE)


def _installed_kfp() -> str:
    from importlib.metadata import version

    return version("kfp")


def compiled_kfp_versions(output_dir: str | Path = ".") -> dict[str, int]:
    """The kfp versions written into the checked-in compiled files, with how many files each."""
    out = Path(output_dir)
    found: dict[str, int] = {}
    for path in [*out.glob("components/*/component.yaml"), *out.glob("pipelines/*.yaml")]:
        for m in _SDK_VERSION.finditer(path.read_bytes()):
            v = m.group(1).decode()
            found[v] = found.get(v, 0) + 1
    return found


def kfp_version_problem(output_dir: str | Path = ".") -> str | None:
    """One line when the installed kfp is not the one the checked-in files were compiled with.

    Every compiled file embeds ``sdkVersion: kfp-<version>``, so another kfp release, even a
    patch release, changes every file; saying so once is clearer than one diff per file.
    """
    found = compiled_kfp_versions(output_dir)
    installed = _installed_kfp()
    if not found or set(found) == {installed}:
        return None
    lock = Path(output_dir) / "requirements.lock"
    locked = _LOCK_PIN.search(lock.read_text()) if lock.is_file() else None
    made = ", ".join(f"kfp {v} ({n} files)" for v, n in sorted(found.items()))
    where = f"; requirements.lock pins kfp {locked.group(1)}" if locked else ""
    return (
        f"the compiled files were made with {made} but kfp {installed} is installed{where}: "
        "install the locked versions (pip install -c requirements.lock -e '.[dev]'), or move "
        "kfp on purpose (install it, run scripts/lock, then `kfgpu compile --kfp-upgrade`, "
        "and commit requirements.lock with the compiled files)"
    )


def _without_sdk_version(content: bytes) -> bytes:
    return _SDK_VERSION.sub(b"sdkVersion: kfp-*", content)


@dataclass
class CompiledFile:
    relative: str
    content: bytes


def _render_all() -> list[CompiledFile]:
    from kfgpu.components import COMPONENTS
    from kfgpu.pipelines import PIPELINES

    files: list[CompiledFile] = []
    with tempfile.TemporaryDirectory(prefix="kfgpu-compile-") as tmp:
        root = Path(tmp)
        for name, component in COMPONENTS.items():
            rel = f"components/{name}/component.yaml"
            _compile_to(component, root / rel)
            files.append(CompiledFile(rel, (root / rel).read_bytes()))
            files.append(
                CompiledFile(
                    f"components/{name}/README.md", component_readme(name, component).encode()
                )
            )
        for name, pipeline in PIPELINES.items():
            rel = f"pipelines/{name}.yaml"
            _compile_to(pipeline, root / rel)
            files.append(CompiledFile(rel, (root / rel).read_bytes()))
    return files


def compile_all(output_dir: str | Path = ".", *, kfp_upgrade: bool = False) -> list[Path]:
    """Write every compiled file under ``output_dir``; return the paths written.

    Raises:
        CompileDrift: the installed kfp differs from the one the checked-in files were
            compiled with and ``kfp_upgrade`` is false: recompiling would rewrite every file
            for a version the lock does not pin.
    """
    out = Path(output_dir)
    problem = None if kfp_upgrade else kfp_version_problem(out)
    if problem:
        raise CompileDrift(problem)
    written = []
    for f in _render_all():
        path = out / f.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(f.content)
        tmp.replace(path)
        written.append(path)
    return written


def check(output_dir: str | Path = ".") -> list[str]:
    """Compare checked-in files with a fresh compile.

    Returns:
        The relative paths that are up to date.

    Raises:
        CompileDrift: a file is missing or differs; the message names each and shows the
            first differing lines, and says to run ``kfgpu compile``.
    """
    out = Path(output_dir)
    version_problem = kfp_version_problem(out)
    problems: list[str] = []
    ok: list[str] = []
    for f in _render_all():
        path = out / f.relative
        if not path.is_file():
            problems.append(f"{f.relative} is missing")
            continue
        current, expected = path.read_bytes(), f.content
        if version_problem:
            # Another kfp changes every file's sdkVersion line: said once below; any other
            # difference is still a stale file.
            current, expected = _without_sdk_version(current), _without_sdk_version(expected)
        if current != expected:
            diff = list(
                difflib.unified_diff(
                    current.decode(errors="replace").splitlines(),
                    expected.decode(errors="replace").splitlines(),
                    lineterm="",
                    n=0,
                )
            )[2:6]
            problems.append(f"{f.relative} is stale ({' | '.join(d.strip() for d in diff)})")
        else:
            ok.append(f.relative)
    if problems:
        raise CompileDrift(
            (f"{version_problem}; besides that, " if version_problem else "")
            + "compiled files differ from the code: "
            + "; ".join(problems)
            + "; run `kfgpu compile` and commit the result"
        )
    if version_problem:
        raise CompileDrift(version_problem)
    return ok
