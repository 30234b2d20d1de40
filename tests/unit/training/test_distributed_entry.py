"""The multi-node entry point, run as the pods of a PyTorchJob would run it: under torchrun
(rank layout in the environment), 2 processes, gloo on CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TARGET = "is_fraud"


def test_torchrun_two_processes_upload_one_verified_bundle(tmp_path: Path) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud, write_parquet
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.features.step import transformed_frame

    train, val, test = split_frame(fraud(6000, seed=4), TARGET, task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, TARGET))
    fitted.save(tmp_path / "transform.json")
    write_parquet(transformed_frame(fitted, train, TARGET), str(tmp_path / "train.parquet"))
    write_parquet(transformed_frame(fitted, val, TARGET), str(tmp_path / "val.parquet"))
    torchrun = shutil.which("torchrun")
    assert torchrun, "torch installs torchrun"
    config = {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp",
        "max_epochs": 2,
        "hidden_sizes": "32",
        "early_stopping_patience": 0,
    }
    bundle_uri = (tmp_path / "store" / "model").as_uri()  # a URI, as object storage would be
    proc = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "-m",
            "kfgpu.training.distributed",
            "--train",
            str(tmp_path / "train.parquet"),
            "--val",
            str(tmp_path / "val.parquet"),
            "--transform",
            (tmp_path / "transform.json").as_uri(),
            "--target",
            TARGET,
            "--task",
            "classification",
            "--bundle-uri",
            bundle_uri,
            "--config",
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The run report is averaged over the ranks: no "use sync_dist=True" warnings in the log.
    assert "sync_dist=True" not in proc.stderr, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["training"]["world_size"] == 2
    bundle = load_bundle(tmp_path / "store" / "model")
    proba = bundle.predict_raw(test.drop(columns=[TARGET]))
    assert proba.shape == (len(test), 2)


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfgpu.training.distributed",
            "--train",
            "x",
            "--val",
            "y",
            "--transform",
            "z",
            "--target",
            "t",
            "--task",
            "classification",
            "--bundle-uri",
            str(tmp_path / "b"),
            "--config",
            '{"precision": "fp8"}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: precision='fp8' is invalid")
