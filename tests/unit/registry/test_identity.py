"""Model identity: the default registered name, and what makes two versions the same model."""

from __future__ import annotations

import pytest

from kfgpu.description import BundleDescription
from kfgpu.errors import ConfigError
from kfgpu.registry.identity import (
    ModelIdentity,
    check_model_name,
    default_model_name,
    resolve_model_name,
)


@pytest.mark.parametrize(
    ("uri", "target", "want"),
    [
        ("kfgpu://fraud?rows=100000&seed=0", "is_fraud", "fraud-is_fraud"),
        ("kfgpu://fraud?rows=20000&seed=7&drift=0.5", "is_fraud", "fraud-is_fraud"),
        ("kfgpu://breast_cancer", "target", "breast_cancer-target"),
        ("/home/me/data/diabetes.csv", "progression", "diabetes-progression"),
        ("my data/sales 2024.csv.gz", "churned?", "sales-churned"),
        # Snapshots of the same data keep one name (a scheduled retrain stays comparable).
        ("s3://b/fraud/fraud_2026-12-01.parquet", "is_fraud", "fraud-is_fraud"),
        ("s3://b/fraud/date=2026-12-01/part-00000.parquet", "is_fraud", "fraud-is_fraud"),
        ("/srv/churn/data.csv", "churned", "churn-churned"),
        ("/x/cifar10.csv", "label", "cifar10-label"),
        ("s3://AKIA:s3cr3t@bucket/sales/churn.parquet?X-Amz-Signature=abc", "y", "churn-y"),
        ("gs://bucket/tables/events/*.parquet", "label", "events-label"),
        ("https://host.example/export", "label", "export-label"),
        ("", "", "data-target"),
    ],
)
def test_default_name_follows_the_data_and_target(uri: str, target: str, want: str) -> None:
    name = default_model_name(uri, target)
    assert name == want
    assert check_model_name(name) == name  # MLflow takes it, and models:/NAME@ALIAS parses


def test_default_names_never_carry_credentials_or_queries() -> None:
    name = default_model_name("s3://AKIA:s3cr3t@bucket/a/b.csv?token=t0k3n", "y")
    assert "s3cr3t" not in name and "AKIA" not in name and "t0k3n" not in name


def test_default_name_is_bounded() -> None:
    name = default_model_name("/x/" + "a" * 300 + ".csv", "b" * 300)
    assert len(name) <= 100 and name.startswith("a") and "-b" in name


def test_resolve_prefers_the_given_name_and_checks_it() -> None:
    assert resolve_model_name(" mine ", data_uri="kfgpu://fraud", target="is_fraud") == "mine"
    assert resolve_model_name("", data_uri="kfgpu://fraud", target="is_fraud") == "fraud-is_fraud"
    with pytest.raises(ConfigError, match=r"registered_model_name='team/fraud' contains '/'"):
        resolve_model_name("team/fraud", data_uri="", target="y")
    with pytest.raises(ConfigError, match="no target to derive it from"):
        resolve_model_name("", data_uri="kfgpu://fraud", target="")


def _identity(task: str, target: str, inputs: dict[str, str] | None) -> ModelIdentity:
    return ModelIdentity.from_description(
        BundleDescription(
            task=task,  # type: ignore[arg-type]
            target=target,
            model_family="tabular_mlp",
            model_config={},
            signature={"inputs": [{"name": n, "kind": k} for n, k in (inputs or {}).items()]},
        )
    )


def test_identities_compare_task_target_and_inputs() -> None:
    fraud = _identity("classification", "is_fraud", {"amount": "numeric", "mcc": "categorical"})
    same = _identity("classification", "is_fraud", {"mcc": "categorical", "amount": "numeric"})
    assert fraud.differences(same) == []  # column order is not identity
    assert fraud.signature_digest == same.signature_digest
    diabetes = _identity("regression", "progression", {"bmi": "numeric", "bp": "numeric"})
    diffs = diabetes.differences(fraud)
    assert diffs[0] == "task regression vs the champion's classification"
    assert diffs[1] == "target 'progression' vs the champion's 'is_fraud'"
    assert "new column(s) bmi, bp" in diffs[2] and "missing column(s) amount, mcc" in diffs[2]
    recoded = _identity("classification", "is_fraud", {"amount": "numeric", "mcc": "numeric"})
    assert recoded.differences(fraud) == [
        "input signature differs: changed kind mcc categorical->numeric"
    ]
    assert recoded.same_task_and_target(fraud) and not diabetes.same_task_and_target(fraud)


def test_identity_round_trips_through_version_tags_and_tolerates_old_versions() -> None:
    fraud = _identity("classification", "is_fraud", {"amount": "numeric", "mcc": "categorical"})
    tags = fraud.to_tags()
    assert ModelIdentity.from_tags(tags) == fraud
    assert len(tags["kfgpu.signature"]) == 64
    # A version registered before inputs were recorded: only task and target compare.
    old = ModelIdentity.from_tags({"kfgpu.task": "classification", "kfgpu.target": "is_fraud"})
    assert old.inputs is None and fraud.differences(old) == []
    assert _identity("regression", "is_fraud", {}).differences(old) == [
        "task regression vs the champion's classification"
    ]
