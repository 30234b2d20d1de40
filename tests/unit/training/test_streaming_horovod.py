"""Horovod training on a streamed split: two CPU workers (gloo) under horovodrun, each
reading only its share of a many-shard Parquet split (``stream_threshold_mb=0``)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("horovod") is None,
        reason="horovod is not built; run scripts/install-horovod",
    ),
]

TARGET = "is_fraud"


def test_horovod_streams_a_sharded_split(tmp_path: Path) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud, write_parquet
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.features.step import transformed_frame

    train, val, _ = split_frame(fraud(4000, seed=3), TARGET, task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, TARGET))
    fitted.save(tmp_path / "transform.json")
    encoded = transformed_frame(fitted, train, TARGET)
    (tmp_path / "train").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(encoded) - 1), 7)):  # odd row count
        encoded.iloc[part].to_parquet(tmp_path / "train" / f"part-{i}.parquet", index=False)
    write_parquet(transformed_frame(fitted, val, TARGET), str(tmp_path / "val.parquet"))
    horovodrun = Path(sys.executable).parent / "horovodrun"
    config = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "early_stopping_patience": 0,
        "stream_threshold_mb": 0,
        "batch_size": 128,
        "class_weight": "balanced",
    }
    cmd = [
        str(horovodrun) if horovodrun.is_file() else str(shutil.which("horovodrun")),
        *("-np", "2", "-H", "localhost:2", "--gloo"),
        *(sys.executable, "-m", "kfgpu.training.horovod"),
        *("--train", str(tmp_path / "train"), "--val", str(tmp_path / "val.parquet")),
        *("--transform", str(tmp_path / "transform.json"), "--target", TARGET),
        *("--task", "classification", "--bundle", str(tmp_path / "bundle")),
        *("--config", json.dumps(config)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    desc = load_bundle(tmp_path / "bundle").description.to_dict()
    training = desc["training"]
    rows = len(encoded) - 1
    assert training["train_rows"] == rows
    # Every row once per epoch: ceil(ceil(rows / 2) / 128) batches on each worker, where
    # the in-memory loader drops the odd row.
    per_worker = -(-rows // 2)
    assert training["global_step"] == 2 * -(-per_worker // 128)
    assert 0 < desc["metrics"]["val_loss"] < math.log(2)
