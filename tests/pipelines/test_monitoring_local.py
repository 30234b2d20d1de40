"""The monitoring and batch-inference pipelines, run under kfp.local on a trained bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import PipelineError
from kfgpu.local import run_local

pytestmark = pytest.mark.slow


def _log_traffic(bundle: Path, logs: Path, *, rows: int, seed: int, drift: float) -> None:
    """Write what an endpoint serving ``bundle`` would log for ``rows`` of traffic."""
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud
    from kfgpu.monitoring.logger import InferenceLogger

    model = load_bundle(bundle)
    df = fraud(rows, seed=seed, drift=drift).drop(columns=["is_fraud"])
    log = InferenceLogger(str(logs), model="fraud", labels=[str(c) for c in model.classes])
    for start in range(0, rows, 100):
        part = df.iloc[start : start + 100]
        out = model.predict_raw(part)
        log.log({c: part[c].tolist() for c in part.columns}, len(part), out, request_id=str(start))
    log.close()


def _monitor(tmp_path: Path, bundle: Path, logs: Path, hook: str, name: str):
    return run_local(
        "monitoring",
        {
            "logs_uri": str(logs),
            "model_uri": str(bundle),
            "window_hours": 0.0,
            "webhook_url": hook,
        },
        workdir=tmp_path / name,
    )


def test_monitoring_stays_quiet_then_retrains_on_drift(
    fraud_bundle: Path, tmp_path: Path, webhook: tuple[str, list]
) -> None:
    hook, received = webhook
    quiet_logs, drifted_logs = tmp_path / "quiet", tmp_path / "drifted"
    _log_traffic(fraud_bundle, quiet_logs, rows=2000, seed=70, drift=0.0)
    _log_traffic(fraud_bundle, drifted_logs, rows=2000, seed=71, drift=0.6)

    quiet = _monitor(tmp_path, fraud_bundle, quiet_logs, hook, "q")
    steps = [e["step"] for e in quiet.events if e["event"] == "success"]
    assert steps == ["monitor"] and received == []
    verdict = json.loads(quiet.output_path("verdict").read_text())
    assert verdict["status"] == "ok" and verdict["retrain"] is False

    drifted = _monitor(tmp_path, fraud_bundle, drifted_logs, hook, "d")
    steps = [e["step"] for e in drifted.events if e["event"] == "success"]
    assert steps == ["monitor", "trigger_retraining"]
    (event,) = received
    assert event["event"] == "kfgpu.retrain" and "data_drift" in event["alarms"]
    assert event["text"].startswith("retrain: data drift: important features: ")
    assert drifted.output_path("report").read_text().lstrip().lower().startswith("<!doctype html")


def test_batch_inference_scores_a_batch_like_the_bundle(fraud_bundle: Path, tmp_path: Path) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud

    batch = fraud(3000, seed=80).drop(columns=["is_fraud"]).assign(id=range(3000))
    batch.to_parquet(tmp_path / "batch.parquet")
    run = run_local(
        "batch_inference",
        {
            "data_uri": str(tmp_path / "batch.parquet"),
            "model_uri": str(fraud_bundle),
            "keep_columns": "id",
            "chunk_rows": 1000,
        },
        workdir=tmp_path / "w",
    )
    out = pd.read_parquet(run.output_path("predictions"))
    assert out["id"].tolist() == list(range(3000))
    expected = load_bundle(fraud_bundle).predict(batch.drop(columns=["id"]))
    np.testing.assert_allclose(out["proba_1"], expected["proba_1"], rtol=1e-5, atol=1e-6)
    assert (out["prediction"].astype(str) == expected["prediction"].astype(str)).all()
    report = run.output_path("report").read_text()
    assert "rows: 3000" in report and "- drift: no drift: important features" in report


def test_batch_without_a_model_input_fails_with_a_report(
    fraud_bundle: Path, tmp_path: Path
) -> None:
    from kfgpu.data import fraud

    fraud(500, seed=81).drop(columns=["is_fraud", "amount"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(PipelineError, match=r"lacks input column\(s\) \['amount'\]"):
        run_local(
            "batch_inference",
            {"data_uri": str(tmp_path / "b.parquet"), "model_uri": str(fraud_bundle)},
            workdir=tmp_path / "w",
        )
    (report,) = (tmp_path / "w").rglob("validate-batch/report")
    assert "**FAILED**" in report.read_text()
    assert not list((tmp_path / "w").rglob("batch-predict/predictions"))
