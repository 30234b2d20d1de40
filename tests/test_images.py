"""images/: every version pinned, tags equal to kfgpu's version, and each image's install and
entrypoint work, checked without Docker.

The install is the Dockerfiles' own: `pip install -c images/constraints.txt <kfgpu wheel>`,
into a fresh virtual environment. The environment is created with `--system-site-packages`
and pip runs with `--no-index`: the dependencies are then taken from this interpreter's
site-packages (torch, kfp, ... are not downloaded again, and the test works offline), and pip
must find every one at exactly the version constraints.txt pins, so the file cannot drift from
the environment the suite passed in. kfgpu itself comes only from the wheel (not from the
editable checkout), which the test checks before running each image's entrypoint with --help.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from kfgpu import __version__
from kfgpu._image import BASE_IMAGE, HOROVOD_IMAGE, SERVE_IMAGE, TRAIN_IMAGE, image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
NAMES = ("base", "train", "horovod", "serve")
CONSTRAINTS = IMAGES / "constraints.txt"


def _dockerfile(name: str) -> str:
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n", " ", (IMAGES / name / "Dockerfile").read_text())


def _instructions(name: str, keyword: str) -> list[str]:
    return [
        line.strip()[len(keyword) :].strip()
        for line in _dockerfile(name).splitlines()
        if line.strip().upper().startswith(keyword + " ")
    ]


def _args(name: str) -> dict[str, str]:
    out = {}
    for arg in _instructions(name, "ARG"):
        key, _, default = arg.partition("=")
        out[key] = default
    return out


def _pinned_constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


@pytest.mark.parametrize("name", NAMES)
def test_base_images_are_pinned(name: str) -> None:
    (base,) = _instructions(name, "FROM")
    assert "latest" not in base
    if name == "serve":
        # Built on kfgpu-base of the same version, never another.
        assert base == "${REGISTRY}/kfgpu-base:${KFGPU_VERSION}"
        return
    ref, _, tag = base.rpartition(":")
    assert ref and re.search(r"\d+\.\d+", tag), f"{name}: FROM {base} needs an exact version tag"


@pytest.mark.parametrize("name", NAMES)
def test_every_pip_install_is_pinned(name: str) -> None:
    pins = _pinned_constraints()
    args = _args(name)
    for run in _instructions(name, "RUN"):
        tokens = shlex.split(run)
        commands: list[list[str]] = [[]]
        for t in tokens:
            if t in ("&&", ";", "||"):
                commands.append([])
            else:
                commands[-1].append(t)
        for words in commands:
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words[:2] != ["pip", "install"]:
                continue
            constrained = "-c" in words and "/tmp/constraints.txt" in words
            skip_next = False
            for w in words[2:]:
                if skip_next:
                    skip_next = False
                    continue
                if w in ("-c", "--index-url"):
                    skip_next = True
                    continue
                if w.startswith("-"):
                    continue
                if w.endswith(".whl") or w.startswith("./horovod-"):
                    assert "${KFGPU_VERSION}" in w or "${HOROVOD_VERSION}" in w or "horovod" in w
                    continue
                spec = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""), w)
                if "==" in spec:
                    assert re.fullmatch(r"[\w.-]+==\d[\w.]*", spec), f"{name}: {w} is not pinned"
                else:
                    assert constrained and spec.lower() in pins, (
                        f"{name}: {w} is neither pinned nor in constraints.txt"
                    )


@pytest.mark.parametrize("name", ("base", "train", "horovod"))
def test_images_install_the_wheel_of_this_version(name: str) -> None:
    text = _dockerfile(name)
    assert "COPY dist/kfgpu-${KFGPU_VERSION}-py3-none-any.whl" in text
    assert "-c /tmp/constraints.txt" in text
    assert "COPY images/constraints.txt" in text


def test_horovod_image_applies_the_cxx17_patch() -> None:
    text = _dockerfile("horovod")
    assert "set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)" in text
    assert "horovod/torch/CMakeLists.txt" in text
    assert "ARG HOROVOD_VERSION=0.28.1" in (IMAGES / "horovod" / "Dockerfile").read_text()


def test_every_component_runs_in_an_image_defined_here() -> None:
    from kfgpu.components import COMPONENTS

    defined = {image(f"kfgpu-{n}") for n in NAMES}
    assert {BASE_IMAGE, TRAIN_IMAGE, SERVE_IMAGE, HOROVOD_IMAGE} == defined
    for name, component in COMPONENTS.items():
        used = component.component_spec.implementation.container.image
        assert used in defined, f"{name} runs in {used}, which images/ does not build"
        assert used.endswith(f":{__version__}")


def test_ci_workflow_builds_and_pushes_each_image_with_the_version_tag() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    steps = workflow["jobs"]["images"]["steps"]
    text = (ROOT / ".github" / "workflows" / "images.yml").read_text()
    assert "src/kfgpu/_version.py" in text and "pip wheel --no-deps . -w dist" in text
    built = {
        s["with"]["file"]: s["with"]["tags"]
        for s in steps
        if str(s.get("uses", "")).startswith("docker/build-push-action")
    }
    assert set(built) == {f"images/{n}/Dockerfile" for n in NAMES}
    for n in NAMES:
        tag = built[f"images/{n}/Dockerfile"]
        assert tag == f"${{{{ env.REGISTRY }}}}/kfgpu-{n}:${{{{ steps.version.outputs.version }}}}"
    assert not any(":latest" in str(tag) for tag in built.values())
    assert workflow["env"]["REGISTRY"] == "ghcr.io/kfgpu"


def _help_command(name: str) -> list[str]:
    entry = _instructions(name, "ENTRYPOINT")
    cmd = _instructions(name, "CMD")
    words: list[str] = []
    for text in entry[-1:] + cmd[-1:]:
        words += yaml.safe_load(text)  # exec form: a JSON list
    return words


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("images")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(tmp / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = tmp / "dist" / f"kfgpu-{__version__}-py3-none-any.whl"
    assert wheel.is_file(), list((tmp / "dist").iterdir())
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The Dockerfiles' install, offline: dependencies must be satisfied at the pinned versions.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-index",
            "-c",
            str(CONSTRAINTS),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    origin = subprocess.run(
        [str(python), "-c", "import kfgpu, sys; print(kfgpu.__file__); print(kfgpu.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    ).stdout.split()
    assert origin[0].startswith(str(env_dir)), f"kfgpu imported from {origin[0]}, not the wheel"
    assert origin[1] == __version__
    return env_dir


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_help_runs_from_the_installed_wheel(name: str, image_venv: Path) -> None:
    words = _help_command(name)
    assert words[-1] == "--help", f"{name}: the image's default command should be help"
    program = {"python": image_venv / "bin" / "python", "kfgpu": image_venv / "bin" / "kfgpu"}
    argv = [str(program.get(words[0], words[0])), *words[1:]]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=image_venv, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()
