"""Real multi-process data parallel training on CPU (gloo), in a subprocess.

Run outside the pytest process: spawned workers re-import the caller's main module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
from kfgpu.bundle import load_bundle
from kfgpu.data import fraud
from kfgpu.features import fit_transform, infer_feature_spec
from kfgpu.features.split import split_frame
from kfgpu.training.config import TrainConfig
from kfgpu.training.trainer import train_tabular

if __name__ == "__main__":
    out = sys.argv[1]
    df = fraud(12000, seed=5)
    train, val, test = split_frame(df, "is_fraud", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    outcome = train_tabular(
        train, val, transform=fitted, target="is_fraud", task="classification",
        config=TrainConfig(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2,
                           early_stopping_patience=0),
        bundle_path=out,
    )
    proba = load_bundle(out).predict_raw(test.drop(columns=["is_fraud"]))
    print(json.dumps({
        "training": outcome.description["training"],
        "metrics": outcome.metrics,
        "rows": len(proba),
        "row_sums": [float(proba.sum(axis=1).min()), float(proba.sum(axis=1).max())],
    }))
"""


def test_ddp_spawn_on_two_cpu_processes_writes_one_bundle(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    bundle = tmp_path / "bundle"
    proc = subprocess.run(
        [sys.executable, str(script), str(bundle)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["training"]["world_size"] == 2
    assert result["training"]["epochs_run"] == 2
    assert 1 <= result["training"]["best_epoch"] <= 2
    assert 0 < result["metrics"]["val_loss"] < 0.69  # below chance-level cross-entropy
    assert result["rows"] == 1800
    assert abs(result["row_sums"][0] - 1) < 1e-5 and abs(result["row_sums"][1] - 1) < 1e-5
    assert not list(tmp_path.glob(".bundle.partial-*"))
