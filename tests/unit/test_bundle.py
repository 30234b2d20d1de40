"""Tests for kfgpu.bundle: atomic writes, checksum verification, loading anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from kfgpu.bundle import (
    BUNDLE_FORMAT,
    CHECKSUMS_FILE,
    DESCRIPTION_FILE,
    TRANSFORM_FILE,
    WEIGHTS_FILE,
    load_bundle,
    read_description,
    verify_bundle,
    write_bundle,
)
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import BundleError, ChecksumError
from kfgpu.features.transform import FittedTransform, fit_transform, infer_feature_spec
from kfgpu.training.families import build_network, tabular_mlp_config

ROWS_SEED = 7


def _rows() -> pd.DataFrame:
    return fraud(300, seed=ROWS_SEED).drop(columns=[LABEL_COLUMN])


@pytest.fixture(scope="module")
def parts() -> tuple[dict[str, torch.Tensor], FittedTransform, dict[str, Any]]:
    df = fraud(500, seed=1)
    ft = fit_transform(df, infer_feature_spec(df, LABEL_COLUMN))
    config = tabular_mlp_config(
        n_numeric=ft.n_dense,
        cardinalities=ft.cardinalities,
        hidden_sizes=(16,),
        dropout=0.1,
        n_outputs=2,
    )
    torch.manual_seed(0)
    network = build_network("tabular_mlp", config)
    description = {
        "task": "classification",
        "target": LABEL_COLUMN,
        "model": {"family": "tabular_mlp", "config": config},
        "labels": {"classes": [0, 1], "positive_class": 1},
    }
    return network.state_dict(), ft, description


@pytest.fixture
def bundle(tmp_path: Path, parts: tuple[Any, Any, Any]) -> Path:
    state, ft, desc = parts
    return write_bundle(tmp_path / "bundle", state_dict=state, transform=ft, description=desc)


def test_round_trip(bundle: Path, parts: tuple[Any, Any, Any]) -> None:
    state, ft, desc = parts
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [WEIGHTS_FILE, TRANSFORM_FILE, DESCRIPTION_FILE, CHECKSUMS_FILE]
    )
    assert set(verify_bundle(bundle)) == {WEIGHTS_FILE, TRANSFORM_FILE, DESCRIPTION_FILE}
    assert read_description(bundle).to_dict() == {"format": BUNDLE_FORMAT, **desc}
    loaded = load_bundle(bundle)
    assert loaded.transform == ft
    assert loaded.task == "classification" and loaded.classes == [0, 1]
    for name, tensor in loaded.module.network.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert not loaded.module.training

    rows = _rows()
    proba = loaded.predict_raw(rows, batch_size=64)  # several batches
    assert proba.shape == (len(rows), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, loaded.predict_raw(rows), rtol=0, atol=1e-7)
    assert loaded.predict_raw(rows.head(0)).shape == (0, 2)


def test_write_into_existing_empty_directory(tmp_path: Path, parts: tuple[Any, Any, Any]) -> None:
    state, ft, desc = parts
    target = tmp_path / "pre-created"
    target.mkdir()
    write_bundle(target, state_dict=state, transform=ft, description=desc)
    verify_bundle(target)
    assert [p.name for p in tmp_path.iterdir()] == ["pre-created"]


@pytest.mark.parametrize("name", [WEIGHTS_FILE, TRANSFORM_FILE, DESCRIPTION_FILE])
def test_tampered_byte_is_checksum_error(bundle: Path, name: str) -> None:
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=name):
        load_bundle(bundle)


def test_missing_checksums_is_bundle_error(bundle: Path) -> None:
    (bundle / CHECKSUMS_FILE).unlink()
    with pytest.raises(BundleError, match=CHECKSUMS_FILE) as info:
        load_bundle(bundle)
    assert not isinstance(info.value, ChecksumError)


def test_missing_listed_file_is_bundle_error(bundle: Path) -> None:
    (bundle / TRANSFORM_FILE).unlink()
    with pytest.raises(BundleError, match=TRANSFORM_FILE):
        load_bundle(bundle)


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_refuses_to_write_over_non_empty_directory(
    bundle: Path, parts: tuple[Any, Any, Any]
) -> None:
    state, ft, desc = parts
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    with pytest.raises(BundleError, match="non-empty"):
        write_bundle(bundle, state_dict=state, transform=ft, description=desc)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    other = bundle.parent / "a-file"
    other.write_text("x")
    with pytest.raises(BundleError):
        write_bundle(other, state_dict=state, transform=ft, description=desc)
    assert other.read_text() == "x"


def _boom(*args: object, **kwargs: object) -> None:
    raise OSError("disk full")


@pytest.mark.parametrize("fail_at", ["weights", "transform"])
@pytest.mark.parametrize("pre_created", [False, True])
def test_failed_write_leaves_nothing(
    tmp_path: Path,
    parts: tuple[Any, Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    fail_at: str,
    pre_created: bool,
) -> None:
    import safetensors.torch

    state, ft, desc = parts
    if fail_at == "weights":
        monkeypatch.setattr(safetensors.torch, "save_file", _boom)
    else:
        monkeypatch.setattr(FittedTransform, "save", _boom)
    parent = tmp_path / "models"
    target = parent / "bundle"
    if pre_created:
        target.mkdir(parents=True)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(target, state_dict=state, transform=ft, description=desc)
    left = sorted(p.name for p in parent.iterdir()) if parent.exists() else []
    if pre_created:
        # The caller's empty directory stays, still empty; no .partial sibling.
        assert left == ["bundle"] and list(target.iterdir()) == []
    else:
        assert left == []
        assert not target.exists()


def test_loads_in_a_fresh_process(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "fresh.npy"
    script = textwrap.dedent(
        f"""
        import numpy as np
        from kfgpu.bundle import load_bundle
        from kfgpu.data.synthetic import fraud

        rows = fraud(300, seed={ROWS_SEED}).drop(columns=["{LABEL_COLUMN}"])
        np.save({str(out)!r}, load_bundle({str(bundle)!r}).predict_raw(rows))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    fresh = np.load(out)
    here = load_bundle(bundle).predict_raw(_rows())
    assert fresh.shape == here.shape == (300, 2)
    np.testing.assert_allclose(fresh, here, rtol=1e-6, atol=1e-7)


def test_wrong_format_is_refused(bundle: Path) -> None:
    desc = json.loads((bundle / DESCRIPTION_FILE).read_text())
    desc["format"] = "kfgpu-bundle/99"
    (bundle / DESCRIPTION_FILE).write_text(json.dumps(desc))
    with pytest.raises(BundleError, match="kfgpu-bundle/99"):
        read_description(bundle)
