"""Tests for kfgpu.features.transform (version 2): fitting, every option's math, and no skew
between the NumPy and the torch back halves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kfgpu.data.synthetic import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS, fraud
from kfgpu.errors import ConfigError, EmptyDataError, SchemaError
from kfgpu.features import (
    CategoricalSpec,
    CrossSpec,
    DatetimeSpec,
    FeatureSpec,
    FittedTransform,
    NumericSpec,
    fit_source,
    fit_transform,
    infer_feature_spec,
)
from kfgpu.features.transform import CategoricalParams, NumericParams

F32_MAX = float(np.finfo(np.float32).max)


def _spec(clip: float = 10.0, crosses: tuple[CrossSpec, ...] = (), **columns: Any) -> FeatureSpec:
    return FeatureSpec(columns=columns, crosses=crosses, clip=clip)


def _torch_path(ft: FittedTransform, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    num, codes = ft.raw_arrays(df)
    with torch.no_grad():
        dense, emb = ft.to_module()(torch.from_numpy(num), torch.from_numpy(codes))
    return dense.numpy(), emb.numpy()


def _num(ft: FittedTransform, name: str) -> NumericParams:
    p = ft.params[name]
    assert isinstance(p, NumericParams)
    return p


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return fraud(600, seed=3)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> FittedTransform:
    return fit_transform(frame, infer_feature_spec(frame, LABEL_COLUMN))


# ---- default spec on the fraud frame ---------------------------------------------------


def test_default_spec_on_fraud_frame(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    assert set(fitted.numeric) == set(NUMERIC_COLUMNS)
    assert set(fitted.categorical) == set(CATEGORICAL_COLUMNS)
    assert fitted.input_columns == fitted.columns == tuple(fitted.spec.columns)
    dense, emb = fitted.transform(frame)
    assert dense.dtype == np.float32 and emb.dtype == np.int64
    assert dense.shape == (len(frame), fitted.n_dense) == (len(frame), len(NUMERIC_COLUMNS))
    assert emb.shape == (len(frame), len(fitted.cardinalities))
    assert fitted.dense_names == fitted.numeric
    assert fitted.emb_names == fitted.code_inputs == fitted.categorical
    assert np.isfinite(dense).all() and np.abs(dense).max() <= fitted.spec.clip
    np.testing.assert_allclose(dense.mean(axis=0), 0.0, atol=1e-2)
    assert ((emb >= 0) & (emb < np.asarray(fitted.cardinalities))).all()


# ---- numeric options against NumPy references --------------------------------------------

A = np.array([1.0, 2.0, np.nan, 4.0, 8.0, 16.0, -3.0, np.inf])


def _ref_frame() -> pd.DataFrame:
    return pd.DataFrame({"a": A})


def test_mean_impute_and_standardise_are_exact() -> None:
    ft = fit_transform(_ref_frame(), _spec(a=NumericSpec()))
    finite = A[np.isfinite(A)]
    fill = finite.mean()
    filled = np.where(np.isfinite(A), A, fill)
    p = _num(ft, "a")
    assert p.fill == pytest.approx(fill)
    assert p.center == pytest.approx(filled.mean())
    assert p.scale == pytest.approx(filled.std())
    dense, _ = ft.transform(_ref_frame())
    np.testing.assert_allclose(dense[:, 0], (filled - filled.mean()) / filled.std(), atol=1e-6)


def test_median_impute_within_sketch_accuracy_and_indicator() -> None:
    spec = _spec(a=NumericSpec(impute="median", missing_indicator=True, scale="none"))
    ft = fit_transform(_ref_frame(), spec)
    median = np.quantile(A[np.isfinite(A)], 0.5, method="lower")
    assert abs(_num(ft, "a").fill - median) <= 0.01 * abs(median)
    dense, emb = ft.transform(_ref_frame())
    assert ft.dense_names == ("a", "a__missing")
    assert emb.shape == (len(A), 0)
    missing = ~np.isfinite(A)
    np.testing.assert_array_equal(dense[:, 1], missing.astype(np.float32))
    np.testing.assert_allclose(dense[missing, 0], np.float32(_num(ft, "a").fill))
    np.testing.assert_array_equal(dense[~missing, 0], A[~missing].astype(np.float32))


@pytest.mark.parametrize(("impute", "fill"), [("zero", 0.0), ("constant", -7.5)])
def test_zero_and_constant_impute(impute: str, fill: float) -> None:
    kw: dict[str, Any] = {"fill_value": fill} if impute == "constant" else {}
    ft = fit_transform(_ref_frame(), _spec(a=NumericSpec(impute=impute, scale="none", **kw)))  # type: ignore[arg-type]
    dense, _ = ft.transform(_ref_frame())
    np.testing.assert_array_equal(dense[~np.isfinite(A), 0], np.float32(fill))


def test_scale_none_is_not_clipped() -> None:
    ft = fit_transform(_ref_frame(), _spec(clip=1.0, a=NumericSpec(scale="none")))
    dense, _ = ft.transform(pd.DataFrame({"a": [123.0, -1e300]}))
    np.testing.assert_array_equal(dense[:, 0], np.float32([123.0, -F32_MAX]))


def test_minmax() -> None:
    ft = fit_transform(_ref_frame(), _spec(a=NumericSpec(scale="minmax")))
    dense, _ = ft.transform(pd.DataFrame({"a": [-3.0, 16.0, 6.5, 1e9]}))
    np.testing.assert_allclose(dense[:, 0], [0.0, 1.0, 9.5 / 19.0, 10.0], atol=1e-6)


def test_robust() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(50.0, 10.0, 4001)
    df = pd.DataFrame({"a": x})
    ft = fit_transform(df, _spec(a=NumericSpec(scale="robust")))
    p = _num(ft, "a")
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75], method="lower")
    assert p.center == pytest.approx(med, rel=0.01)
    # Each quartile within 1% of ~50: the IQR within ~1/13.5 of ~13.5.
    assert p.scale == pytest.approx(q3 - q1, abs=0.01 * (abs(q1) + abs(q3)))
    dense, _ = ft.transform(df)
    np.testing.assert_allclose(dense[:, 0], (x - p.center) / p.scale, rtol=1e-5, atol=1e-5)


def test_log1p_is_signed_and_standardised_exactly() -> None:
    x = np.array([0.0, 1.0, -1.0, 10.0, 1000.0, -50.0, np.nan])
    df = pd.DataFrame({"a": x})
    ft = fit_transform(df, _spec(a=NumericSpec(scale="log1p", impute="zero")))
    t = np.sign(x) * np.log1p(np.abs(x))
    t = np.where(np.isnan(t), 0.0, t)  # zero impute, log1p(0) = 0
    p = _num(ft, "a")
    assert p.center == pytest.approx(t.mean(), abs=1e-6)
    assert p.scale == pytest.approx(t.std(), rel=1e-6)
    dense, _ = ft.transform(df)
    np.testing.assert_allclose(dense[:, 0], (t - t.mean()) / t.std(), atol=1e-5)


def test_clip_quantiles_clip_raw_values_before_scaling() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(100.0, 5.0, 2000), [1e6, -1e6]])
    df = pd.DataFrame({"a": x})
    ft = fit_transform(df, _spec(a=NumericSpec(clip_quantiles=(0.05, 0.95))))
    p = _num(ft, "a")
    lo, hi = np.quantile(x, [0.05, 0.95], method="lower")
    assert abs(p.clip_low - lo) <= 0.01 * abs(lo) and abs(p.clip_high - hi) <= 0.01 * abs(hi)
    clipped = np.clip(x, p.clip_low, p.clip_high)
    # Moments of the clipped values from the sketch: within its accuracy of the exact ones.
    assert p.center == pytest.approx(clipped.mean(), rel=1e-3)
    assert p.scale == pytest.approx(clipped.std(), rel=0.1)
    dense, _ = ft.transform(df)
    np.testing.assert_allclose(dense[:, 0], (clipped - p.center) / p.scale, atol=1e-4)
    assert np.abs(dense[:, 0]).max() < 3  # the 1e6 outliers were clipped, not scaled


def test_explicit_boundaries_bucket_like_searchsorted() -> None:
    x = np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 99.0, np.nan])
    spec = _spec(a=NumericSpec(boundaries=(0.0, 1.0, 2.0), bucket_encode="embedding"))
    ft = fit_transform(pd.DataFrame({"a": x}), spec)
    _, emb = ft.transform(pd.DataFrame({"a": x}))
    assert ft.emb_names == ("a__bucket",) and ft.cardinalities == (5,)
    expected = np.searchsorted([0.0, 1.0, 2.0], np.nan_to_num(x), side="right") + 1
    expected[np.isnan(x)] = 0
    np.testing.assert_array_equal(emb[:, 0], expected)
    np.testing.assert_array_equal(emb[:, 0], [1, 2, 2, 3, 4, 4, 0])


def test_quantile_buckets_are_balanced_and_onehot() -> None:
    x = np.arange(1, 1001, dtype=float)
    spec = _spec(a=NumericSpec(bucketize=4, bucket_encode="onehot"))
    ft = fit_transform(pd.DataFrame({"a": x}), spec)
    assert len(_num(ft, "a").boundaries or ()) == 3
    dense, emb = ft.transform(pd.DataFrame({"a": np.append(x, np.nan)}))
    assert emb.shape[1] == 0
    assert ft.dense_names == ("a", "a__bucket=<other>", *(f"a__bucket={i}" for i in range(1, 5)))
    block = dense[:, 1:]
    assert (block.sum(axis=1) == 1).all()
    np.testing.assert_allclose(block[:-1].sum(axis=0)[1:], 250, atol=15)
    assert block[-1, 0] == 1.0  # missing -> bucket 0


# ---- categorical options -------------------------------------------------------------------

C = pd.Series(["b", "a", "b", "z", "b", "a", None, "y", np.nan], dtype=object)


def test_vocabulary_most_frequent_first_ties_by_value() -> None:
    df = pd.DataFrame({"c": C})
    ft = fit_transform(df, _spec(c=CategoricalSpec()))
    assert ft.params["c"] == CategoricalParams(
        vocabulary=("b", "a", "y", "z"),
        summary=ft.params["c"].summary,  # type: ignore[union-attr]
    )
    assert ft.cardinalities == (5,)
    _, emb = ft.transform(df)
    assert emb[:, 0].tolist() == [1, 2, 1, 4, 1, 2, 0, 3, 0]
    _, emb = ft.transform(pd.DataFrame({"c": ["new", "a", None]}))
    assert emb[:, 0].tolist() == [0, 2, 0]


def test_min_frequency_max_categories_and_oov_share() -> None:
    df = pd.DataFrame({"c": ["b", "a", "b", "c", "b", "a", "d"]})
    ft = fit_transform(df, _spec(c=CategoricalSpec(min_frequency=2)))
    p = ft.params["c"]
    assert isinstance(p, CategoricalParams) and p.vocabulary == ("b", "a")
    assert p.summary["oov_share"] == pytest.approx(2 / 7)
    ft = fit_transform(df, _spec(c=CategoricalSpec(max_categories=1)))
    _, emb = ft.transform(df)
    assert emb[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 0]


def test_onehot_and_ordinal_blocks() -> None:
    df = pd.DataFrame({"c": C, "o": C, "x": np.arange(9.0)})
    spec = _spec(
        c=CategoricalSpec(encode="onehot"),
        o=CategoricalSpec(encode="ordinal"),
        x=NumericSpec(missing_indicator=True),
    )
    ft = fit_transform(df, spec)
    dense, emb = ft.transform(df)
    assert emb.shape == (9, 0)
    assert ft.dense_names == (
        "x",
        "x__missing",
        "c=<other>",
        "c=b",
        "c=a",
        "c=y",
        "c=z",
        "o",
    )
    codes = np.array([1, 2, 1, 4, 1, 2, 0, 3, 0])
    np.testing.assert_array_equal(dense[:, 2:7], np.eye(5, dtype=np.float32)[codes])
    np.testing.assert_array_equal(dense[:, 7], codes.astype(np.float32))


def test_most_frequent_and_constant_impute() -> None:
    df = pd.DataFrame({"c": C})
    ft = fit_transform(df, _spec(c=CategoricalSpec(impute="most_frequent")))
    _, emb = ft.transform(df)
    assert emb[:, 0].tolist() == [1, 2, 1, 4, 1, 2, 1, 3, 1]
    ft = fit_transform(df, _spec(c=CategoricalSpec(impute="constant", fill_value="<na>")))
    p = ft.params["c"]
    assert isinstance(p, CategoricalParams) and p.vocabulary[-1] == "<na>"
    _, emb = ft.transform(pd.DataFrame({"c": [None, "b", "unseen"]}))
    assert emb[:, 0].tolist() == [len(p.vocabulary), 1, 0]


def test_hashing_is_stable_across_processes() -> None:
    values = ["alpha", "beta", "gamma", "42", None]
    spec = _spec(h=CategoricalSpec(encode="hashing", hash_buckets=97))
    ft = fit_transform(pd.DataFrame({"h": values}), spec)
    _, emb = ft.transform(pd.DataFrame({"h": values}))
    expected = 1 + pd.util.hash_array(np.asarray(values[:4], dtype=object), categorize=False) % 97
    np.testing.assert_array_equal(emb[:4, 0], expected.astype(np.int64))
    assert emb[4, 0] == 0 and ft.cardinalities == (98,)
    code = (
        "import json, sys, pandas as pd\n"
        "from kfgpu.features import FittedTransform\n"
        "ft = FittedTransform.from_dict(json.loads(sys.stdin.read()))\n"
        f"_, emb = ft.transform(pd.DataFrame({{'h': {values!r}}}))\n"
        "print(json.dumps(emb[:, 0].tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ft.to_dict()),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(out.stdout) == emb[:, 0].tolist()


# ---- datetime and crosses ---------------------------------------------------------------


def test_datetime_parts_from_timestamps_and_strings() -> None:
    ts = pd.Series(pd.to_datetime(["2021-03-04 05:06", "2023-12-31 23:59", None]))
    strings = ["2022-07-08T09:10:00+02:00", "not a date", None]
    df = pd.DataFrame({"ts": ts, "s": pd.Series(strings, dtype=object)})
    parts = ("hour", "dayofweek", "day", "month", "year", "dayofyear", "minute")
    spec = _spec(ts=DatetimeSpec(parts=parts), s=DatetimeSpec(parts=("hour", "month")))
    ft = fit_transform(df, spec)
    _, emb = ft.transform(df)
    assert ft.emb_names == (*(f"ts__{p}" for p in parts), "s__hour", "s__month")
    assert ft.cardinalities == (25, 8, 33, 14, 4, 368, 61, 25, 14)
    row = [getattr(ts[0], p) + 1 for p in parts]
    row[parts.index("year")] = 1  # 2021 is the fitted min year
    np.testing.assert_array_equal(emb[0, :7], row)
    assert emb[1, parts.index("year")] == 3
    assert (emb[2, :7] == 0).all()
    # "+02:00" is converted to UTC: 07:10 UTC, July.
    np.testing.assert_array_equal(emb[:, 7:], [[8, 8], [0, 0], [0, 0]])
    # Years beyond the fitted range take the first/last code.
    later = pd.DataFrame({"ts": pd.to_datetime(["2030-01-01", "1990-01-01"]), "s": [None] * 2})
    _, emb = ft.transform(later)
    assert emb[:, parts.index("year")].tolist() == [3, 1]


def test_crosses_match_the_hand_formula() -> None:
    df = pd.DataFrame(
        {
            "c": ["a", "b", "a", None, "b"],
            "d": ["x", "x", "y", "y", "new"],
            "ts": pd.to_datetime(["2024-01-01 03:00"] * 5),
        }
    )
    spec = _spec(
        crosses=(
            CrossSpec(("c", "d"), buckets=11),
            CrossSpec(("c", "d", "ts"), buckets=5, encode="onehot"),
        ),
        c=CategoricalSpec(),
        d=CategoricalSpec(),
        ts=DatetimeSpec(parts=("hour",)),
    )
    ft = fit_transform(df.iloc[:4], spec)
    _, codes = ft.raw_arrays(df)
    dense, emb = ft.transform(df)

    def cross(cols: list[int], buckets: int) -> np.ndarray:
        h = np.zeros(len(df), dtype=np.int64)
        for j in cols:
            h = (h * 1_000_003 + codes[:, j]) % 2_147_483_647
        return np.where((codes[:, cols] == 0).any(axis=1), 0, 1 + h % buckets)

    assert ft.emb_names == ("c", "d", "ts__hour", "c_x_d")
    assert ft.cardinalities[-1] == 12
    np.testing.assert_array_equal(emb[:, 3], cross([0, 1], 11))
    assert emb[3, 3] == 0 and emb[4, 3] == 0  # missing c, unseen d
    np.testing.assert_array_equal(dense, np.eye(6, dtype=np.float32)[cross([0, 1, 2], 5)])


# ---- output ordering ---------------------------------------------------------------------


def test_dense_and_embedding_output_order() -> None:
    df = pd.DataFrame(
        {
            "n1": [1.0, 2.0, 3.0],
            "cat": ["a", "b", "a"],
            "n2": [1.0, np.nan, 3.0],
            "ordc": ["p", "q", "q"],
            "ts": pd.to_datetime(["2024-01-01"] * 3),
        }
    )
    spec = _spec(
        crosses=(CrossSpec(("cat", "ordc"), buckets=3),),
        n1=NumericSpec(bucketize=2),
        cat=CategoricalSpec(encode="onehot"),
        n2=NumericSpec(missing_indicator=True, boundaries=(2.0,), bucket_encode="onehot"),
        ordc=CategoricalSpec(encode="ordinal"),
        ts=DatetimeSpec(parts=("month",), encode="embedding"),
    )
    ft = fit_transform(df, spec)
    assert ft.dense_names == (
        "n1",
        "n2",
        "n2__missing",
        "cat=<other>",
        "cat=a",
        "cat=b",
        "n2__bucket=<other>",
        "n2__bucket=1",
        "n2__bucket=2",
        "ordc",
    )
    assert ft.emb_names == ("n1__bucket", "ts__month", "cat_x_ordc")
    assert ft.numeric == ("n1", "n2") and ft.categorical == ("cat", "ordc", "ts")
    assert ft.datetime_inputs == ("ts",)
    assert ft.code_inputs == ("cat", "ordc", "ts__month")
    dense, emb = ft.transform(df)
    assert dense.shape == (3, ft.n_dense) and emb.shape == (3, 3)
    kinds = [row["kind"] for row in ft.describe()]
    assert kinds == ["numeric", "categorical", "numeric", "categorical", "datetime", "cross"]


# ---- no skew: the NumPy and the torch back halves agree ---------------------------------------


def _hostile(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1.5, n) * np.where(rng.random(n) < 0.2, -1, 1),
            "age": rng.normal(40, 12, n),
            "flag": rng.random(n) < 0.3,
            "country": pd.Series(rng.choice(["de", "fr", "us", "jp", "br"], n), dtype=object),
            "channel": pd.Series(rng.choice(["web", "app", "pos"], n), dtype=object),
            "user": pd.Series([f"u{i}" for i in rng.integers(0, 5000, n)], dtype=object),
            "ts": pd.Series(pd.date_range("2021-01-01", periods=n, freq="7h")),
        }
    )
    return df


def _poison(df: pd.DataFrame) -> pd.DataFrame:
    out = df.head(16).copy().reset_index(drop=True)
    out["country"] = out["country"].astype(object)
    out.loc[0, "amount"] = np.nan
    out.loc[1, "amount"] = np.inf
    out.loc[2, "amount"] = -np.inf
    out.loc[3, "amount"] = 1e300
    out.loc[4, "amount"] = -1e300
    out.loc[5, "age"] = 1e12
    out.loc[6, "country"] = "never-seen"
    out.loc[7, "country"] = None
    out.loc[8, "channel"] = np.nan
    out.loc[9, "user"] = None
    out.loc[10, "ts"] = pd.NaT
    out.loc[11, "ts"] = pd.Timestamp("2099-12-31")
    return pd.concat([df, out], ignore_index=True)


SPECS: dict[str, dict[str, Any]] = {
    "defaults": {
        "columns": {
            "amount": "numeric",
            "age": "numeric",
            "flag": "numeric",
            "country": "categorical",
            "channel": "categorical",
            "user": {"type": "categorical", "encode": "hashing"},
            "ts": "datetime",
        }
    },
    "every_option": {
        "columns": {
            "amount": {
                "type": "numeric",
                "scale": "log1p",
                "missing_indicator": True,
                "clip_quantiles": [0.01, 0.99],
                "bucketize": 10,
            },
            "age": {
                "type": "numeric",
                "impute": "median",
                "scale": "robust",
                "boundaries": [18, 30, 65],
                "bucket_encode": "onehot",
            },
            "flag": {"type": "numeric", "scale": "minmax", "missing_indicator": True},
            "country": {"type": "categorical", "encode": "onehot", "impute": "most_frequent"},
            "channel": {"type": "categorical", "encode": "ordinal"},
            "user": {"type": "categorical", "encode": "hashing", "hash_buckets": 50},
            "ts": {"type": "datetime", "parts": ["hour", "year", "dayofweek"], "encode": "onehot"},
        },
        "crosses": [
            {"columns": ["country", "channel"], "buckets": 20},
            {"columns": ["user", "ts__hour", "country"], "buckets": 9, "encode": "onehot"},
        ],
        "clip": 3.0,
    },
    "scale_none_constant": {
        "columns": {
            "amount": {"type": "numeric", "scale": "none", "impute": "constant", "fill_value": -1},
            "age": {"type": "numeric", "scale": "minmax", "clip_quantiles": [0.1, 0.9]},
            "country": {"type": "categorical", "impute": "constant", "fill_value": "??"},
            "ts": {"type": "datetime", "parts": ["month", "minute", "dayofyear", "day"]},
        },
        "crosses": [{"columns": ["country", "ts__month"], "buckets": 1}],
    },
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_numpy_and_torch_paths_agree(name: str) -> None:
    train = _hostile(seed=1)
    ft = fit_transform(train, FeatureSpec.from_dict(SPECS[name]))
    df = _poison(_hostile(seed=2))
    dense, emb = ft.transform(df)
    dense_t, emb_t = _torch_path(ft, df)
    assert dense_t.dtype == np.float32 and emb_t.dtype == np.int64
    assert dense.shape == dense_t.shape == (len(df), ft.n_dense)
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense_t, dense, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(emb_t, emb)
    assert ((emb >= 0) & (emb < np.asarray(ft.cardinalities, dtype=np.int64))).all()
    # The JSON round trip rebuilds the same transform and module.
    again = FittedTransform.from_dict(json.loads(json.dumps(ft.to_dict())))
    assert again == ft
    np.testing.assert_allclose(_torch_path(again, df)[0], dense, rtol=0, atol=1e-5)


def test_back_halves_agree_on_unclean_arrays() -> None:
    ft = fit_transform(_hostile(seed=3), FeatureSpec.from_dict(SPECS["every_option"]))
    rng = np.random.default_rng(0)
    n = 64
    num = (rng.normal(size=(n, len(ft.numeric))) * 1e3).astype(np.float32)
    num[0, 0], num[1, 1], num[2, 2], num[3, 0] = np.nan, np.inf, -np.inf, F32_MAX
    codes = rng.integers(-5, 400, size=(n, len(ft.code_inputs)))
    dense, emb = ft.transform_arrays(num, codes)
    with torch.no_grad():
        dense_t, emb_t = ft.to_module()(torch.from_numpy(num), torch.from_numpy(codes))
    np.testing.assert_allclose(dense_t.numpy(), dense, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(emb_t.numpy(), emb)
    assert ((emb >= 0) & (emb < np.asarray(ft.cardinalities))).all()


def test_hostile_values_follow_the_spec() -> None:
    spec = FeatureSpec.from_dict(SPECS["defaults"])
    ft = fit_transform(_hostile(seed=1), spec)
    df = _poison(_hostile(seed=2))
    rows = df.iloc[400:].reset_index(drop=True)
    dense, emb = ft.transform(rows)
    p = _num(ft, "amount")
    j = ft.dense_names.index("amount")
    for i in (0, 1, 2):  # NaN, +inf, -inf -> the fill value
        assert dense[i, j] == pytest.approx((p.fill - p.center) / p.scale, abs=1e-5)
    assert dense[3, j] == 10.0 and dense[4, j] == -10.0  # far out of range -> clipped
    assert dense[5, ft.dense_names.index("age")] == 10.0
    names = ft.emb_names
    assert emb[6, names.index("country")] == 0 and emb[7, names.index("country")] == 0
    assert emb[8, names.index("channel")] == 0 and emb[9, names.index("user")] == 0
    assert (emb[10, [names.index(f"ts__{p}") for p in ("hour", "dayofweek", "month")]] == 0).all()
    assert (emb[11] > 0).all() and (emb[:6] > 0).all()


# ---- streaming fits --------------------------------------------------------------------------


def test_streaming_fit_over_seven_chunks_equals_the_concatenation() -> None:
    df = _hostile(1400, seed=7)
    df.loc[::9, "amount"] = np.nan
    spec = FeatureSpec.from_dict(SPECS["every_option"])
    whole = fit_transform(df, spec)
    chunks = np.array_split(np.arange(len(df)), 7)
    streamed = fit_transform((df.iloc[ix] for ix in chunks), spec)
    for name, p in whole.params.items():
        q = streamed.params[name]
        if isinstance(p, NumericParams):
            assert isinstance(q, NumericParams)
            for attr in ("fill", "clip_low", "clip_high", "center", "scale"):
                a, b = getattr(p, attr), getattr(q, attr)
                assert b == pytest.approx(a, rel=1e-9, abs=1e-9), (name, attr)
            assert p.boundaries == q.boundaries
        else:
            assert p == q, name
    # Fills against the exact statistic: within the sketch's 1%.
    amount = df["amount"].to_numpy()
    assert _num(streamed, "amount").fill == pytest.approx(np.nanmean(amount), rel=1e-6)
    age_median = np.median(df["age"])
    assert abs(_num(streamed, "age").fill - age_median) <= 0.01 * abs(age_median) + 1e-9


def _write_parquet(df: pd.DataFrame, path: Path, row_group_size: int) -> None:
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )


def test_fit_source_streams_parquet_row_groups_and_csv(tmp_path: Path) -> None:
    df = _hostile(1000, seed=8)
    df["label"] = np.arange(len(df)) % 2
    path = tmp_path / "train.parquet"
    _write_parquet(df, path, row_group_size=150)
    assert pq.ParquetFile(path).num_row_groups == 7
    spec = FeatureSpec.from_dict(SPECS["every_option"])
    from_file = fit_source(str(path), spec, target="label", chunk_rows=100)
    in_memory = fit_transform(df, spec)
    assert from_file.params["country"] == in_memory.params["country"]
    assert from_file.params["ts"] == in_memory.params["ts"]
    assert _num(from_file, "age").center == pytest.approx(_num(in_memory, "age").center)
    inferred = fit_source(str(path), None, target="label")
    assert "label" not in inferred.input_columns
    assert set(inferred.input_columns) == set(df.columns) - {"label"}
    csv = tmp_path / "train.csv"
    df.drop(columns=["ts"]).to_csv(csv, index=False)
    from_csv = fit_source(str(csv), None, target="label", chunk_rows=128)
    assert from_csv.params["country"].vocabulary == in_memory.params["country"].vocabulary  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="'label'"):
        fit_source(
            str(path), FeatureSpec.from_dict({"columns": {"label": "numeric"}}), target="label"
        )
    with pytest.raises(ConfigError, match="chunk_rows"):
        fit_source(str(path), spec, target="label", chunk_rows=0)
    empty = tmp_path / "empty.parquet"
    _write_parquet(df.iloc[:0], empty, row_group_size=10)
    with pytest.raises(EmptyDataError):
        fit_source(str(empty), spec, target="label")


# ---- bad input --------------------------------------------------------------------------------


def test_missing_column_names_it(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    with pytest.raises(SchemaError, match="distance_km"):
        fitted.transform(frame.drop(columns=["distance_km"]))
    with pytest.raises(SchemaError, match="country"):
        fitted.raw_arrays(frame.drop(columns=["country"]))
    with pytest.raises(SchemaError, match="country"):
        fit_transform(frame.drop(columns=["country"]), fitted.spec)


def test_non_numeric_value_names_column(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    df = frame.head(5).copy()
    df["hour"] = df["hour"].astype(object)
    df.loc[2, "hour"] = "noon"
    with pytest.raises(SchemaError, match="'hour'") as info:
        fitted.transform(df)
    assert "noon" in str(info.value)


def test_numeric_strings_are_accepted(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    df = frame.head(5).copy().reset_index(drop=True)
    as_text = df.copy()
    as_text["amount"] = [str(v) for v in df["amount"]]
    as_text.loc[0, "amount"] = None
    df.loc[0, "amount"] = np.nan
    np.testing.assert_array_equal(fitted.transform(as_text)[0], fitted.transform(df)[0])


def test_wrong_array_shapes_are_schema_errors(fitted: FittedTransform) -> None:
    num = np.zeros((3, len(fitted.numeric) + 1), dtype=np.float32)
    codes = np.zeros((3, len(fitted.code_inputs)), dtype=np.int64)
    with pytest.raises(SchemaError, match="shapes"):
        fitted.transform_arrays(num, codes)
    with pytest.raises(SchemaError, match="rows"):
        fitted.transform_arrays(num[:, 1:], codes[:2])


def test_empty_fit_and_empty_transform(fitted: FittedTransform, frame: pd.DataFrame) -> None:
    with pytest.raises(EmptyDataError):
        fit_transform(frame.iloc[:0], fitted.spec)
    dense, emb = fitted.transform(frame.iloc[:0])
    assert dense.shape == (0, fitted.n_dense) and emb.shape == (0, len(fitted.cardinalities))
    dense_t, emb_t = _torch_path(fitted, frame.iloc[:0])
    assert dense_t.shape == dense.shape and emb_t.shape == emb.shape


# ---- persistence ------------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path, fitted: FittedTransform) -> None:
    path = tmp_path / "transform.json"
    fitted.save(path)
    loaded = FittedTransform.load(path)
    assert loaded == fitted
    assert json.loads(path.read_text())["version"] == 2
    assert loaded.cardinalities == fitted.cardinalities
    assert loaded.dense_names == fitted.dense_names
    assert "pickle" not in path.read_text()


def test_malformed_and_newer_dicts_are_schema_errors(fitted: FittedTransform) -> None:
    d = fitted.to_dict()
    del d["fitted"][0]["center"]
    with pytest.raises(SchemaError, match="malformed"):
        FittedTransform.from_dict(d)
    d = fitted.to_dict()
    d["fitted"] = d["fitted"][1:]
    with pytest.raises(SchemaError, match="malformed"):
        FittedTransform.from_dict(d)
    with pytest.raises(SchemaError, match="newer"):
        FittedTransform.from_dict({**fitted.to_dict(), "version": 3})


def test_version_one_dict_still_loads_and_transforms() -> None:
    v1 = {
        "version": 1,
        "numeric": ["a", "b"],
        "fill": [2.0, 0.0],
        "mean": [1.0, 10.0],
        "scale": [2.0, 1.0],
        "clip": 3.0,
        "categorical": ["c"],
        "vocabularies": [["x", "y"]],
    }
    ft = FittedTransform.from_dict(v1)
    assert ft.numeric == ("a", "b") and ft.categorical == ("c",)
    assert ft.cardinalities == (3,) and ft.n_dense == 2
    df = pd.DataFrame({"a": [np.nan, 5.0, 1e9], "b": [10.0, 11.0, -np.inf], "c": ["y", "z", None]})
    dense, emb = ft.transform(df)
    np.testing.assert_allclose(dense, [[0.5, 0.0], [2.0, 1.0], [3.0, -3.0]])
    assert emb[:, 0].tolist() == [2, 0, 0]
    np.testing.assert_allclose(_torch_path(ft, df)[0], dense, atol=1e-6)
    assert FittedTransform.from_dict(ft.to_dict()) == ft


def test_describe_reports_fitted_values(fitted: FittedTransform) -> None:
    rows = {row["column"]: row for row in fitted.describe()}
    assert set(rows) == set(fitted.input_columns)
    amount = rows["amount"]
    assert amount["kind"] == "numeric" and amount["outputs"] == ["amount"]
    assert {"fill", "center", "scale", "count", "missing"} <= set(amount["fitted"])
    country = rows["country"]
    assert (
        country["fitted"]["vocabulary_size"]
        == fitted.cardinalities[fitted.emb_names.index("country")] - 1
    )
    assert 0.0 <= country["fitted"]["oov_share"] <= 1.0
    assert country["embedding_outputs"][0]["name"] == "country"
    assert isinstance(country["summary"], str) and country["summary"]
    json.dumps(fitted.describe())  # JSON-ready


def test_module_buffers_follow_to(fitted: FittedTransform) -> None:
    module = fitted.to_module().to(torch.float64)  # floats move, the math stays float32
    names = dict(module.named_buffers())
    assert {"fill", "center", "scale", "code_card"} <= set(names)
    num, codes = fitted.raw_arrays(fraud(20, seed=1))
    with torch.no_grad():
        dense, _ = module(torch.from_numpy(num), torch.from_numpy(codes))
    assert torch.isfinite(dense).all()
