"""Loading a bundle as if its author were hostile (:mod:`kfgpu.serving.loading`): model
families from an allow-list, nothing imported before the check; regular files inside the
bundle only; every damaged file one line, from the library and from ``kfgpu serve``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kfgpu.errors import BundleError
from kfgpu.serving.loading import check_family, load_served_bundle
from tests.unit.serving.conftest import make_bundle


def _reseal(bundle: Path) -> None:
    """Rewrite the checksum file for the bundle's current files (a consistent forgery)."""
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bundle).as_posix()}\n"
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "CHECKSUMS.sha256"
    ]
    (bundle / "CHECKSUMS.sha256").write_text("".join(lines))


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "b")


def _set_family(bundle: Path, family: str) -> None:
    desc = json.loads((bundle / "bundle.json").read_text())
    desc["model"]["family"] = family
    (bundle / "bundle.json").write_text(json.dumps(desc))
    _reseal(bundle)


def test_a_good_bundle_loads(bundle: Path) -> None:
    loaded = load_served_bundle(bundle)
    assert loaded.task == "classification"


def test_an_import_path_family_is_refused_before_its_module_runs(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "kfgpu_evil_net.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            from kfgpu.training.network import TabularMLP

            Path({str(marker)!r}).write_text("ran")


            class Net(TabularMLP):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(pkg))
    _set_family(bundle, "kfgpu_evil_net:Net")
    with pytest.raises(BundleError, match="--allow-module kfgpu_evil_net"):
        load_served_bundle(bundle)
    with pytest.raises(BundleError, match="does not import"):
        load_served_bundle(bundle, allow_modules=["kfgpu_evil"])  # a prefix of the name only
    assert not marker.exists()
    loaded = load_served_bundle(bundle, allow_modules=["kfgpu_evil_net"])
    assert marker.exists() and type(loaded.module.network).__name__ == "Net"


def test_family_rules() -> None:
    assert check_family("tabular_mlp") == "tabular_mlp"
    assert check_family("acme.nets.v2:Net", ["acme"]) == "acme.nets.v2:Net"
    assert check_family("acme.nets:Net", ["acme.nets."]) == "acme.nets:Net"
    for family, allow in (
        ("acmes.nets:Net", ["acme"]),
        ("os:system", []),
        ("this:Nope", []),
        ("no_such_family", []),
        ("", []),
        (None, []),
        (["tabular_mlp"], []),
    ):
        with pytest.raises(BundleError):
            check_family(family, allow)


def test_a_link_out_of_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((bundle / "model.safetensors").read_bytes())
    (bundle / "model.safetensors").unlink()
    (bundle / "model.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_served_bundle(bundle)


def test_a_link_inside_the_bundle_and_a_linked_bundle_directory_load(
    bundle: Path, tmp_path: Path
) -> None:
    # KServe's storage initializer links /mnt/models to a PVC path: the root may be a link.
    link = tmp_path / "mnt-models"
    link.symlink_to(bundle)
    assert load_served_bundle(link).task == "classification"


def test_a_fifo_in_the_bundle_is_refused(bundle: Path) -> None:
    os.mkfifo(bundle / "pipe")
    with pytest.raises(BundleError, match="not a regular file"):
        load_served_bundle(bundle)


def _pickle_weights(bundle: Path) -> None:
    import torch

    (bundle / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, bundle / "model.safetensors")


def _truncate_weights(bundle: Path) -> None:
    data = (bundle / "model.safetensors").read_bytes()
    (bundle / "model.safetensors").write_bytes(data[: len(data) // 2])


def _garbage_description(bundle: Path) -> None:
    (bundle / "bundle.json").write_bytes(b"\x00\xffnot json{{")


def _wrong_shapes(bundle: Path) -> None:
    desc = json.loads((bundle / "bundle.json").read_text())
    desc["model"]["config"]["hidden_sizes"] = [3]
    (bundle / "bundle.json").write_text(json.dumps(desc))


def _no_model_section(bundle: Path) -> None:
    (bundle / "bundle.json").write_text(json.dumps({"format": "kfgpu-bundle/1"}))


DAMAGE = {
    "pickle_weights": (_pickle_weights, "model.safetensors"),
    "truncated_weights": (_truncate_weights, "damaged"),
    "garbage_bundle_json": (_garbage_description, "bundle.json"),
    "weights_do_not_fit": (_wrong_shapes, "do not fit"),
    "no_model_section": (_no_model_section, "no model section"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_bundle_is_one_line(bundle: Path, damage: str) -> None:
    harm, words = DAMAGE[damage]
    harm(bundle)
    _reseal(bundle)
    with pytest.raises(BundleError) as info:
        load_served_bundle(bundle)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert words in message, message


def test_kfgpu_serve_reports_a_damaged_bundle_in_one_line(bundle: Path) -> None:
    _pickle_weights(bundle)
    _reseal(bundle)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-m", "kfgpu.cli", "serve", str(bundle), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.safetensors" in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
