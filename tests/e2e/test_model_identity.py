"""Two training pipelines of different task and target in one workdir (one registry).

The case that used to go wrong: every data set registered as ``kfgpu-model``, so a
regression model run after a classifier was blessed and promoted over it, and
``models:/kfgpu-model@champion`` then served another task with other inputs. Now each
registers under a name derived from its data and target, and forcing one name onto the
other is blocked by the gate with the reason, leaving both champions as they were.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfgpu.local import LocalRun, run_local
from kfgpu.registry import local_tracking_uri, models

pytestmark = pytest.mark.slow

SMALL = {"max_epochs": 5, "hidden_sizes": "16", "early_stopping_patience": 0}


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
        {**common, "data_uri": "kfgpu://fraud?rows=3000&seed=0", "target": "is_fraud"},
        workdir=work,
    )
    # 442 rows: enough epochs at a higher rate that the model beats the constant predictor.
    diabetes_args = {
        **common,
        "data_uri": str(csv),
        "target": "progression",
        "max_epochs": 40,
        "learning_rate": 0.01,
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
    registry: dict[str, Any],
) -> None:
    uri = registry["uri"]
    before = _champions(uri)
    forced = run_local(
        "training",
        {**registry["diabetes_args"], "registered_model_name": "fraud-is_fraud"},
        workdir=registry["work"],
    )
    steps = _succeeded(forced)
    assert "check_gate" in steps and "register_model" not in steps
    summary = _summary(forced, "check_gate")
    assert summary.startswith("blocked:")
    assert "champion fraud-is_fraud v1 is another model" in summary
    verdict_path = forced.output_path("verdict")
    assert verdict_path is not None
    verdict = json.loads(verdict_path.read_text())
    assert not verdict["blessed"]
    (failure,) = [r for r in verdict["reasons"] if not r["passed"]]
    assert failure["check"] == "champion.identity"
    message = failure["message"]
    assert "task regression vs the champion's classification" in message
    assert "target 'progression' vs the champion's 'is_fraud'" in message
    assert "missing column(s) account_age_days, amount" in message
    assert "new column(s) age, bmi" in message
    assert "another name (registered_model_name)" in message
    assert "allow_signature_change=true" in message
    # No champion changed and nothing was registered under either name.
    assert _champions(uri) == before
    assert [r["version"] for r in models.list_versions("fraud-is_fraud", tracking_uri=uri)] == ["1"]
    # The registry refuses the same promotion when asked directly.
    from kfgpu.errors import RegistryError

    bundle = forced.output_path("model")
    assert bundle is not None
    models.register_bundle(str(bundle), name="fraud-is_fraud", tracking_uri=uri)
    with pytest.raises(RegistryError, match=r"another model \(task regression"):
        models.promote("fraud-is_fraud", tracking_uri=uri)
    assert _champions(uri) == before
