"""Every error-level case of the malformed corpus stops the pipeline before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfgpu.errors import PipelineError
from kfgpu.local import run_local

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
CASES = [c for c in json.loads((CORPUS / "cases.json").read_text()) if c["severity"] == "error"]


def test_the_corpus_has_error_cases() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_pipeline_stops_before_training(case: dict[str, str], tmp_path: Path) -> None:
    arguments = {
        "data_uri": str(CORPUS / case["file"]),
        "target": case["target"],
        "mlflow_tracking_uri": "",
    }
    if case.get("schema"):
        arguments["schema_uri"] = str(CORPUS / case["schema"])
    with pytest.raises(PipelineError, match=r"^validate_data: ") as info:
        run_local("training", arguments, workdir=tmp_path)
    started = {
        json.loads(line)["step"]
        for line in next(tmp_path.glob("runs/*/events.jsonl")).read_text().splitlines()
    }
    assert started == {"validate_data"}, "no step after validation may start"
    assert not list(tmp_path.rglob("train-model"))
    anomalies = json.loads(next(tmp_path.rglob("validate-data/anomalies")).read_text())
    checks = {a["check"] for a in anomalies["anomalies"] if a["severity"] == "error"}
    assert case["check"] in checks
    assert not anomalies["ok"]
    report = next(tmp_path.rglob("validate-data/report")).read_text()
    assert "FAIL" in report.upper()
    if case.get("column"):
        assert case["column"] in str(info.value)
