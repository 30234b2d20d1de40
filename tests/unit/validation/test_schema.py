"""Tests for kfgpu.validation.schema: inference, task inference, JSON round-trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import DataNotFoundError, SchemaError
from kfgpu.validation import ColumnSchema, Schema, infer_schema, infer_task
from kfgpu.validation.schema import MAX_DOMAIN_SIZE

N = 64


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.normal(40.0, 10.0, N)
    age[:4] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "income": rng.integers(1_000, 100_000, N),
            "city": np.array(["paris", "rome", "oslo", "lima"] * (N // 4), dtype=object),
            "flag": np.arange(N) % 3 == 0,
            "when": pd.date_range("2024-01-01", periods=N, freq="D"),
            "label": np.arange(N) % 2,
        }
    )


def test_kinds_and_null_stats(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "label")
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "age": "numeric",
        "income": "numeric",
        "city": "categorical",
        "flag": "boolean",
        "when": "datetime",
        "label": "numeric",
    }
    assert schema.names == list(frame.columns)
    assert schema.n_rows == N
    age = schema.column("age")
    assert age is not None
    assert age.nullable is True
    assert age.null_fraction == pytest.approx(4 / N)
    assert age.dtype == "float64"
    income = schema.column("income")
    assert income is not None and income.nullable is False and income.null_fraction == 0.0


def test_numeric_statistics_match_pandas(frame: pd.DataFrame) -> None:
    age = infer_schema(frame).column("age")
    assert age is not None
    values = frame["age"].dropna()
    assert age.min == pytest.approx(values.min())
    assert age.max == pytest.approx(values.max())
    assert age.mean == pytest.approx(values.mean())
    assert age.std == pytest.approx(values.std(ddof=0))
    assert age.quantiles is not None
    assert set(age.quantiles) == {"p01", "p50", "p99"}
    assert age.quantiles["p50"] == pytest.approx(values.median())
    assert age.min <= age.quantiles["p01"] <= age.quantiles["p50"] <= age.quantiles["p99"]
    assert age.domain is None


def test_categorical_domain_and_labels(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "label")
    city = schema.column("city")
    assert city is not None
    assert city.n_unique == 4
    assert city.domain == {"lima": 16, "oslo": 16, "paris": 16, "rome": 16}
    assert city.domain_complete
    assert city.min is None and city.quantiles is None
    flag = schema.column("flag")
    assert flag is not None and flag.domain == {"False": 42, "True": 22}
    assert schema.target == "label"
    assert schema.task == "classification"
    assert schema.label_distribution == {"0": 32, "1": 32}


def test_domain_is_ordered_by_count_then_value() -> None:
    s = pd.DataFrame({"c": ["b", "a", "c", "c", "b", "c", "a", "d", None]})
    col = infer_schema(s).column("c")
    assert col is not None
    assert list(col.domain or {}) == ["c", "a", "b", "d"]  # ties (a, b) ordered by value
    assert col.domain == {"c": 3, "a": 2, "b": 2, "d": 1}
    assert col.null_fraction == pytest.approx(1 / 9)


def test_domain_truncated_at_max_size() -> None:
    df = pd.DataFrame({"id": [f"u{i}" for i in range(MAX_DOMAIN_SIZE + 500)]})
    col = infer_schema(df).column("id")
    assert col is not None
    assert col.n_unique == MAX_DOMAIN_SIZE + 500
    assert col.domain is not None and len(col.domain) == MAX_DOMAIN_SIZE
    assert not col.domain_complete


def test_unhashable_object_column_is_stringified_categorical() -> None:
    df = pd.DataFrame({"odd": [[1, 2], {"a": 1}, 3, "x", None, [1, 2]]})
    col = infer_schema(df).column("odd")
    assert col is not None
    assert col.kind == "categorical"
    assert col.domain == {"[1, 2]": 2, "{'a': 1}": 1, "3": 1, "x": 1}
    assert col.n_unique == 4
    assert col.null_fraction == pytest.approx(1 / 6)


def test_non_string_column_names_are_stringified() -> None:
    schema = infer_schema(pd.DataFrame({0: [1, 2], 1: ["a", "b"]}), "1")
    assert schema.names == ["0", "1"]
    assert schema.task == "classification"


def test_missing_target_raises_schema_error_naming_it(frame: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match=r"'nope'.*age, income"):
        infer_schema(frame, "nope")


def test_empty_frame_has_no_statistics() -> None:
    schema = infer_schema(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    col = schema.column("x")
    assert schema.n_rows == 0
    assert col is not None and col.null_fraction == 0.0 and col.min is None
    assert col.quantiles is None


def test_infinities_are_left_out_of_statistics(tmp_path: Path) -> None:
    schema = infer_schema(pd.DataFrame({"x": [1.0, np.inf, -np.inf, 3.0]}))
    col = schema.column("x")
    assert col is not None and col.min == 1.0 and col.max == 3.0 and col.mean == 2.0
    schema.to_json(tmp_path / "s.json")  # would fail on NaN/inf with allow_nan=False
    assert Schema.read_json(tmp_path / "s.json") == schema


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 3, 4], "classification"),
        ([1.0, 2.0, np.nan, 1.0], "classification"),
        (list(range(20)), "classification"),
        (list(range(21)), "regression"),
        ([0.5, 1.0, 2.0], "regression"),
        ([1.0, np.inf, 2.0], "regression"),
        (pd.array([1, 2, None], dtype="Int64"), "classification"),
        (pd.array([True, None, False], dtype="boolean"), "classification"),
    ],
)
def test_infer_task(values: object, expected: str) -> None:
    assert infer_task(pd.Series(values)) == expected


def test_regression_target_has_no_label_distribution(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "age")
    assert schema.task == "regression"
    assert schema.label_distribution is None


def test_dict_round_trip(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "label")
    assert Schema.from_dict(schema.to_dict()) == schema
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_json_round_trip_is_stable(frame: pd.DataFrame, tmp_path: Path) -> None:
    schema = infer_schema(frame, "label")
    path = tmp_path / "sub" / "schema.json"
    schema.to_json(path)
    loaded = Schema.read_json(path)
    assert loaded == schema
    text = path.read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    loaded.to_json(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == text
    assert [c["name"] for c in json.loads(text)["columns"]] == list(frame.columns)


def test_read_json_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        Schema.read_json(tmp_path / "absent.json")


def test_read_json_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.read_json(path)


def test_from_dict_names_the_bad_field(frame: pd.DataFrame) -> None:
    data = infer_schema(frame).to_dict()
    data["columns"][2]["kind"] = "text"
    with pytest.raises(SchemaError, match=r"columns\[2\]\.kind.*'city'.*'text'"):
        Schema.from_dict(data)
    del data["columns"][2]["kind"]
    with pytest.raises(SchemaError, match=r"columns\[2\]\.kind' is missing"):
        Schema.from_dict(data)


def test_from_dict_refuses_newer_version(frame: pd.DataFrame) -> None:
    data = infer_schema(frame).to_dict()
    data["version"] = 99
    with pytest.raises(SchemaError, match="version"):
        Schema.from_dict(data)


def test_column_schema_is_frozen() -> None:
    col = ColumnSchema("x", "numeric", "int64", False, 0.0, 1)
    with pytest.raises(AttributeError):
        col.name = "y"  # type: ignore[misc]


def test_package_import_does_not_import_pandas() -> None:
    src = str(Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    code = "import sys, kfgpu.validation; assert 'pandas' not in sys.modules, 'pandas imported'"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
