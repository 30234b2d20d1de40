"""check_gate as a KFP component under kfp.local: blessed output, verdict and card."""

# No `from __future__ import annotations`: KFP reads the pipeline's real annotations.

import json
import warnings
from pathlib import Path

import pytest
from kfp import dsl, local

from kfgpu.components import check_gate

pytestmark = pytest.mark.slow


def test_check_gate_component_blocks_with_reasons(tmp_path: Path) -> None:
    evaluation = {
        "task": "classification",
        "headline": "roc_auc",
        "metrics": {"roc_auc": 0.75},
        "baseline": {"roc_auc": 0.5},
        "model": {"target": "y"},
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))

    @dsl.pipeline(name="gate-check")
    def gate_check(evaluation_uri: str, spec: str) -> bool:
        ev = dsl.importer(artifact_uri=evaluation_uri, artifact_class=dsl.Artifact)
        return check_gate(evaluation=ev.output, gate_spec=spec).outputs["Output"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        blocked = gate_check(
            evaluation_uri=str(tmp_path / "evaluation.json"),
            spec='{"metrics": {"roc_auc": {"min": 0.8}}}',
        )
        blessed = gate_check(evaluation_uri=str(tmp_path / "evaluation.json"), spec="")
    assert blocked.output is False and blessed.output is True
    verdicts = [json.loads(p.read_text()) for p in (tmp_path / "root").rglob("check-gate/verdict")]
    assert sorted(v["blessed"] for v in verdicts) == [False, True]
    failed = next(v for v in verdicts if not v["blessed"])
    assert failed["reasons"][0]["message"] == "overall roc_auc: 0.7500 < min 0.8"
    cards = [p.read_text() for p in (tmp_path / "root").rglob("check-gate/model_card")]
    assert any("**FAIL**" in c for c in cards)
