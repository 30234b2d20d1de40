"""The gate compares only with a champion of the same task, target and input signature."""

from __future__ import annotations

from typing import Any

from kfgpu.evaluation.gate import evaluate_gate

FRAUD_INPUTS = [{"name": "amount", "kind": "numeric"}, {"name": "mcc", "kind": "categorical"}]


def _evaluation(
    task: str, target: str, inputs: list[dict[str, str]], metrics: dict[str, float]
) -> dict[str, Any]:
    headline = "roc_auc" if task == "classification" else "r2"
    return {
        "task": task,
        "headline": headline,
        "metrics": metrics,
        "baseline": {headline: 0.5 if task == "classification" else 0.0},
        "model": {"task": task, "target": target, "signature": inputs, "lineage": {}},
    }


def _champion(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"name": "m", "version": "1", "evaluation": evaluation}


FRAUD_CHAMPION = _champion(
    _evaluation("classification", "is_fraud", FRAUD_INPUTS, {"roc_auc": 0.90})
)


def test_another_task_and_target_blocks_and_names_the_difference_and_the_fix() -> None:
    """The case that used to go wrong: a regression model blessed over a classifier."""
    regression = _evaluation(
        "regression", "progression", [{"name": "bmi", "kind": "numeric"}], {"r2": 0.45}
    )
    verdict = evaluate_gate(regression, champion=FRAUD_CHAMPION)
    assert not verdict.blessed
    (failure,) = verdict.failures
    assert failure.check == "champion.identity"
    message = failure.message
    assert "champion m v1 is another model" in message
    assert "task regression vs the champion's classification" in message
    assert "target 'progression' vs the champion's 'is_fraud'" in message
    assert "new column(s) bmi" in message and "missing column(s) amount, mcc" in message
    assert "another name (registered_model_name)" in message
    assert "allow_signature_change=true" in message
    # The relative check did not pretend to compare with another model's metrics.
    relative = [r for r in verdict.reasons if "vs_champion" in r.check]
    assert relative and all("is another model; skipped" in r.message for r in relative)
    assert verdict.summary().startswith("blocked: 1 of")
    assert verdict.to_dict()["identity"]["differences"][0].startswith("task regression")


def test_a_changed_input_signature_blocks_unless_allowed() -> None:
    widened = _evaluation(
        "classification",
        "is_fraud",
        [*FRAUD_INPUTS, {"name": "hour", "kind": "numeric"}],
        {"roc_auc": 0.85},
    )
    blocked = evaluate_gate(widened, champion=FRAUD_CHAMPION)
    assert not blocked.blessed
    assert [r.check for r in blocked.failures] == ["champion.identity"]
    assert "input signature differs: new column(s) hour" in blocked.failures[0].message
    # Allowed: the identity check passes with a note, and as task and target agree the
    # relative check still compares (0.85 falls 0.05 below the champion's 0.90).
    allowed = evaluate_gate(widened, champion=FRAUD_CHAMPION, allow_signature_change=True)
    identity = next(r for r in allowed.reasons if r.check == "champion.identity")
    assert identity.passed and "allowed by allow_signature_change" in identity.message
    assert [r.check for r in allowed.failures] == ["overall.roc_auc.max_drop_vs_champion"]
    assert "vs champion 0.9000" in allowed.failures[0].message


def test_the_same_model_compares_as_before() -> None:
    better = _evaluation(
        "classification", "is_fraud", list(reversed(FRAUD_INPUTS)), {"roc_auc": 0.92}
    )
    verdict = evaluate_gate(better, champion=FRAUD_CHAMPION)
    assert verdict.blessed
    identity = verdict.reasons[0]
    assert identity.check == "champion.identity" and "is the same model" in identity.message
    worse = _evaluation("classification", "is_fraud", FRAUD_INPUTS, {"roc_auc": 0.80})
    assert not evaluate_gate(worse, champion=FRAUD_CHAMPION).blessed


def test_registry_tags_identify_a_champion_whose_evaluation_does_not() -> None:
    """An older champion's evaluation lacks the signature; its version tags hold it."""
    champion = {
        "name": "m",
        "version": "3",
        "evaluation": {"metrics": {"roc_auc": 0.9}},
        "identity": {"task": "classification", "target": "is_fraud", "inputs": None},
    }
    regression = _evaluation("regression", "is_fraud", FRAUD_INPUTS, {"r2": 0.3})
    verdict = evaluate_gate(regression, champion=champion)
    assert [r.check for r in verdict.failures] == ["champion.identity"]
    same = _evaluation("classification", "is_fraud", FRAUD_INPUTS, {"roc_auc": 0.95})
    ok = evaluate_gate(same, champion=champion)
    assert ok.blessed and "records no inputs, not compared" in ok.reasons[0].message
