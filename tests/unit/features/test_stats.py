"""Tests for kfgpu.features.stats: one-pass, mergeable fitting statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import ConfigError, EmptyDataError, SchemaError
from kfgpu.features.spec import CategoricalSpec, DatetimeSpec, FeatureSpec, NumericSpec
from kfgpu.features.stats import FeatureStats, categorical_cap, fit_stats
from kfgpu.features.transform import FittedTransform

SPEC = FeatureSpec(
    columns={
        "x": NumericSpec(impute="median", scale="log1p", bucketize=4),
        "c": CategoricalSpec(max_categories=5),
        "ts": DatetimeSpec(parts=("year", "hour")),
    }
)


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(2.0, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    x[:3] = [np.inf, -np.inf, 1e300]
    c = rng.choice(list("abcdefgh"), n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])
    ts = pd.Series(pd.date_range("2019-06-01", periods=n, freq="11h"))
    ts[5] = pd.NaT
    return pd.DataFrame({"x": x, "c": pd.Series(c, dtype=object), "ts": ts})


def test_stats_hold_exact_counts_and_sketch_quantiles() -> None:
    df = _frame()
    st = fit_stats(df, SPEC)
    sk = st.numeric["x"]
    finite = df["x"].to_numpy()
    finite = finite[np.isfinite(finite) & (finite < 1e30)].astype(np.float32).astype(np.float64)
    finite = np.append(finite, np.float64(np.finfo(np.float32).max))  # 1e300, capped
    assert sk.count == finite.size
    assert sk.total == len(df)
    assert sk.mean == pytest.approx(finite.mean(), rel=1e-9)
    med = np.quantile(finite, 0.5, method="lower")
    assert abs(sk.quantile(0.5) - med) <= 0.01 * abs(med)
    assert "x" in st.log1p and st.log1p["x"].count == sk.count
    counts = st.categorical["c"]
    assert counts.counts == df["c"].value_counts().to_dict()
    assert counts.max_values == categorical_cap(CategoricalSpec(max_categories=5)) == 10_000
    assert st.years["ts"] == (2019, int(df["ts"].dt.year.max()))
    assert st.rows == len(df)


def test_two_workers_merged_equal_a_single_pass() -> None:
    df = _frame(3001, seed=1)
    single = fit_stats(df, SPEC)
    a = fit_stats([df.iloc[:1234], df.iloc[1234:2000]], SPEC)
    b = fit_stats(df.iloc[2000:], SPEC)
    merged = FeatureStats.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    for name in ("x",):
        s, m = single.numeric[name].to_dict(), merged.numeric[name].to_dict()
        for key in s:
            if key in ("sum", "m2"):
                assert m[key] == pytest.approx(s[key], rel=1e-9)
            else:
                assert m[key] == s[key], key
    assert merged.categorical["c"] == single.categorical["c"]
    assert merged.years == single.years
    assert merged.rows == single.rows
    ft_single = FittedTransform.from_stats(SPEC, single)
    ft_merged = FittedTransform.from_stats(SPEC, merged)
    assert ft_merged.params["c"] == ft_single.params["c"]
    assert ft_merged.params["ts"] == ft_single.params["ts"]
    p, q = ft_merged.params["x"], ft_single.params["x"]
    assert (p.fill, p.boundaries) == (q.fill, q.boundaries)  # type: ignore[union-attr]
    assert p.center == pytest.approx(q.center, rel=1e-9)  # type: ignore[union-attr]
    assert p.scale == pytest.approx(q.scale, rel=1e-9)  # type: ignore[union-attr]


def test_round_trip_and_equality() -> None:
    st = fit_stats(_frame(300), SPEC)
    again = FeatureStats.from_dict(json.loads(json.dumps(st.to_dict())))
    assert again == st
    assert again.spec == SPEC
    with pytest.raises(ConfigError, match="invalid"):
        FeatureStats.from_dict({"spec": SPEC.to_dict()})


def test_merge_refuses_another_spec() -> None:
    other = FeatureSpec(columns={"x": NumericSpec()})
    with pytest.raises(ConfigError, match="different feature specs"):
        fit_stats(_frame(100), SPEC).merge(fit_stats(_frame(100), other))
    with pytest.raises(ConfigError, match="different feature spec"):
        FittedTransform.from_stats(other, fit_stats(_frame(100), SPEC))


def test_categorical_counts_are_capped() -> None:
    spec = FeatureSpec(columns={"c": CategoricalSpec(max_categories=1)})
    df = pd.DataFrame({"c": [f"v{i}" for i in range(10_050)] + ["v0"] * 5})
    st = fit_stats(df, spec)
    counts = st.categorical["c"]
    assert counts.max_values == 10_000
    assert len(counts.counts) == 10_000 and counts.truncated
    assert counts.total == len(df)
    ft = FittedTransform.from_stats(spec, st)
    assert ft.params["c"].vocabulary == ("v0",)  # type: ignore[union-attr]


def test_empty_and_bad_input() -> None:
    with pytest.raises(EmptyDataError):
        fit_stats([], SPEC)
    with pytest.raises(EmptyDataError):
        fit_stats(_frame(10).iloc[:0], SPEC)
    with pytest.raises(SchemaError, match="'ts'"):
        fit_stats(_frame(10).drop(columns=["ts"]), SPEC)
    bad = _frame(10).astype({"x": object})
    bad.loc[4, "x"] = "lots"
    with pytest.raises(SchemaError, match=r"'x'.*lots"):
        fit_stats(bad, SPEC)


def test_all_missing_datetime_has_no_years() -> None:
    spec = FeatureSpec(columns={"ts": DatetimeSpec(parts=("year",))})
    st = fit_stats(pd.DataFrame({"ts": [None, "not a date"]}), spec)
    assert st.years["ts"] is None
    ft = FittedTransform.from_stats(spec, st)
    assert ft.cardinalities == (2,)


def test_quantiles_are_kept_only_where_the_spec_needs_them() -> None:
    import numpy as np
    import pandas as pd

    from kfgpu.features import FeatureSpec
    from kfgpu.features.stats import fit_stats

    df = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0), "c": np.arange(100.0)})
    spec = FeatureSpec.from_dict(
        {
            "columns": {
                "a": {"type": "numeric"},
                "b": {"type": "numeric", "impute": "median"},
                "c": {"type": "numeric", "bucketize": 4},
            }
        }
    )
    stats = fit_stats(df, spec)
    assert [stats.numeric[k].quantiles for k in "abc"] == [False, True, True]


def test_large_chunks_fill_numeric_sketches_in_threads_with_the_same_result() -> None:
    from kfgpu.validation.sketch import NumericSketch

    rng = np.random.default_rng(3)
    n = 40_000  # above the size whose numeric columns are sketched by threads
    names = [f"n{i}" for i in range(6)]
    df = pd.DataFrame({name: rng.normal(i, 1 + i, n) for i, name in enumerate(names)})
    df.loc[::9, "n2"] = np.nan
    spec = FeatureSpec(columns={name: NumericSpec(impute="median") for name in names})
    st = fit_stats([df.iloc[:20_000], df.iloc[20_000:]], spec)
    for name in names:
        # numeric_values' float32 rounding, then the same two chunks added in order.
        want = NumericSketch(quantiles=True)
        for part in (df[name].iloc[:20_000], df[name].iloc[20_000:]):
            want.add(part.to_numpy(np.float64).astype(np.float32).astype(np.float64))
        assert st.numeric[name].to_dict() == want.to_dict(), name
    assert st.rows == n


def test_threaded_sketching_raises_the_first_bad_column_in_spec_order() -> None:
    n = 20_000
    df = pd.DataFrame(
        {
            "a": np.arange(n, dtype=float),
            "b": ["1"] * (n - 1) + ["oops-b"],
            "c": ["oops-c"] * n,
        }
    )
    spec = FeatureSpec(columns={k: NumericSpec() for k in ("a", "b", "c")})
    with pytest.raises(SchemaError, match="column 'b' must be numeric but holds 'oops-b'"):
        fit_stats([df], spec)
