"""Two training pipelines of different task and target in one workdir (one registry).

The case that used to go wrong: every data set registered as ``kfgpu-model``, so a
regression model run after a classifier was blessed and promoted over it, and
``models:/kfgpu-model@champion`` then served another task with other inputs. Now each
registers under a name derived from its data and target, and forcing one name onto the
other is blocked by the gate with the reason, leaving both champions as they were.
(Two pipeline runs; the forced name goes through the same gate and register steps the
pipeline runs, without a third run.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kfgpu.local import LocalRun, run_local
from kfgpu.registry import local_tracking_uri, models

pytestmark = pytest.mark.slow

SMALL = {
    "max_epochs": 8,
    "hidden_sizes": "16",
    "learning_rate": 0.01,
    "early_stopping_patience": 0,
}


def _succeeded(run: LocalRun) -> list[str]:
    return [e["step"] for e in run.events if e["event"] == "success"]


def _summary(run: LocalRun, step: str) -> str:
    return next(e["summary"] for e in run.events if e["step"] == step and e["event"] == "success")


def _champions(uri: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in models.list_models(tracking_uri=uri):
        rows = models.list_versions(name, tracking_uri=uri)
        out[name] = next((r["version"] for r in rows if r["status"] == "champion"), None)
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A classifier on fraud, then a regressor on diabetes, into one workdir."""
    from sklearn.datasets import load_diabetes

    work = tmp_path_factory.mktemp("work")
    csv = work / "diabetes.csv"
    load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"}).to_csv(
        csv, index=False
    )
    uri = local_tracking_uri(work)
    common = {**SMALL, "mlflow_tracking_uri": uri}
    fraud = run_local(
        "training",
        {**common, "data_uri": "kfgpu://fraud?rows=8000&seed=0", "target": "is_fraud"},
        workdir=work,
    )
    # 442 rows: enough epochs at a higher rate that the model beats the constant predictor.
    diabetes_args = {
        **common,
        "data_uri": str(csv),
        "target": "progression",
        "max_epochs": 40,
    }
    diabetes = run_local("training", diabetes_args, workdir=work)
    return {
        "work": work,
        "uri": uri,
        "fraud": fraud,
        "diabetes": diabetes,
        "diabetes_args": diabetes_args,
    }


def test_each_data_set_registers_under_its_own_default_name(registry: dict[str, Any]) -> None:
    uri = registry["uri"]
    assert _succeeded(registry["fraud"])[-1] == "register_model"
    assert _succeeded(registry["diabetes"])[-1] == "register_model"
    assert _summary(registry["fraud"], "register_model").startswith(
        "registered fraud-is_fraud v1 and promoted it to champion"
    )
    # The second model did not replace the first: it is the first version of its own name.
    assert _summary(registry["diabetes"], "register_model").startswith(
        "registered diabetes-progression v1 and promoted it to champion (previous champion: none)"
    )
    assert _champions(uri) == {"diabetes-progression": "1", "fraud-is_fraud": "1"}
    (row,) = models.list_versions("diabetes-progression", tracking_uri=uri)
    assert (row["task"], row["target"]) == ("regression", "progression")
    verdict_path = registry["diabetes"].output_path("verdict")
    assert verdict_path is not None
    verdict = json.loads(verdict_path.read_text())
    assert verdict["registered_model_name"] == "diabetes-progression"
    assert verdict["champion"] is None  # nothing to compare with under its own name


def test_forcing_the_other_models_name_is_blocked_and_no_champion_changes(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    """The second run's model under the first one's name, through the steps the pipeline
    runs (check_gate, then register_model only if blessed): blocked, with the reason."""
    from kfgpu.errors import RegistryError
    from kfgpu.evaluation.release import check_gate_step, register_model_step

    uri = registry["uri"]
    before = _champions(uri)
    run = registry["diabetes"]
    evaluation, bundle = run.output_path("evaluation"), run.output_path("model")
    assert evaluation is not None and bundle is not None
    gate = check_gate_step(
        evaluation_path=str(evaluation),
        verdict_path=str(tmp_path / "verdict.json"),
        registered_model_name="fraud-is_fraud",
        mlflow_tracking_uri=uri,
        data_uri=registry["diabetes_args"]["data_uri"],
    )
    assert not gate.output.blessed
    assert gate.summary.startswith("blocked:")
    assert "champion fraud-is_fraud v1 is another model" in gate.summary
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    (failure,) = [r for r in verdict["reasons"] if not r["passed"]]
    assert failure["check"] == "champion.identity"
    message = failure["message"]
    assert "task regression vs the champion's classification" in message
    assert "target 'progression' vs the champion's 'is_fraud'" in message
    assert "missing column(s) account_age_days, amount" in message
    assert "new column(s) age, bmi" in message
    assert "another name (registered_model_name)" in message
    assert "allow_signature_change=true" in message
    # register_model refuses what the gate blocked; the registry refuses the promotion
    # even when asked directly; no champion changed.
    with pytest.raises(RegistryError, match="refusing to register a model the gate blocked"):
        register_model_step(
            bundle_path=str(bundle),
            evaluation_path=str(evaluation),
            verdict_path=str(tmp_path / "verdict.json"),
            mlflow_tracking_uri=uri,
        )
    models.register_bundle(str(bundle), name="fraud-is_fraud", tracking_uri=uri)
    with pytest.raises(RegistryError, match=r"another model \(task regression"):
        models.promote("fraud-is_fraud", tracking_uri=uri)
    assert _champions(uri) == before
