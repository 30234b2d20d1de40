"""Tests for the data-quality checks: all_null, infinite_values, mixed_types,
high_cardinality, label_leakage, and the thresholds of ``validate``."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import ConfigError
from kfgpu.validation import Anomaly, CheckContext, ValidationResult, infer_schema, validate
from kfgpu.validation.checks import (
    DEFAULT_CHECKS,
    LEAKAGE_MIN_ROWS,
    ValidationOptions,
    check_all_null,
    check_high_cardinality,
    check_infinite_values,
    check_label_leakage,
    check_mixed_types,
)

N = 200


@pytest.fixture
def frame() -> pd.DataFrame:
    """200 rows; the label depends on ``x`` with noise, so nothing leaks it."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=N)
    return pd.DataFrame(
        {
            "x": x,
            "z": rng.normal(size=N),
            "city": rng.choice(np.array(["a", "b", "c", "d"], dtype=object), N),
            "label": (x + rng.normal(size=N) > 0).astype(int),
        }
    )


def found(result: ValidationResult, check: str) -> list[Anomaly]:
    return [a for a in result.anomalies if a.check == check]


def only(result: ValidationResult, check: str) -> Anomaly:
    hits = found(result, check)
    assert len(hits) == 1, [a.one_line() for a in result.anomalies]
    return hits[0]


def test_new_checks_are_defaults() -> None:
    for check in (
        check_all_null,
        check_infinite_values,
        check_mixed_types,
        check_high_cardinality,
        check_label_leakage,
    ):
        assert check in DEFAULT_CHECKS


def test_fixture_is_clean(frame: pd.DataFrame) -> None:
    assert validate(frame, "label").anomalies == ()


# --- all_null --------------------------------------------------------------------------------


def test_all_null_feature_warns_once(frame: pd.DataFrame) -> None:
    frame["empty"] = np.nan
    frame["none"] = pd.Series([None] * N, dtype=object)
    result = validate(frame, "label")
    hits = {a.column: a for a in found(result, "all_null")}
    assert set(hits) == {"empty", "none"}
    assert hits["empty"].severity == "warning" and hits["empty"].value == N
    assert "'empty'" in hits["empty"].message and "all 200 rows" in hits["empty"].message
    assert not found(result, "constant_feature")  # not reported twice as "constant"
    assert result.ok


def test_all_null_ignores_the_target_and_empty_tables(frame: pd.DataFrame) -> None:
    assert not found(validate(frame.iloc[:0], "label"), "all_null")
    frame["label"] = np.nan
    assert not found(validate(frame, "label"), "all_null")


# --- infinite_values -------------------------------------------------------------------------


def test_infinite_values_count_and_fraction(frame: pd.DataFrame) -> None:
    frame.loc[[0, 1, 2], "x"] = np.inf
    frame.loc[3, "x"] = -np.inf
    a = only(validate(frame, "label"), "infinite_values")
    assert a.severity == "warning" and a.column == "x"
    assert a.value == {"count": 4, "fraction": 0.02, "pos": 3, "neg": 1}
    assert "4 infinite" in a.message and "2.0%" in a.message


def test_infinite_values_in_target_and_ints_are_fine(frame: pd.DataFrame) -> None:
    frame["n"] = np.arange(N)
    frame["y"] = frame["x"].where(frame.index != 5, -np.inf)
    result = validate(frame, "y")
    assert [a.column for a in found(result, "infinite_values")] == ["y"]


# --- mixed_types -----------------------------------------------------------------------------


def test_numbers_with_junk_text_warn(frame: pd.DataFrame) -> None:
    values = [f"{v:.2f}" for v in frame["z"]]
    values[:6] = ["abc", "n/a?", "abc", "-", "12", "7.5"]
    frame["z"] = values
    a = only(validate(frame, "label"), "mixed_types")
    assert a.severity == "warning" and a.column == "z"
    assert a.value["numeric_fraction"] == pytest.approx(196 / 200)  # type: ignore[index]
    assert a.value["examples"] == ["abc", "-", "n/a?"]  # type: ignore[index]
    assert "98.0%" in a.message and "'abc'" in a.message


def test_python_types_mixed_warn(frame: pd.DataFrame) -> None:
    frame["code"] = pd.Series([1, "2"] * (N // 2), dtype=object)
    a = only(validate(frame, "label", leakage_threshold=1.0), "mixed_types")
    assert a.value["types"] == {"int": 100, "str": 100}  # type: ignore[index]
    assert "2 Python types" in a.message


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b"] * (N // 2),  # text only
        ["1", "2.5"] * (N // 2),  # numbers as text only
        [1, 2.5] * (N // 2),  # ints and floats: one kind
    ],
)
def test_one_kind_of_value_does_not_warn(frame: pd.DataFrame, values: list[object]) -> None:
    frame["v"] = pd.Series(values, dtype=object)
    assert not found(validate(frame, "label", leakage_threshold=1.0), "mixed_types")


def test_mixed_types_string_dtype(frame: pd.DataFrame) -> None:
    frame["s"] = pd.array(["1", "x", "2", "3"] * (N // 4), dtype="string")
    a = only(validate(frame, "label"), "mixed_types")
    assert a.value["numeric_fraction"] == pytest.approx(0.75)  # type: ignore[index]


# --- high_cardinality ------------------------------------------------------------------------


def test_id_like_column_warns(frame: pd.DataFrame) -> None:
    frame["user"] = [f"u{i:04d}" for i in range(N)]
    a = only(validate(frame, "label"), "high_cardinality")
    assert a.severity == "warning" and a.column == "user"
    assert a.value == {"n_unique": N, "fraction": 1.0}
    assert "drop it or hash it" in a.message


def test_high_cardinality_thresholds(frame: pd.DataFrame) -> None:
    frame["user"] = [f"u{i % 60}" for i in range(N)]  # 60 distinct, 30% of rows
    assert not found(validate(frame, "label"), "high_cardinality")
    result = validate(frame, "label", max_category_fraction=0.2)
    assert only(result, "high_cardinality").column == "user"
    frame["few"] = [f"u{i}" for i in range(40)] * 5  # 40 distinct: below 50
    result = validate(frame, "label", max_category_fraction=0.1)
    assert {a.column for a in found(result, "high_cardinality")} == {"user"}
    assert not found(
        validate(frame, "label", max_categories=100, max_category_fraction=0.1), "high_cardinality"
    )


def test_high_cardinality_numeric_is_fine(frame: pd.DataFrame) -> None:
    frame["amount"] = np.arange(N) * 1.5
    assert not found(validate(frame, "label"), "high_cardinality")


# --- label_leakage ---------------------------------------------------------------------------


def test_copy_of_the_label_is_an_error(frame: pd.DataFrame) -> None:
    frame["label_code"] = np.where(frame["label"] == 1, "yes", "no")
    result = validate(frame, "label")
    a = only(result, "label_leakage")
    assert a.severity == "error" and a.column == "label_code"
    assert a.value == {"score": 1.0, "metric": "balanced_accuracy"}
    assert "'label_code'" in a.message and "1.0000" in a.message
    assert "remove the column" in a.message
    assert not result.ok


def test_numeric_leak_through_quantile_bins() -> None:
    # a continuous score that separates the classes: label 1 always above label 0
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "label": (x + rng.normal(size=n) > 0).astype(int)})
    df["score"] = df["label"] * 10 + rng.uniform(size=n)
    a = only(validate(df, "label"), "label_leakage")
    assert a.column == "score"
    assert a.value["score"] >= 0.99  # type: ignore[index]


def test_regression_leak_uses_r2() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    # uniform: 32 quantile bins leave 1/32 of its range per bin (R^2 about 0.999); a
    # Gaussian feature's wide tail bins leave R^2 near 0.99, on the threshold
    df = pd.DataFrame({"x": rng.uniform(size=n), "z": rng.normal(size=n)})
    df["y"] = df["x"] * 3.0 + 1.0
    result = validate(df, "y")
    assert result.task == "regression"
    a = only(result, "label_leakage")
    assert a.column == "x" and a.value["metric"] == "r2"  # type: ignore[index]
    assert a.value["score"] >= 0.99  # type: ignore[index]
    assert "R^2" in a.message
    noisy = df.assign(y=df["x"] + rng.normal(size=n))
    assert not found(validate(noisy, "y"), "label_leakage")


def test_leakage_threshold_option(frame: pd.DataFrame) -> None:
    frame["label_code"] = np.where(frame["label"] == 1, "yes", "no")
    assert not found(validate(frame, "label", leakage_threshold=1.0), "label_leakage")
    assert not found(validate(frame, "label", leakage_threshold=5), "label_leakage")
    lowered = validate(frame, "label", leakage_threshold=0.6)
    assert {a.column for a in found(lowered, "label_leakage")} == {"label_code", "x"}


def test_leakage_needs_enough_rows(frame: pd.DataFrame) -> None:
    frame["label_code"] = frame["label"].map({0: "no", 1: "yes"})
    small = frame.iloc[: LEAKAGE_MIN_ROWS - 1]
    assert not found(validate(small, "label"), "label_leakage")
    # null targets do not count towards the minimum
    nulls = frame.iloc[: LEAKAGE_MIN_ROWS + 5].copy()
    nulls["label"] = nulls["label"].astype(float)
    nulls.loc[nulls.index[:10], "label"] = np.nan
    assert not found(validate(nulls, "label"), "label_leakage")
    assert only(validate(frame.iloc[:LEAKAGE_MIN_ROWS], "label"), "label_leakage")


def test_leakage_skips_single_or_rare_classes(frame: pd.DataFrame) -> None:
    frame["label_code"] = "x"
    frame["label"] = 1
    assert not found(validate(frame, "label"), "label_leakage")  # class_count reports it
    frame["label"] = 0
    frame.loc[:3, "label"] = 1  # 4 positives: too few to score
    frame["label_code"] = frame["label"].astype(str)
    assert not found(validate(frame, "label"), "label_leakage")


def test_leakage_unhashable_and_datetime_features(frame: pd.DataFrame) -> None:
    frame["tags"] = [[int(v)] for v in frame["label"]]
    frame["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(N), unit="h")
    result = validate(frame, "label")
    assert [a.column for a in found(result, "label_leakage")] == ["tags"]


def test_leakage_is_deterministic(frame: pd.DataFrame) -> None:
    a = validate(frame, "label", leakage_threshold=1e-9, checks=[check_label_leakage])
    b = validate(frame, "label", leakage_threshold=1e-9, checks=[check_label_leakage])
    assert a.anomalies == b.anomalies


def test_builtin_data_sets_have_no_errors() -> None:
    from kfgpu.data import fraud, read_table

    result = validate(fraud(100_000), "is_fraud")
    assert result.errors == [], [a.one_line() for a in result.errors]
    cancer = validate(read_table("kfgpu://breast_cancer"), "label")
    assert cancer.errors == [], [a.one_line() for a in cancer.errors]


def test_leakage_is_fast_on_100k_rows() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    cols: dict[str, object] = {f"x{i}": rng.normal(size=n) for i in range(12)}
    letters = np.array(list("abcdefgh"), dtype=object)
    cols.update({f"c{i}": rng.choice(letters, n) for i in range(7)})
    df = pd.DataFrame(cols)
    df["y"] = (df["x0"] + rng.normal(size=n) > 0).astype(int)
    ctx = CheckContext(
        df=df,
        target="y",
        task="classification",
        stats=infer_schema(df, "y"),
        pinned=None,
        max_null_fraction=0.5,
    )
    start = time.perf_counter()
    assert check_label_leakage(ctx) == []
    assert time.perf_counter() - start < 1.0


# --- options ---------------------------------------------------------------------------------


def test_unseen_fraction_threshold(frame: pd.DataFrame) -> None:
    pinned = infer_schema(frame, "label")
    frame.loc[:9, "city"] = "zzz"  # 10 of 200 = 5%
    assert only(validate(frame, "label", schema=pinned), "schema_unseen_categories")
    assert not found(
        validate(frame, "label", schema=pinned, max_unseen_fraction=0.05),
        "schema_unseen_categories",
    )
    a = only(
        validate(frame, "label", schema=pinned, max_unseen_fraction=0.01),
        "schema_unseen_categories",
    )
    assert "max_unseen_fraction=0.01" in a.message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_unseen_fraction": 1.5}, "max_unseen_fraction is 1.5"),
        ({"max_unseen_fraction": "0.1"}, "max_unseen_fraction"),
        ({"leakage_threshold": 0}, "leakage_threshold is 0"),
        ({"leakage_threshold": float("nan")}, "leakage_threshold"),
        ({"leakage_threshold": True}, "leakage_threshold"),
        ({"max_categories": 0}, "max_categories is 0"),
        ({"max_categories": 2.5}, "max_categories"),
        ({"max_category_fraction": -1}, "max_category_fraction"),
        ({"max_null_fraction": None}, "max_null_fraction"),
    ],
)
def test_bad_thresholds_name_the_option(
    frame: pd.DataFrame, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(frame, "label", **kwargs)  # type: ignore[arg-type]


def test_options_reach_the_context(frame: pd.DataFrame) -> None:
    seen: list[ValidationOptions] = []

    def spy(ctx: CheckContext) -> list[Anomaly]:
        seen.append(ctx.options)
        return []

    validate(frame, "label", max_null_fraction=0.25, leakage_threshold=0.9, checks=[spy])
    assert seen == [ValidationOptions(max_null_fraction=0.25, leakage_threshold=0.9)]


def test_context_built_by_hand_keeps_max_null_fraction(frame: pd.DataFrame) -> None:
    ctx = CheckContext(
        df=frame,
        target="label",
        task="classification",
        stats=infer_schema(frame, "label"),
        pinned=None,
        max_null_fraction=0.1,
    )
    assert ctx.options.max_null_fraction == 0.1
    assert ctx.options.leakage_threshold == 0.99
