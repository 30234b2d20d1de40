"""The monitor's verdicts on real traffic of a trained bundle: quiet on the training
distribution, an alarm on drift, data-quality failures named, concept drift from labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import ConfigError
from kfgpu.monitoring.monitor import MonitorPolicy, monitor


def _logs(bundle_path: Path, rows: int, *, seed: int, drift: float = 0.0) -> pd.DataFrame:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud

    df = fraud(rows, seed=seed, drift=drift)
    labels = df.pop("is_fraud")
    pred = load_bundle(bundle_path).predict(df)
    ids = [f"r{seed}-{i}" for i in range(rows)]
    logs = pd.concat([df, pred], axis=1).assign(_request_id=ids)
    return logs.assign(_label=labels.to_numpy())


def _judge(bundle_path: Path, logs: pd.DataFrame, **kw):
    from kfgpu.bundle import load_reference, read_description
    from kfgpu.monitoring.drift_check import ModelView

    reference = load_reference(str(bundle_path))
    return monitor(
        logs.drop(columns=["_label"]),
        reference,
        description=read_description(bundle_path),
        model=ModelView.from_bundle(str(bundle_path), reference),
        **kw,
    )


def test_quiet_on_the_training_distribution(fraud_bundle: Path) -> None:
    verdict = _judge(fraud_bundle, _logs(fraud_bundle, 2000, seed=50))
    assert verdict.status == "ok" and not verdict.retrain and verdict.alarms == []
    assert verdict.drift is not None and not verdict.drift["dataset_drift"]


def test_drift_asks_for_retraining(fraud_bundle: Path) -> None:
    verdict = _judge(fraud_bundle, _logs(fraud_bundle, 2000, seed=51, drift=0.6))
    assert verdict.retrain and "data_drift" in verdict.alarms
    assert "retrain: data drift: important features: drifted columns carry" in verdict.summary
    assert verdict.drift is not None and verdict.drift["model"]["importance"]


def test_too_few_rows_give_no_verdict(fraud_bundle: Path) -> None:
    verdict = _judge(fraud_bundle, _logs(fraud_bundle, 100, seed=52, drift=0.9))
    assert verdict.status == "insufficient_data" and not verdict.retrain
    assert "100 logged rows < min_rows 500" in verdict.summary


def test_data_quality_is_reported_but_does_not_retrain(fraud_bundle: Path) -> None:
    logs = _logs(fraud_bundle, 2000, seed=53)
    logs.loc[: len(logs) // 2, "amount"] = np.nan
    logs.loc[:300, "country"] = "ATLANTIS"
    verdict = _judge(fraud_bundle, logs, policy=MonitorPolicy(retrain_on=("data_drift",)))
    checks = {(q["column"], q["check"]) for q in verdict.quality}
    assert ("amount", "null_increase") in checks
    assert ("country", "unseen_categories") in checks
    assert "data_quality" in verdict.alarms and verdict.status == "alarm"
    assert not verdict.retrain or "data_drift" in verdict.alarms


def test_concept_drift_from_late_labels(fraud_bundle: Path) -> None:
    logs = _logs(fraud_bundle, 2000, seed=54)
    truth = logs[["_request_id", "_label"]].rename(columns={"_label": "is_fraud"})
    ok = _judge(fraud_bundle, logs, labels=truth)
    assert ok.concept is not None and not ok.concept["drifted"]
    assert ok.concept["labelled_rows"] == 2000
    # The world changed: the labels now disagree with a third of the predictions.
    flipped = truth.copy()
    flip = np.random.default_rng(0).random(len(flipped)) < 0.33
    flipped.loc[flip, "is_fraud"] = 1 - flipped.loc[flip, "is_fraud"]
    bad = _judge(fraud_bundle, logs, labels=flipped)
    assert bad.concept["drifted"] and "concept_drift" in bad.alarms and bad.retrain
    # Flipping a share f of the labels moves accuracy a to a - f(2a - 1) (the fixture's
    # two-epoch model is weak, so its a is well under 1): the live figure must follow that.
    a = ok.concept["live"]
    assert a > 0.6, ok.concept
    assert bad.concept["live"] == pytest.approx(a - flip.mean() * (2 * a - 1), abs=0.03)


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        ({"min_rows": 0}, r"^min_rows=0 is invalid"),
        ({"max_unseen_fraction": 2}, r"^max_unseen_fraction=2 is invalid"),
        ({"retrain_on": ["weather"]}, r"names \['weather'\]"),
        ({"drift": {"numeric_method": "vibes"}}, "numeric_method"),
        ({"min_row": 5}, r"unknown key\(s\) \['min_row'\]"),
    ],
)
def test_bad_policies_name_the_field(policy: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MonitorPolicy.from_dict(policy)


def test_a_drifted_column_the_model_ignores_does_not_retrain(unused_column_bundle: Path) -> None:
    """Column drift on a column the model does not use is reported; alone it does not
    make the monitoring pipeline retrain."""
    from .conftest import UNUSED, with_unused

    logs = _logs(unused_column_bundle, 2000, seed=55)
    logs = with_unused(logs, seed=55)
    logs[UNUSED] = logs[UNUSED] + 3 * logs[UNUSED].std()
    verdict = _judge(unused_column_bundle, logs)
    assert verdict.drift is not None
    assert UNUSED in verdict.drift["drifted_columns"]
    column = next(c for c in verdict.drift["columns"] if c["column"] == UNUSED)
    assert column["importance"] == 0.0
    assert verdict.drift["status"] == "no_drift" and not verdict.retrain
    assert "data_drift" not in verdict.alarms
    # The same logs judged without the model fall back to the share rule, and alarm.
    from kfgpu.bundle import load_reference, read_description

    plain = monitor(
        logs.drop(columns=["_label"]),
        load_reference(str(unused_column_bundle)),
        description=read_description(unused_column_bundle),
    )
    assert plain.retrain and plain.drift is not None
    assert plain.drift["rules"] == ["share_of_columns"]


def test_policy_from_a_file_path_or_uri(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("min_rows: 50\ndrift: {alpha: 0.01}\n")
    assert MonitorPolicy.parse(str(path)).min_rows == 50
    assert MonitorPolicy.parse(f"file://{path}").drift == {"alpha": 0.01}
    plain = tmp_path / "policy"
    plain.write_text('{"min_rows": 70}')
    assert MonitorPolicy.parse(str(plain)).min_rows == 70
    with pytest.raises(ConfigError, match=r"policy='/nope/policy\.yaml' names a file that"):
        MonitorPolicy.parse("/nope/policy.yaml")
    (tmp_path / "list.yaml").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"policy file .* must be a mapping"):
        MonitorPolicy.parse(str(tmp_path / "list.yaml"))


def test_policy_parses_yaml_and_json() -> None:
    assert MonitorPolicy.parse("min_rows: 50\nretrain_on: [concept_drift]\n").min_rows == 50
    assert MonitorPolicy.parse('{"max_accuracy_drop": 0.1}').max_accuracy_drop == 0.1
    assert MonitorPolicy.parse("") == MonitorPolicy()
    with pytest.raises(ConfigError, match="must be a mapping"):
        MonitorPolicy.parse("[1, 2]")


def test_validate_batch_reports_the_model_aware_verdict(
    unused_column_bundle: Path, tmp_path: Path
) -> None:
    from kfgpu.data import fraud, write_parquet
    from kfgpu.monitoring.step import validate_batch_step

    from .conftest import UNUSED, with_unused

    batch = with_unused(fraud(3000, seed=60, drift=0.6), seed=60).drop(columns=["is_fraud"])
    write_parquet(batch, str(tmp_path / "batch.parquet"))
    result = validate_batch_step(
        data_uri=str(tmp_path / "batch.parquet"),
        bundle_path=str(unused_column_bundle),
        dataset_path=str(tmp_path / "out.parquet"),
        report_path=str(tmp_path / "report.md"),
        policy=f"drift: {{ignore: [{UNUSED}]}}",
    )
    assert result.metrics["dataset_drift"] == 1.0
    assert "drift: important features: drifted columns carry" in result.summary
    report = (tmp_path / "report.md").read_text()
    assert "- drift: drift: important features" in report
    assert "drifted column amount: wasserstein" in report


def test_validate_batch_streams_a_csv_and_checks_a_bounded_sample(
    unused_column_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch larger than the sample: every row is copied and counted, the checks run on
    the sample, and a batch that breaks leaves no dataset that looks complete."""
    from kfgpu.data import fraud
    from kfgpu.errors import DataError
    from kfgpu.monitoring import step as monitoring_step

    from .conftest import with_unused

    monkeypatch.setattr(monitoring_step, "BATCH_SAMPLE_ROWS", 500)
    batch = with_unused(fraud(3000, seed=61), seed=61).drop(columns=["is_fraud"])
    batch.to_csv(tmp_path / "batch.csv", index=False)
    out = tmp_path / "out"
    result = monitoring_step.validate_batch_step(
        data_uri=str(tmp_path / "batch.csv"),
        bundle_path=str(unused_column_bundle),
        dataset_path=str(out),
        report_path=str(tmp_path / "report.md"),
    )
    assert result.metrics["rows"] == 3000
    assert "checks on a uniform sample of 500 rows" in (tmp_path / "report.md").read_text()
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, batch, check_dtype=False)
    assert result.metadata["dataset"]["rows"] == 3000

    # A CSV that breaks in a later chunk: the step fails, its report says why, no output.
    text = (tmp_path / "batch.csv").read_text().splitlines()
    text[2500] = '"unterminated'
    (tmp_path / "broken.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError):
        monitoring_step.validate_batch_step(
            data_uri=str(tmp_path / "broken.csv"),
            bundle_path=str(unused_column_bundle),
            dataset_path=str(tmp_path / "out2"),
            report_path=str(tmp_path / "report2.md"),
        )
    assert not (tmp_path / "out2").exists()
    assert "**FAILED**" in (tmp_path / "report2.md").read_text()


def test_trigger_starts_nothing_on_a_verdict_without_retrain(
    tmp_path: Path, webhook: tuple[str, list[dict]]
) -> None:
    import json

    from kfgpu.monitoring.step import trigger_retraining_step

    url, received = webhook
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"retrain": False, "summary": "ok: no drift"}))
    result = trigger_retraining_step(
        verdict_path=str(verdict), run_path=str(tmp_path / "run.json"), webhook_url=url
    )
    assert received == [] and "does not ask for retraining" in result.summary
    verdict.write_text(json.dumps({"retrain": True, "summary": "retrain: data drift"}))
    trigger_retraining_step(
        verdict_path=str(verdict), run_path=str(tmp_path / "run.json"), webhook_url=url
    )
    assert len(received) == 1 and received[0]["event"] == "kfgpu.retrain"
