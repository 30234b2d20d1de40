"""Tests for kfgpu.features.transform: spec inference, fitting, the NumPy/torch halves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kfgpu.data.synthetic import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS, fraud
from kfgpu.errors import ConfigError, EmptyDataError, SchemaError
from kfgpu.features.transform import FeatureSpec, FittedTransform, fit_transform, infer_feature_spec


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return fraud(600, seed=3)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> FittedTransform:
    return fit_transform(frame, infer_feature_spec(frame, LABEL_COLUMN))


def _torch_path(ft: FittedTransform, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    num, codes = ft.raw_arrays(df)
    module = ft.to_module()
    with torch.no_grad():
        x, c = module(torch.from_numpy(num), torch.from_numpy(codes))
    return x.numpy(), c.numpy()


# ---- infer_feature_spec ---------------------------------------------------------------


def test_infer_feature_spec_picks_kinds_and_drops_constant_and_target() -> None:
    df = pd.DataFrame(
        {
            "i": [1, 2, 3, 4],
            "f": [0.5, np.nan, 1.5, 2.5],
            "b": [True, False, True, True],
            "s": ["a", "b", "a", None],
            "const_num": [7, 7, 7, 7],
            "const_str": ["x", "x", "x", "x"],
            "all_nan": [np.nan] * 4,
            "y": [0, 1, 0, 1],
        }
    )
    spec = infer_feature_spec(df, "y")
    assert spec.numeric == ("i", "f", "b")
    assert spec.categorical == ("s",)
    assert "y" not in spec.numeric + spec.categorical


def test_infer_feature_spec_on_fraud_frame(frame: pd.DataFrame) -> None:
    spec = infer_feature_spec(frame, LABEL_COLUMN, max_categories=7)
    assert set(spec.numeric) == set(NUMERIC_COLUMNS)
    assert set(spec.categorical) == set(CATEGORICAL_COLUMNS)
    assert spec.max_categories == 7


def test_infer_feature_spec_without_usable_columns() -> None:
    df = pd.DataFrame({"c": [1, 1, 1], "y": [0, 1, 0]})
    with pytest.raises(SchemaError, match="'y'"):
        infer_feature_spec(df, "y")


# ---- FeatureSpec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "no columns"),
        ({"numeric": ("a",), "categorical": ("a",)}, "both numeric and categorical"),
        ({"numeric": ("a",), "impute": "mode"}, "impute"),
        ({"categorical": ("a",), "max_categories": 0}, "max_categories"),
        ({"categorical": ("a",), "min_frequency": 0}, "min_frequency"),
        ({"numeric": ("a",), "clip": 0.0}, "clip"),
        ({"numeric": ("a",), "clip": -1.0}, "clip"),
        ({"numeric": ("a",), "clip": float("inf")}, "clip"),
        ({"numeric": ("a",), "clip": float("nan")}, "clip"),
    ],
)
def test_feature_spec_rejects_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FeatureSpec(**kwargs)  # type: ignore[arg-type]


# ---- fit_transform ----------------------------------------------------------------------


def test_fit_statistics_match_numpy() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0, 8.0])
    b = np.array([10.0, 10.0, 10.0, 10.0, 10.0])  # constant: scale falls back to 1
    df = pd.DataFrame({"a": a, "b": b})
    ft = fit_transform(df, FeatureSpec(numeric=("a", "b")))

    fill_a = np.nanmean(a)
    filled_a = np.where(np.isnan(a), fill_a, a)
    assert ft.fill[0] == pytest.approx(fill_a)
    assert ft.mean[0] == pytest.approx(filled_a.mean())
    assert ft.scale[0] == pytest.approx(filled_a.std())
    assert ft.mean[1] == pytest.approx(10.0)
    assert ft.scale[1] == 1.0

    x, _ = ft.transform(df)
    expected = (filled_a - filled_a.mean()) / filled_a.std()
    np.testing.assert_allclose(x[:, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x[:, 1], 0.0)


@pytest.mark.parametrize(
    ("impute", "fill"), [("median", 3.0), ("zero", 0.0), ("mean", (1 + 2 + 4 + 5) / 4)]
)
def test_fit_impute_statistic(impute: str, fill: float) -> None:
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 5.0]})
    ft = fit_transform(df, FeatureSpec(numeric=("a",), impute=impute))  # type: ignore[arg-type]
    assert ft.fill == pytest.approx((fill,))


def test_fit_all_missing_numeric_fills_zero() -> None:
    df = pd.DataFrame({"a": [np.nan, np.nan, np.inf]})
    ft = fit_transform(df, FeatureSpec(numeric=("a",)))
    assert ft.fill == (0.0,)
    assert ft.scale == (1.0,)


def test_vocabulary_most_frequent_first_ties_by_value() -> None:
    df = pd.DataFrame({"c": ["b", "a", "b", "z", "b", "a", None, "y", np.nan]})
    ft = fit_transform(df, FeatureSpec(categorical=("c",)))
    assert ft.vocabularies == (("b", "a", "y", "z"),)
    assert ft.cardinalities == (5,)
    _, codes = ft.transform(df)
    assert codes[:, 0].tolist() == [1, 2, 1, 4, 1, 2, 0, 3, 0]


def test_vocabulary_min_frequency_and_max_categories() -> None:
    df = pd.DataFrame({"c": ["b", "a", "b", "c", "b", "a", "d"]})
    ft = fit_transform(df, FeatureSpec(categorical=("c",), min_frequency=2))
    assert ft.vocabularies == (("b", "a"),)
    ft = fit_transform(df, FeatureSpec(categorical=("c",), max_categories=1))
    assert ft.vocabularies == (("b",),)
    _, codes = ft.transform(df)
    assert codes[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 0]


def test_fit_on_empty_frame() -> None:
    with pytest.raises(EmptyDataError):
        fit_transform(pd.DataFrame({"a": pd.Series([], dtype=float)}), FeatureSpec(numeric=("a",)))


def test_fit_on_fraud_frame_is_standardised(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    x, codes = fitted.transform(frame)
    assert x.dtype == np.float32 and codes.dtype == np.int64
    assert x.shape == (len(frame), len(fitted.numeric))
    assert np.isfinite(x).all()
    # Centred and at most unit spread (clipping a heavy tail moves both only slightly).
    assert np.abs(x).max() <= fitted.clip
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-2)
    assert (x.std(axis=0) <= 1.0 + 1e-4).all()
    card = np.asarray(fitted.cardinalities)
    assert ((codes >= 0) & (codes < card)).all()


# ---- no skew between the NumPy and the torch path ---------------------------------------


def _hostile_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame.head(12).copy().reset_index(drop=True)
    rows["device_type"] = rows["device_type"].astype(object)
    rows.loc[0, "amount"] = np.nan
    rows.loc[1, "amount"] = np.inf
    rows.loc[2, "amount"] = -np.inf
    rows.loc[3, "amount"] = 1e12
    rows.loc[4, "amount"] = -1e12
    rows.loc[5, "amount"] = 1e300  # beyond float32: still out of range, not missing
    rows.loc[6, "amount"] = -1e300
    rows.loc[7, "merchant_category"] = "never-seen-before"
    rows.loc[8, "device_type"] = None
    rows.loc[9, "country"] = np.nan
    rows.loc[10, "distance_km"] = np.nan
    rows.loc[10, "account_age_days"] = np.inf
    return rows


def test_numpy_and_torch_paths_agree(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    df = pd.concat([frame, _hostile_rows(frame)], ignore_index=True)
    x_np, c_np = fitted.transform(df)
    x_t, c_t = _torch_path(fitted, df)
    assert x_t.dtype == np.float32
    np.testing.assert_allclose(x_t, x_np, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(c_t, c_np)


def test_hostile_values_are_imputed_clipped_or_unseen(fitted: FittedTransform) -> None:
    rows = _hostile_rows(fraud(600, seed=3))
    x, codes = fitted.transform(rows)
    x_t, codes_t = _torch_path(fitted, rows)
    j = fitted.numeric.index("amount")
    missing = (fitted.fill[j] - fitted.mean[j]) / fitted.scale[j]
    for i in (0, 1, 2):  # NaN, +inf, -inf -> the fill value
        assert x[i, j] == pytest.approx(missing, abs=1e-5)
        assert x_t[i, j] == pytest.approx(missing, abs=1e-5)
    for i, sign in ((3, 1), (4, -1), (5, 1), (6, -1)):  # far out of range -> clipped
        assert x[i, j] == sign * fitted.clip
        assert x_t[i, j] == sign * fitted.clip
    k = fitted.numeric.index("account_age_days")
    assert x[10, k] == pytest.approx((fitted.fill[k] - fitted.mean[k]) / fitted.scale[k], abs=1e-5)
    for col, i in (("merchant_category", 7), ("device_type", 8), ("country", 9)):
        c = fitted.categorical.index(col)
        assert codes[i, c] == 0
        assert codes_t[i, c] == 0
    # Untouched cells of the same rows are encoded as usual (non-zero vocabulary index).
    c = fitted.categorical.index("channel")
    assert (codes[:, c] > 0).all()


def test_transform_arrays_and_module_agree_on_non_finite_inputs(fitted: FittedTransform) -> None:
    # Even without raw_arrays cleaning the input, both halves treat non-finite as missing.
    rng = np.random.default_rng(0)
    num = rng.normal(size=(6, len(fitted.numeric))).astype(np.float32) * 1e3
    num[0, 0], num[1, 1], num[2, 2] = np.nan, np.inf, -np.inf
    codes = np.zeros((6, len(fitted.categorical)), dtype=np.int64)
    x_np, _ = fitted.transform_arrays(num, codes)
    with torch.no_grad():
        x_t, _ = fitted.to_module()(torch.from_numpy(num), torch.from_numpy(codes))
    np.testing.assert_allclose(x_t.numpy(), x_np, rtol=0, atol=1e-6)


def test_module_sends_out_of_range_codes_to_unseen(fitted: FittedTransform) -> None:
    n_cat = len(fitted.categorical)
    codes = torch.tensor([[-1] * n_cat, list(fitted.cardinalities), [1] * n_cat])
    num = torch.zeros((3, len(fitted.numeric)))
    _, c = fitted.to_module()(num, codes)
    assert c[0].tolist() == [0] * n_cat
    assert c[1].tolist() == [0] * n_cat
    assert c[2].tolist() == [1] * n_cat


# ---- bad input ------------------------------------------------------------------------------


def test_missing_column_names_it(frame: pd.DataFrame, fitted: FittedTransform) -> None:
    with pytest.raises(SchemaError, match="distance_km"):
        fitted.transform(frame.drop(columns=["distance_km"]))
    with pytest.raises(SchemaError, match="country"):
        fitted.raw_arrays(frame.drop(columns=["country"]))


def test_non_numeric_string_names_column(frame: pd.DataFrame, fitted: FittedTransform) -> None:
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
    as_text["hour"] = [str(v) for v in df["hour"]]
    as_text.loc[0, "amount"] = None
    df.loc[0, "amount"] = np.nan
    x_text, c_text = fitted.transform(as_text)
    x_num, c_num = fitted.transform(df)
    np.testing.assert_allclose(x_text, x_num, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(c_text, c_num)
    one = pd.DataFrame({"a": ["1.5", "2.5"]})
    ft = fit_transform(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), FeatureSpec(numeric=("a",)))
    num, _ = ft.raw_arrays(one)
    np.testing.assert_array_equal(num[:, 0], np.array([1.5, 2.5], dtype=np.float32))


# ---- persistence ----------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path, fitted: FittedTransform) -> None:
    path = tmp_path / "transform.json"
    fitted.save(path)
    loaded = FittedTransform.load(path)
    assert loaded == fitted
    assert loaded.columns == fitted.columns
    assert loaded.cardinalities == fitted.cardinalities


def test_malformed_json_is_schema_error(tmp_path: Path, fitted: FittedTransform) -> None:
    d = fitted.to_dict()
    del d["mean"]
    with pytest.raises(SchemaError, match="malformed"):
        FittedTransform.from_dict(d)
