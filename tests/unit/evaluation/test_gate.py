"""The gate blocks a worse model and blesses a better one, with reasons; the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfgpu.errors import ConfigError
from kfgpu.evaluation.card import render_card_html, render_card_markdown
from kfgpu.evaluation.gate import evaluate_gate, load_gate_spec, write_verdict
from kfgpu.evaluation.metrics import evaluate_classification
from kfgpu.evaluation.records import EvaluationRecord

SPEC = {
    "metrics": {
        "roc_auc": {"min": 0.7, "max_drop_vs_champion": 0.01},
        "log_loss": {"max": 0.7, "max_increase_vs_champion": 0.05},
        "f1": {"min_gain_vs_baseline": 0.05},
    },
    "slices": {"region": {"min_rows": 50, "metrics": {"roc_auc": {"min": 0.6}}}},
    "fairness": {"demographic_parity_difference": {"max": 0.3}},
}


def _evaluation(signal: float, seed: int = 0) -> dict[str, Any]:
    """A model whose quality grows with ``signal`` on the same rows."""
    rng = np.random.default_rng(seed)
    n = 2000
    y = (rng.random(n) < 0.3).astype(int)
    logits = rng.normal(size=(n, 2))
    logits[np.arange(n), y] += signal
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    region = np.where(rng.random(n) < 0.5, "north", "south").astype(object)
    region[:10] = "tiny"
    ev = evaluate_classification(
        y,
        proba,
        [0, 1],
        threshold_policy="f1",
        slices={"region": region},
        sensitive=("region", region),
    )
    ev.model = {"target": "label", "lineage": {"data_fingerprint": "abc"}}
    return json.loads(json.dumps(ev.to_dict()))


def _champion(ev: dict[str, Any]) -> dict[str, Any]:
    return {"name": "m", "version": "3", "evaluation": ev}


def test_better_model_is_blessed_with_reasons() -> None:
    champion, better = _evaluation(1.5), _evaluation(2.5)
    v = evaluate_gate(better, SPEC, champion=_champion(champion))
    assert v.blessed, v.failures
    checks = {r.check for r in v.reasons}
    assert {
        "overall.roc_auc.min",
        "overall.roc_auc.max_drop_vs_champion",
        "overall.log_loss.max_increase_vs_champion",
        "overall.f1.min_gain_vs_baseline",
        "slice region=north.roc_auc.min",
        "fairness[region].demographic_parity_difference.max",
    } <= checks | {r.check.replace("slices.", "slice ") for r in v.reasons}
    assert any("skipped, 10 rows < min_rows 50" in r.message for r in v.reasons)
    assert all(r.passed for r in v.reasons)
    assert v.summary().startswith("blessed")
    assert v.to_dict()["champion"] == {"name": "m", "version": "3"}


def test_worse_model_is_blocked_with_reasons(tmp_path: Path) -> None:
    champion, worse = _evaluation(2.5), _evaluation(1.5)
    v = evaluate_gate(worse, SPEC, champion=_champion(champion))
    assert not v.blessed
    failed = {r.check for r in v.failures}
    assert "overall.roc_auc.max_drop_vs_champion" in failed
    assert "overall.log_loss.max_increase_vs_champion" in failed
    msg = next(r.message for r in v.failures if r.check.endswith("roc_auc.max_drop_vs_champion"))
    assert "vs champion" in msg and "> 0.01" in msg
    # Checks it passed are reasons too.
    assert any(r.passed for r in v.reasons)
    assert v.summary().startswith("blocked:")
    write_verdict(v, str(tmp_path / "verdict.json"))
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["blessed"] is False and len(data["reasons"]) == len(v.reasons)


def test_no_champion_relative_checks_pass_and_absolute_still_apply() -> None:
    weak = _evaluation(0.2)
    v = evaluate_gate(weak, SPEC, champion=None)
    rel = [r for r in v.reasons if "champion" in r.check]
    assert rel and all(r.passed and "no champion" in r.message for r in rel)
    assert not v.blessed
    assert "overall.roc_auc.min" in {r.check for r in v.failures}


def test_default_gate_and_missing_values() -> None:
    ev = _evaluation(2.0)
    v = evaluate_gate(ev, None)
    assert v.blessed and v.spec["metrics"] == {
        "roc_auc": {"min_gain_vs_baseline": 0.0, "max_drop_vs_champion": 0.0}
    }
    v = evaluate_gate(ev, {"metrics": {"r2": {"min": 0.1}}, "slices": {"nope": {"metrics": {}}}})
    assert not v.blessed
    messages = " ".join(r.message for r in v.failures)
    assert "r2: not computed (available: [" in messages
    assert "slice column 'nope' was not evaluated" in messages


def test_spec_parsing_and_errors(tmp_path: Path) -> None:
    yaml_text = "metrics:\n  roc_auc: {min: 0.8}\n"
    assert load_gate_spec(yaml_text) == {"metrics": {"roc_auc": {"min": 0.8}}}
    (tmp_path / "gate.yaml").write_text(yaml_text)
    assert load_gate_spec(str(tmp_path / "gate.yaml"))["metrics"]["roc_auc"]["min"] == 0.8
    assert load_gate_spec('{"metrics": {"f1": {"max": 1}}}')["metrics"]["f1"] == {"max": 1}
    with pytest.raises(ConfigError, match="unknown check 'minimum'"):
        load_gate_spec({"metrics": {"roc_auc": {"minimum": 0.8}}})
    with pytest.raises(ConfigError, match="unknown section"):
        load_gate_spec({"metric": {}})
    with pytest.raises(ConfigError, match="must be a number"):
        load_gate_spec({"metrics": {"roc_auc": {"min": "high"}}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_gate_spec(str(tmp_path / "missing.json"))


def test_model_card_markdown_and_html() -> None:
    ev = _evaluation(2.0)
    ev["model"].update({"family": "tabular_mlp", "features": ["a", "b"], "train_rows": 100})
    verdict = evaluate_gate(ev, SPEC, champion=None)
    record = EvaluationRecord.from_dict(ev)
    md = render_card_markdown(record, verdict)
    for heading in ("Purpose", "Data", "Metrics", "Slices", "Fairness", "Gate", "Limitations"):
        assert f"## {heading}" in md
    assert "`abc`" in md and "Decision threshold" in md and "No champion" in md
    page = render_card_html(record, verdict)
    assert page.startswith("<!doctype html>") and "<h2>Fairness</h2>" in page
    assert "<code>abc</code>" in page
    assert "## Gate" not in render_card_markdown(record)
