"""The training pipeline with a user's feature spec (YAML file) and a time-based split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.bundle import load_bundle
from kfgpu.data import fraud, read_parquet, write_parquet
from kfgpu.local import run_local

pytestmark = pytest.mark.slow

SPEC = """\
columns:
  amount: {type: numeric, scale: log1p, missing_indicator: true}
  distance_km: {type: numeric, impute: median, scale: robust, bucketize: 10}
  n_tx_24h: {type: numeric}
  velocity_score: {type: numeric}
  merchant_category: {type: categorical, encode: onehot}
  country: {type: categorical, encode: hashing, hash_buckets: 32}
  channel: {type: categorical}
  event_time: {type: datetime, parts: [hour, dayofweek]}
crosses:
  - {columns: [channel, merchant_category], buckets: 64}
"""


def test_pipeline_with_a_spec_file_and_a_time_split(tmp_path: Path) -> None:
    df = fraud(15000, seed=21)
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2026-03-01", tz="UTC")
    df["event_time"] = start + pd.to_timedelta(rng.integers(0, 90 * 86400, len(df)), unit="s")
    data = tmp_path / "events.parquet"
    write_parquet(df, str(data))
    spec = tmp_path / "features.yaml"
    spec.write_text(SPEC)
    run = run_local(
        "training",
        {
            "data_uri": str(data),
            "target": "is_fraud",
            "feature_spec": str(spec),
            "time_column": "event_time",
            "max_epochs": 4,
            "mlflow_tracking_uri": "",
        },
        workdir=tmp_path / "work",
    )
    (step_dir,) = run.run_dir.glob("*/engineer-features")
    report = (step_dir / "report").read_text()
    assert "by time column `event_time`" in report
    assert "`country`" in report and "hash" in report.lower()
    used = json.loads((step_dir / "spec").read_text())
    assert used["columns"]["merchant_category"]["encode"] == "onehot"
    test = read_parquet(str(step_dir / "test"))
    train_cutoff = df["event_time"].sort_values().iloc[int(len(df) * 0.7) - 1]
    assert test["event_time"].min() > train_cutoff  # the held-out rows are the latest
    bundle = load_bundle(run.output_path("model"))
    pred = bundle.predict(test.drop(columns=["is_fraud"]))
    assert len(pred) == len(test) and np.isfinite(pred["proba_1"]).all()
    assert bundle.description.input_names[-1] == "event_time"
