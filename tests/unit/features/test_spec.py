"""Tests for kfgpu.features.spec: the declarative spec, its dict/JSON/YAML forms, inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kfgpu.errors import ConfigError, SchemaError
from kfgpu.features.spec import (
    CategoricalSpec,
    CrossSpec,
    DatetimeSpec,
    FeatureSpec,
    NumericSpec,
    infer_feature_spec,
    infer_feature_spec_from_schema,
)
from kfgpu.validation.schema import infer_schema

EXAMPLE: dict[str, Any] = {
    "columns": {
        "amount": {"type": "numeric", "scale": "log1p", "missing_indicator": True},
        "country": {"type": "categorical", "encode": "onehot", "max_categories": 20},
        "channel": {"type": "categorical"},
        "ts": {"type": "datetime", "parts": ["hour", "dayofweek"]},
    },
    "crosses": [{"columns": ["country", "channel"], "buckets": 256}],
}


def test_example_dict_builds_the_expected_spec() -> None:
    spec = FeatureSpec.from_dict(EXAMPLE)
    assert list(spec.columns) == ["amount", "country", "channel", "ts"]
    assert spec.columns["amount"] == NumericSpec(scale="log1p", missing_indicator=True)
    assert spec.columns["country"] == CategoricalSpec(encode="onehot", max_categories=20)
    assert spec.columns["ts"] == DatetimeSpec(parts=("hour", "dayofweek"))
    assert spec.crosses == (CrossSpec(columns=("country", "channel"), buckets=256),)
    assert spec.numeric == ("amount",)
    assert spec.categorical == ("country", "channel")
    assert spec.datetime == ("ts",)


def _rich_spec() -> FeatureSpec:
    return FeatureSpec(
        columns={
            "a": NumericSpec(
                impute="constant",
                fill_value=-1.0,
                missing_indicator=True,
                scale="robust",
                clip_quantiles=(0.01, 0.99),
                bucketize=8,
                bucket_encode="onehot",
            ),
            "b": NumericSpec(impute="median", scale="minmax", boundaries=(0.0, 1.5, 3.0)),
            "c": CategoricalSpec(impute="constant", fill_value="?", min_frequency=2),
            "h": CategoricalSpec(encode="hashing", hash_buckets=64, impute="most_frequent"),
            "ts": DatetimeSpec(parts=("year", "month"), encode="onehot"),
        },
        crosses=(CrossSpec(columns=("c", "ts__month"), buckets=17, encode="onehot"),),
        clip=5.0,
    )


def test_round_trips_through_dict_json_and_yaml(tmp_path: Path) -> None:
    spec = _rich_spec()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_yaml(yaml.safe_dump(spec.to_dict(), sort_keys=False)) == spec
    for suffix, text in (
        (".json", spec.to_json()),
        (".yaml", yaml.safe_dump(spec.to_dict())),
        (".yml", yaml.safe_dump(EXAMPLE)),
    ):
        path = tmp_path / f"spec{suffix}"
        path.write_text(text)
        expected = FeatureSpec.from_dict(EXAMPLE) if suffix == ".yml" else spec
        assert FeatureSpec.read(path) == expected


def test_yaml_text_form() -> None:
    text = """
columns:
  amount: {type: numeric, impute: median, clip_quantiles: [0.01, 0.99]}
  country: categorical
  ts: {type: datetime, parts: [hour]}
crosses:
  - {columns: [country, ts], buckets: 64}
clip: 4
"""
    spec = FeatureSpec.from_yaml(text)
    assert spec.columns["amount"] == NumericSpec(impute="median", clip_quantiles=(0.01, 0.99))
    assert spec.columns["country"] == CategoricalSpec()
    assert spec.resolve_component("ts") == ("ts", "hour")
    assert spec.clip == 4.0


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (
            {"columns": {"amount": {"type": "numeric", "scale": "zscore"}}},
            "columns.amount.scale='zscore'",
        ),
        ({"columns": {"amount": {"type": "numbers"}}}, "columns.amount.type='numbers'"),
        ({"columns": {"amount": {"scale": "standard"}}}, "columns.amount.type=None"),
        ({"columns": {"amount": {"type": "numeric", "scael": "x"}}}, "columns.amount.scael is not"),
        (
            {"columns": {"amount": {"type": "numeric", "impute": "constant"}}},
            "columns.amount.fill_value=None",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "fill_value": 3}}},
            "columns.amount.fill_value=3",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "clip_quantiles": [0.9, 0.1]}}},
            "columns.amount.clip_quantiles",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "bucketize": -1}}},
            "columns.amount.bucketize=-1",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "bucketize": True}}},
            "columns.amount.bucketize=True",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "boundaries": [2, 1]}}},
            "columns.amount.boundaries",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "boundaries": [1, 2], "bucketize": 5}}},
            "columns.amount.bucketize=5",
        ),
        (
            {"columns": {"amount": {"type": "numeric", "missing_indicator": "yes"}}},
            "columns.amount.missing_indicator",
        ),
        (
            {"columns": {"country": {"type": "categorical", "max_categories": 0}}},
            "columns.country.max_categories=0",
        ),
        (
            {"columns": {"country": {"type": "categorical", "encode": "target"}}},
            "columns.country.encode='target'",
        ),
        (
            {"columns": {"country": {"type": "categorical", "impute": "constant"}}},
            "columns.country.fill_value",
        ),
        (
            {"columns": {"ts": {"type": "datetime", "parts": ["hour", "week"]}}},
            "columns.ts.parts='week'",
        ),
        ({"columns": {"ts": {"type": "datetime", "parts": []}}}, "columns.ts.parts"),
        ({"columns": {"ts": {"type": "datetime", "parts": ["hour", "hour"]}}}, "repeats"),
        ({"crosses": [{"columns": ["country", "nope"]}]}, r"crosses\[0\].columns names 'nope'"),
        ({"crosses": [{"columns": ["country", "amount"]}]}, r"crosses\[0\].columns names 'amount'"),
        ({"crosses": [{"columns": ["country"]}]}, r"crosses\[0\].columns"),
        (
            {"crosses": [{"columns": ["country", "ts__hour"], "buckets": 0}]},
            r"crosses\[0\].buckets=0",
        ),
        ({"crosses": [{"buckets": 3}]}, r"crosses\[0\].columns is missing"),
        ({"clip": -1}, "clip=-1"),
        ({"clip": float("inf")}, "clip=inf"),
        ({"columns": {}}, "columns="),
        ({"extra": 1}, "extra is not a feature spec setting"),
    ],
)
def test_errors_name_the_key_path(patch: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {
        "columns": {
            "amount": {"type": "numeric"},
            "country": {"type": "categorical"},
            "ts": {"type": "datetime", "parts": ["hour", "month"]},
        }
    }
    data = {**base, **patch}
    if patch.get("columns"):
        data["columns"] = {**base["columns"], **patch["columns"]}
    with pytest.raises(ConfigError, match=match):
        FeatureSpec.from_dict(data)


def test_direct_construction_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^scale='zscore' is not supported; use one of"):
        NumericSpec(scale="zscore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hash_buckets=0"):
        CategoricalSpec(hash_buckets=0)
    with pytest.raises(ConfigError, match="columns is empty"):
        FeatureSpec(columns={})
    with pytest.raises(ConfigError, match="crosses"):
        FeatureSpec(columns={"a": CategoricalSpec()}, crosses=(CrossSpec(("a", "b")),))


def test_bad_text_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        FeatureSpec.from_json("{")
    with pytest.raises(ConfigError, match="not valid YAML"):
        FeatureSpec.from_yaml("columns: [")
    with pytest.raises(ConfigError, match=r"\.toml"):
        FeatureSpec.read(tmp_path / "spec.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        FeatureSpec.read(tmp_path / "missing.json")


def test_version_one_dict_form_is_read() -> None:
    spec = FeatureSpec.from_dict(
        {"numeric": ["a"], "categorical": ["c"], "impute": "median", "max_categories": 7, "clip": 3}
    )
    assert spec.columns["a"] == NumericSpec(impute="median")
    assert spec.columns["c"] == CategoricalSpec(max_categories=7)
    assert spec.clip == 3.0
    with pytest.raises(ConfigError, match="both numeric and categorical"):
        FeatureSpec.from_dict({"numeric": ["a"], "categorical": ["a"]})


def test_cross_components_resolve() -> None:
    spec = FeatureSpec(
        columns={
            "c": CategoricalSpec(),
            "d": DatetimeSpec(parts=("hour",)),
            "e": DatetimeSpec(parts=("hour", "month")),
        }
    )
    assert spec.resolve_component("c") == ("c", None)
    assert spec.resolve_component("d") == ("d", "hour")
    assert spec.resolve_component("e__month") == ("e", "month")
    assert spec.resolve_component("e") is None
    assert spec.resolve_component("e__day") is None


# ---- inference --------------------------------------------------------------------------


def _mixed_frame() -> pd.DataFrame:
    n = 3000
    return pd.DataFrame(
        {
            "i": np.arange(n) % 7,
            "f": np.where(np.arange(n) % 5 == 0, np.nan, np.arange(n) / 3),
            "b": np.arange(n) % 2 == 0,
            "s": pd.Series(["a", "b", None] * (n // 3), dtype=object),
            "cat": pd.Categorical(["x", "y"] * (n // 2)),
            "ts": pd.date_range("2024-01-01", periods=n, freq="h"),
            "tz": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Berlin"),
            "ids": [f"user-{i}" for i in range(n)],
            "const_num": 7,
            "const_str": "x",
            "all_nan": np.nan,
            "y": np.arange(n) % 2,
        }
    )


def test_infer_feature_spec_picks_kinds_and_drops_constant_and_target() -> None:
    spec = infer_feature_spec(_mixed_frame(), "y", max_categories=50)
    assert list(spec.columns) == ["i", "f", "b", "s", "cat", "ts", "tz", "ids"]
    assert spec.numeric == ("i", "f", "b")
    assert spec.columns["s"] == CategoricalSpec(max_categories=50)
    assert spec.columns["ts"] == DatetimeSpec()
    assert spec.columns["tz"] == DatetimeSpec()
    ids = spec.columns["ids"]
    assert isinstance(ids, CategoricalSpec) and ids.encode == "hashing"


def test_hashing_rule_thresholds() -> None:
    # 1000 distinct values over 1500 rows: id-like ratio but not > 1000 -> vocabulary.
    df = pd.DataFrame({"c": [f"v{i % 1000}" for i in range(1500)], "y": 0})
    spec = infer_feature_spec(df, "y")
    assert spec.columns["c"] == CategoricalSpec()
    # 1001 distinct over 3000 rows: not more than half the rows -> vocabulary.
    df = pd.DataFrame({"c": [f"v{i % 1001}" for i in range(3000)], "y": 0})
    assert infer_feature_spec(df, "y").columns["c"] == CategoricalSpec()
    # 1001 distinct over 1500 rows -> hashing.
    df = pd.DataFrame({"c": [f"v{i % 1001}" for i in range(1500)], "y": 0})
    assert infer_feature_spec(df, "y").columns["c"] == CategoricalSpec(encode="hashing")


def test_infer_feature_spec_without_usable_columns_names_target() -> None:
    df = pd.DataFrame({"c": [1, 1, 1], "e": [None] * 3, "y": [0, 1, 0]})
    with pytest.raises(SchemaError, match="'y'"):
        infer_feature_spec(df, "y")


def test_infer_feature_spec_from_schema_matches_frame_inference() -> None:
    df = _mixed_frame()
    schema = infer_schema(df, "y")
    from_schema = infer_feature_spec_from_schema(schema, "y", max_categories=50)
    assert from_schema == infer_feature_spec(df, "y", max_categories=50)
    with pytest.raises(SchemaError, match="'y'"):
        infer_feature_spec_from_schema(infer_schema(df[["const_num", "y"]], "y"), "y")


def test_package_import_is_light() -> None:
    code = (
        "import sys, kfgpu.features as f; "
        'f.FeatureSpec.from_json(\'{"columns": {"a": "numeric"}}\'); '
        "print(sorted(m for m in ('pandas', 'torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []
