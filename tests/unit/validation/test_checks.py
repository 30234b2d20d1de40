"""Tests for kfgpu.validation.checks and report: each anomaly fires, errors raise together."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import ConfigError, KfgpuError, ValidationError
from kfgpu.validation import (
    Anomaly,
    CheckContext,
    ValidationResult,
    infer_schema,
    render_markdown,
    validate,
)

N = 64


@pytest.fixture
def frame() -> pd.DataFrame:
    """64 distinct rows: numeric with a few nulls, categorical, a balanced binary label."""
    rng = np.random.default_rng(1)
    age = rng.normal(40.0, 10.0, N)
    age[:4] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "income": np.arange(N) * 1000 + 17,
            # in blocks, not cycled: a 4-cycle would predict the 2-cycle label (leakage)
            "city": np.repeat(np.array(["paris", "rome", "oslo", "lima"], dtype=object), N // 4),
            "label": np.arange(N) % 2,
        }
    )


def by_check(result: ValidationResult, check: str) -> list[Anomaly]:
    return [a for a in result.anomalies if a.check == check]


def only(result: ValidationResult, check: str) -> Anomaly:
    found = by_check(result, check)
    assert len(found) == 1, result.anomalies
    return found[0]


# --- a clean table ---------------------------------------------------------------------------


def test_clean_frame_passes(frame: pd.DataFrame) -> None:
    result = validate(frame, "label")
    assert result.anomalies == ()
    assert result.ok and result.errors == [] and result.warnings == []
    assert result.task == "classification"
    assert result.schema == infer_schema(frame, "label")
    assert result.statistics == result.schema
    result.raise_for_errors()  # no error, no raise


def test_to_dict_is_json_ready(frame: pd.DataFrame) -> None:
    frame.loc[0, "label"] = 5  # a rare class -> one warning with a dict value
    d = validate(frame, "label").to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["ok"] is True
    assert d["n_warnings"] == 1 and d["n_errors"] == 0
    assert d["anomalies"][0]["check"] == "rare_classes"


# --- errors ----------------------------------------------------------------------------------


def test_missing_target_names_it_and_lists_columns(frame: pd.DataFrame) -> None:
    result = validate(frame, "churn")
    a = only(result, "target_present")
    assert a.severity == "error" and a.column == "churn"
    assert "'churn'" in a.message
    assert "pass --target with one of age, income, city, label" in a.message
    assert not result.ok
    assert result.task is None


def test_missing_target_lists_at_most_20_columns() -> None:
    df = pd.DataFrame({f"c{i:02d}": [1, 2] for i in range(30)})
    a = only(validate(df, "y"), "target_present")
    assert "c19" in a.message and "c20" not in a.message
    assert "(and 10 more)" in a.message
    assert a.value == [f"c{i:02d}" for i in range(20)]


def test_zero_rows_is_an_error(frame: pd.DataFrame) -> None:
    result = validate(frame.iloc[:0], "label")
    a = only(result, "non_empty")
    assert a.severity == "error" and a.column is None and "0 rows" in a.message
    assert not result.ok
    # nothing row-based piles on top of it
    assert {x.check for x in result.anomalies} == {"non_empty"}


def test_target_entirely_null_is_an_error(frame: pd.DataFrame) -> None:
    frame["label"] = np.nan
    result = validate(frame, "label")
    a = only(result, "target_not_null")
    assert a.severity == "error" and a.value == N
    assert "all 64 rows" in a.message
    assert not by_check(result, "class_count")


def test_single_class_names_value_and_count(frame: pd.DataFrame) -> None:
    frame["label"] = "yes"
    a = only(validate(frame, "label"), "class_count")
    assert a.severity == "error"
    assert "'yes'" in a.message and "64 rows" in a.message
    assert a.value == {"yes": 64}


def test_no_feature_columns_is_an_error() -> None:
    result = validate(pd.DataFrame({"label": [0, 1, 0, 1]}), "label")
    a = only(result, "has_features")
    assert a.severity == "error" and "no feature columns" in a.message
    assert not result.ok


def test_regression_on_text_target_is_an_error(frame: pd.DataFrame) -> None:
    a = only(validate(frame, "city", task="regression"), "target_kind")
    assert a.severity == "error" and "categorical" in a.message


def test_duplicate_column_names_is_an_error(frame: pd.DataFrame) -> None:
    df = pd.concat([frame, frame[["city"]]], axis=1)
    a = only(validate(df, "label"), "unique_column_names")
    assert a.severity == "error" and a.column == "city" and a.value == 2


def test_pinned_missing_column_and_kind_mismatch(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    df = frame.drop(columns=["age"]).assign(income=frame["income"].astype(str))
    result = validate(df, "label", schema=pinned)
    missing = only(result, "schema_missing_column")
    assert missing.severity == "error" and missing.column == "age"
    kind = only(result, "schema_kind_mismatch")
    assert kind.severity == "error" and kind.column == "income"
    assert kind.value == {"expected": "numeric", "actual": "categorical"}
    assert result.schema is pinned
    assert result.statistics.column("income").kind == "categorical"  # type: ignore[union-attr]


def test_raise_for_errors_lists_every_error_on_one_line(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    df = pd.DataFrame({"label": [np.nan] * 5})
    result = validate(df, "label", schema=pinned)
    errors = result.errors
    assert {a.check for a in errors} >= {
        "target_not_null",
        "has_features",
        "schema_missing_column",
    }
    assert len(errors) == 2 + 3  # target null, no features, age/income/city missing
    with pytest.raises(ValidationError) as info:
        result.raise_for_errors()
    message = str(info.value)
    assert "\n" not in message
    assert message.count("; ") >= len(errors) - 1
    for a in errors:
        assert f"{a.column if a.column is not None else 'table'}: {a.message}" in message
    assert "table: the table has no feature columns" in message
    assert len(info.value.anomalies) == len(errors)
    assert all(x["severity"] == "error" for x in info.value.anomalies)
    assert isinstance(info.value, KfgpuError)


# --- warnings --------------------------------------------------------------------------------


def test_null_fraction_above_threshold_warns(frame: pd.DataFrame) -> None:
    frame.loc[: N // 2, "age"] = np.nan  # 33 of 64 null
    result = validate(frame, "label")
    a = only(result, "null_fraction")
    assert a.severity == "warning" and a.column == "age"
    assert a.value == pytest.approx(33 / 64, abs=1e-6)
    assert result.ok
    assert not by_check(validate(frame, "label", max_null_fraction=0.6), "null_fraction")


def test_null_fraction_at_threshold_does_not_warn(frame: pd.DataFrame) -> None:
    frame.loc[: N // 2 - 1, "age"] = np.nan  # exactly 0.5
    assert not by_check(validate(frame, "label"), "null_fraction")


def test_constant_feature_warns(frame: pd.DataFrame) -> None:
    frame["country"] = "fr"
    frame["zero"] = 0.0
    result = validate(frame, "label")
    found = {a.column: a for a in by_check(result, "constant_feature")}
    assert set(found) == {"country", "zero"}
    assert found["country"].value == "fr" and "'fr'" in found["country"].message
    assert result.ok


def test_duplicate_rows_warn_with_count(frame: pd.DataFrame) -> None:
    df = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    result = validate(df, "label")
    a = only(result, "duplicate_rows")
    assert a.severity == "warning" and a.value == 3
    assert result.ok


def test_duplicate_rows_with_unhashable_cells() -> None:
    df = pd.DataFrame({"tags": [[1], [1], [2]], "label": [0, 0, 1]})
    assert only(validate(df, "label"), "duplicate_rows").value == 1


def test_null_target_rows_warn_with_count(frame: pd.DataFrame) -> None:
    frame["label"] = frame["label"].astype(float)
    frame.loc[:4, "label"] = np.nan
    result = validate(frame, "label")
    a = only(result, "target_nulls")
    assert a.severity == "warning" and a.value == 5 and "dropped" in a.message
    assert result.ok


def test_rare_class_warns(frame: pd.DataFrame) -> None:
    frame.loc[0, "label"] = 7
    result = validate(frame, "label")
    a = only(result, "rare_classes")
    assert a.severity == "warning" and a.value == {"7": 1}
    assert result.ok


def test_pinned_extra_column_warns(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    result = validate(frame.assign(extra=np.arange(N)), "label", schema=pinned)
    a = only(result, "schema_extra_column")
    assert a.severity == "warning" and a.column == "extra"
    assert result.ok


def test_pinned_unseen_categories_warn_with_fraction(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    frame.loc[:7, "city"] = "tokyo"  # 8 of 64
    result = validate(frame, "label", schema=pinned)
    a = only(result, "schema_unseen_categories")
    assert a.severity == "warning" and a.column == "city"
    assert a.value == pytest.approx(8 / 64)
    assert "'tokyo'" in a.message
    assert result.ok


def test_unseen_categories_skipped_for_truncated_domain() -> None:
    ref = pd.DataFrame({"id": [f"u{i}" for i in range(1500)], "label": [0, 1] * 750})
    new = pd.DataFrame({"id": ["brand-new", "u1"], "label": [0, 1]})
    result = validate(new, "label", schema=infer_schema(ref, "label"))
    assert not by_check(result, "schema_unseen_categories")


def test_pinned_out_of_range_warns(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    frame.loc[0, "income"] = -5
    frame.loc[1, "income"] = 10**9
    frame.loc[2, "income"] = 10**9
    result = validate(frame, "label", schema=pinned)
    a = only(result, "schema_out_of_range")
    assert a.column == "income" and a.severity == "warning"
    assert a.value == {"below": 1, "above": 2, "fraction": pytest.approx(3 / 64, abs=1e-6)}
    assert result.ok


def test_same_data_against_its_own_schema_is_clean(frame: pd.DataFrame) -> None:
    result = validate(frame, "label", schema=infer_schema(frame, "label"))
    assert result.anomalies == ()


# --- task and options ------------------------------------------------------------------------


def test_task_override_skips_class_checks(frame: pd.DataFrame) -> None:
    frame["label"] = 1
    result = validate(frame, "label", task="regression")
    assert result.task == "regression"
    assert result.statistics.task == "regression"
    assert result.statistics.label_distribution is None
    assert not by_check(result, "class_count")


def test_auto_task_prefers_pinned_schema(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame.assign(label=frame["age"]), "label")
    assert pinned.task == "regression"
    result = validate(frame.assign(label=frame["age"].fillna(0.0)), "label", schema=pinned)
    assert result.task == "regression"
    assert validate(frame, "label", schema=pinned).task == "regression"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "ranking"}, "task is 'ranking'"),
        ({"max_null_fraction": 1.5}, "max_null_fraction is 1.5"),
        ({"max_null_fraction": -0.1}, "max_null_fraction"),
    ],
)
def test_bad_options_raise_config_error(
    frame: pd.DataFrame, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(frame, "label", **kwargs)  # type: ignore[arg-type]


def test_empty_target_name_is_config_error(frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="target"):
        validate(frame, "")


def test_custom_checks_replace_the_defaults(frame: pd.DataFrame) -> None:
    def wide(ctx: CheckContext) -> list[Anomaly]:
        n = len(ctx.features)
        return [Anomaly(None, "too_wide", "warning", f"{n} features", n)] if n > 2 else []

    result = validate(frame.iloc[:0], "label", checks=[wide])
    assert [a.check for a in result.anomalies] == ["too_wide"]
    assert result.anomalies[0].value == 3


def test_anomaly_messages_are_single_line(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    df = frame.drop(columns=["age"]).assign(city="x\ny", extra=1)
    df = pd.concat([df, df.iloc[:2]], ignore_index=True)
    result = validate(df, "label", schema=pinned)
    assert len(result.anomalies) >= 4
    for a in result.anomalies:
        assert "\n" not in a.one_line()


# --- markdown --------------------------------------------------------------------------------


def test_markdown_failed_report_lists_anomalies(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    df = frame.drop(columns=["age"]).assign(**{"new|col": 1})
    md = render_markdown(validate(df, "label", schema=pinned))
    assert md.startswith("# Data validation report\n")
    assert "**Verdict: FAILED**" in md and "PASSED" not in md
    assert "| **error** | `age` | schema_missing_column |" in md
    assert "| warning | `new\\|col` | schema_extra_column |" in md
    assert "Schema: pinned" in md
    assert md.index("**error**") < md.index("| warning |")


def test_markdown_passed_report_has_stats(frame: pd.DataFrame) -> None:
    md = render_markdown(validate(frame, "label"))
    assert "**Verdict: PASSED**" in md and "FAILED" not in md
    assert "No anomalies found." in md
    assert "## Column statistics" in md
    assert "| `city` | categorical | object | 0.0% | 4 |" in md
    assert "| `age` | numeric | float64 | 6.2% |" in md
    assert "| `label` (target) |" in md
    assert "## Label distribution" in md and "| 0 | 32 | 50.0% |" in md
