"""Tests for kfgpu.validation.profile: sketches, counts, samples, profiles, sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.synthetic import fraud
from kfgpu.errors import ConfigError, SchemaError
from kfgpu.validation.profile import ReferenceProfile, build_profile, profile_source
from kfgpu.validation.sketch import CategoricalCounts, NumericSketch

A = 0.01
QS = np.linspace(0.0, 1.0, 201)


def _data(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "lognormal":
        return rng.lognormal(0.0, 2.0, 50_000)
    if kind == "normal":
        return rng.normal(-1.0, 3.0, 50_000)  # about a third negative
    x = rng.normal(5.0, 2.0, 50_000)
    x[rng.random(50_000) < 0.2] = 0.0
    return x


@pytest.mark.parametrize("kind", ["lognormal", "normal", "zeros"])
def test_quantiles_within_relative_accuracy(kind: str) -> None:
    x = _data(kind)
    s = NumericSketch(A).add(x)
    exact = np.quantile(x, QS, method="lower")
    est = s.quantile(QS)
    err = np.abs(est - exact)
    assert np.all(err <= A * np.abs(exact) * (1 + 1e-9) + 1e-300), np.max(err / np.abs(exact))
    assert s.quantile(0.0) == x.min() and s.quantile(1.0) == x.max()
    assert isinstance(s.quantile(0.5), float)
    assert s.count == x.size
    assert s.mean == pytest.approx(x.mean(), rel=1e-9)
    assert s.std == pytest.approx(x.std(), rel=1e-9)


def test_merge_equals_concat_exactly() -> None:
    x = _data("normal")
    x[::97] = np.nan
    x[::1001] = np.inf
    whole = NumericSketch().add(x)
    parts = [NumericSketch().add(c) for c in np.array_split(x, 7)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    a, b = whole.to_dict(), merged.to_dict()
    for key in ("pos_keys", "pos_counts", "neg_keys", "neg_counts"):
        assert a[key] == b[key]
    for key in ("count", "null_count", "pos_inf_count", "neg_inf_count", "zero_count"):
        assert a[key] == b[key]
    assert a["min"] == b["min"] and a["max"] == b["max"]
    assert b["sum"] == pytest.approx(a["sum"], rel=1e-9)
    assert merged.std == pytest.approx(whole.std, rel=1e-9)


def test_merge_rejects_other_accuracy() -> None:
    with pytest.raises(ConfigError, match="relative_accuracy"):
        NumericSketch(0.01).merge(NumericSketch(0.02))


def test_cdf_monotone_and_exact_at_edges() -> None:
    x = _data("normal")
    s = NumericSketch().add(x)
    grid = np.linspace(x.min() - 1, x.max() + 1, 5_000)
    f = s.cdf(grid)
    assert np.all(np.diff(f) >= 0)
    assert f[0] == 0.0 and f[-1] == 1.0
    edges = s.edges()
    exact = np.searchsorted(np.sort(x), edges, side="right") / x.size
    # Exact up to values that sit on a bin edge within float rounding of the log.
    assert np.max(np.abs(s.cdf(edges) - exact)) < 1e-3
    assert s.cdf(np.median(x)) == pytest.approx(0.5, abs=0.01)


def test_nan_none_and_inf_counted_apart() -> None:
    s = NumericSketch().add(np.array([1.0, np.nan, np.inf, -np.inf, np.inf, 0.0, -2.0]))
    s.add(pd.Series([None, 3.0], dtype=object))
    assert (s.null_count, s.pos_inf_count, s.neg_inf_count) == (2, 2, 1)
    assert s.count == 4 and s.zero_count == 1 and s.total == 9
    assert s.min == -2.0 and s.max == 3.0
    assert np.isfinite(s.mean)


def test_sketch_json_round_trip() -> None:
    x = _data("zeros")
    x[:10] = np.nan
    x[10:12] = -np.inf
    s = NumericSketch(0.02).add(x)
    back = NumericSketch.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    np.testing.assert_array_equal(back.quantile(QS), s.quantile(QS))
    empty = NumericSketch()
    assert NumericSketch.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty
    assert np.isnan(empty.quantile(0.5))
    with pytest.raises(ConfigError, match=r"NumericSketch\.to_dict"):
        NumericSketch.from_dict({"count": 1})


def test_quantile_rejects_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"q=1\.5"):
        NumericSketch().add([1.0]).quantile(1.5)


def test_categorical_counts_and_cap() -> None:
    s = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 5 + [None] * 3 + [np.nan] * 2)
    c = CategoricalCounts(max_values=2).add(s)
    assert c.counts == {"a": 50, "b": 30}
    assert c.other_count == 15 and c.null_count == 5 and c.truncated
    assert c.total == len(s)
    d = c.to_dict()
    assert d["truncated"] is True and d["values"] == ["a", "b"]
    assert CategoricalCounts.from_dict(json.loads(json.dumps(d))) == c

    uncapped = CategoricalCounts().add(s)
    assert not uncapped.truncated and uncapped.other_count == 0
    assert uncapped.counts == {"a": 50, "b": 30, "c": 10, "d": 5}


def test_categorical_merge_and_stringify() -> None:
    a = CategoricalCounts().add(pd.Series([1, 2, 2, None], dtype=object))
    b = CategoricalCounts().add(pd.Series(["2", "3"]))
    a.merge(b)
    assert a.counts == {"1": 1, "2": 3, "3": 1} and a.null_count == 1
    cat = pd.Series(pd.Categorical(["x", "x", None], categories=["x", "unused"]))
    assert CategoricalCounts().add(cat).counts == {"x": 2}
    with pytest.raises(ConfigError, match="max_values"):
        CategoricalCounts(max_values=0)


def test_reservoir_sample_size_and_uniform_merge() -> None:
    n = 40_000
    df = pd.DataFrame({"i": np.arange(n, dtype=np.int64)})
    chunks = [df.iloc[:4_000], df.iloc[4_000:10_000], df.iloc[10_000:]]
    p = build_profile(chunks, sample_rows=2_000, seed=3)
    assert len(p.sample) == 2_000
    assert p.sample["i"].is_unique
    # Uniform: the first 10% of rows (one small chunk) hold about 10% of the sample.
    first = int((p.sample["i"] < 4_000).sum())
    assert 140 <= first <= 260, first
    # and the sample mean is near the middle
    assert abs(p.sample["i"].mean() - n / 2) < 0.05 * n
    small = build_profile([df.iloc[:100]], sample_rows=2_000)
    assert len(small.sample) == 100


def test_build_profile_chunks_equal_whole() -> None:
    df = fraud(5_000, seed=2)
    whole = build_profile([df], sample_rows=100)
    chunked = build_profile([df.iloc[i : i + 700] for i in range(0, len(df), 700)], sample_rows=100)
    assert whole.rows == chunked.rows == 5_000
    assert whole.kinds == chunked.kinds
    assert whole.kinds["amount"] == "numeric" and whole.kinds["country"] == "categorical"
    for name, col in whole.columns.items():
        other = chunked.columns[name]
        if col.kind == "numeric":
            a, b = col.numeric.to_dict(), other.numeric.to_dict()
            for key in ("pos_keys", "pos_counts", "neg_keys", "neg_counts", "count", "null_count"):
                assert a[key] == b[key], (name, key)
        else:
            assert col.categorical == other.categorical, name
    assert whole.columns["device_type"].categorical.null_count > 0


def test_build_profile_options_and_errors() -> None:
    df = fraud(2_000, seed=0)
    p = build_profile(
        df[["amount", "hour", "country", "is_fraud"]],
        categorical=["country", "is_fraud"],
        exclude=["hour"],
    )
    assert "hour" not in p.columns
    assert p.kinds["is_fraud"] == "categorical" and p.kinds["amount"] == "numeric"
    assert p.categorical_columns() == ["country", "is_fraud"]
    with pytest.raises(SchemaError, match="'amount'"):
        build_profile([df, df.drop(columns=["amount"])])
    with pytest.raises(SchemaError, match="nope"):
        build_profile(df, categorical=["nope"])
    with pytest.raises(SchemaError, match="'country'"):
        build_profile(df[["country", "channel"]], categorical=["channel"])  # strings


def test_profile_merge_needs_same_columns() -> None:
    df = fraud(1_000, seed=0)
    a = build_profile(df)
    b = build_profile(df.drop(columns=["amount"]))
    with pytest.raises(ConfigError, match="amount"):
        a.merge(b)


def test_save_load_round_trip_and_size(tmp_path: Path) -> None:
    p = build_profile(fraud(100_000, seed=0))
    paths = p.save(tmp_path / "ref")
    size = Path(paths["profile"]).stat().st_size
    assert size < 200_000, size
    text = Path(paths["profile"]).read_text()
    assert json.loads(text) == p.to_dict() and "\n" not in text
    back = ReferenceProfile.load(tmp_path / "ref")
    assert back.to_dict() == p.to_dict()
    assert len(back.sample) == 5_000
    pd.testing.assert_frame_equal(back.sample, p.sample, check_dtype=False)


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 3_000
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n),
            "c": rng.choice(["u", "v", "w"], n),
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "parquet_dir", "csv", "jsonl"])
def test_profile_source_formats(tmp_path: Path, fmt: str) -> None:
    df = _frame()
    if fmt == "parquet":
        uri = str(tmp_path / "d.parquet")
        df.to_parquet(uri, row_group_size=500)
    elif fmt == "parquet_dir":
        (tmp_path / "d").mkdir()
        df.iloc[:1_000].to_parquet(tmp_path / "d" / "part-0.parquet")
        df.iloc[1_000:].to_parquet(tmp_path / "d" / "part-1.parquet")
        uri = str(tmp_path / "d")
    elif fmt == "csv":
        uri = str(tmp_path / "d.csv")
        df.to_csv(uri, index=False)
    else:
        uri = str(tmp_path / "d.jsonl")
        df.to_json(uri, orient="records", lines=True)
    p = profile_source(uri, chunk_rows=700)
    ref = build_profile([df])
    assert p.rows == 3_000
    assert p.kinds == {"x": "numeric", "k": "numeric", "c": "categorical"}
    assert p.columns["c"].categorical == ref.columns["c"].categorical
    assert (
        p.columns["k"].numeric.to_dict()["pos_counts"]
        == (ref.columns["k"].numeric.to_dict()["pos_counts"])
    )
    assert p.columns["x"].numeric.count == 3_000


def test_moments_only_sketch_keeps_exact_moments_and_refuses_quantiles() -> None:
    import numpy as np
    import pytest

    from kfgpu.errors import ConfigError
    from kfgpu.validation.sketch import NumericSketch

    x = np.random.default_rng(3).lognormal(size=5000)
    x[:7] = np.nan
    full, light = NumericSketch().add(x), NumericSketch(quantiles=False).add(x)
    assert (light.count, light.null_count) == (full.count, full.null_count) == (4993, 7)
    assert light.mean == pytest.approx(np.nanmean(x)) and light.std == pytest.approx(full.std)
    with pytest.raises(ConfigError, match="moments only"):
        light.quantile(0.5)
    again = NumericSketch.from_dict(light.to_dict())
    assert again.quantiles is False and again.to_dict() == light.to_dict()
    with pytest.raises(ConfigError, match="moments-only"):
        NumericSketch().merge(light)
    assert NumericSketch(quantiles=False).merge(full).count == full.count
