"""detect_drift as a KFP component, run under kfp.local on imported artifacts."""

# No `from __future__ import annotations`: KFP reads the pipeline's real annotations.

import json
import warnings
from pathlib import Path

import pytest
from kfp import dsl, local

from kfgpu.components import detect_drift
from kfgpu.data import fraud, write_parquet
from kfgpu.validation.profile import build_profile

pytestmark = pytest.mark.slow


def test_detect_drift_component_flags_drift(tmp_path: Path) -> None:
    build_profile(fraud(5000, seed=0), sample_rows=300).save(tmp_path / "profile")
    write_parquet(fraud(5000, seed=1, drift=0.6), str(tmp_path / "current.parquet"))

    @dsl.pipeline(name="drift-check")
    def drift_check(reference_uri: str, current_uri: str) -> bool:
        reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Artifact)
        current = dsl.importer(artifact_uri=current_uri, artifact_class=dsl.Dataset)
        task = detect_drift(reference=reference.output, current=current.output)
        return task.outputs["dataset_drift"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        run = drift_check(
            reference_uri=str(tmp_path / "profile"), current_uri=str(tmp_path / "current.parquet")
        )
    assert run.output is True
    (result,) = (tmp_path / "root").rglob("detect-drift/result")
    data = json.loads(result.read_text())
    assert data["dataset_drift"] and data["n_drifted"] >= 6
    (report,) = (tmp_path / "root").rglob("detect-drift/report")
    assert "kfgpu-drift" in report.read_text()
