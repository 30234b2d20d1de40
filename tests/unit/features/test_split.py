"""Tests for kfgpu.features.split: seeded, stratified train / validation / test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import ConfigError, DataError
from kfgpu.features.split import split_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return fraud(2_000, seed=11)


def _key(df: pd.DataFrame) -> set[tuple[object, ...]]:
    return set(df[["amount", "hour", "velocity_score"]].itertuples(index=False, name=None))


def test_sizes_partition_all_rows(frame: pd.DataFrame) -> None:
    train, val, test = split_frame(
        frame, LABEL_COLUMN, task="classification", val_fraction=0.2, test_fraction=0.1
    )
    n = len(frame)
    assert len(train) + len(val) + len(test) == n
    assert abs(len(val) - 0.2 * n) <= 2
    assert abs(len(test) - 0.1 * n) <= 2
    for part in (train, val, test):
        assert list(part.columns) == list(frame.columns)
        assert part.index.equals(pd.RangeIndex(len(part)))
    # Disjoint, and together every row (the three float columns identify a row here).
    k_train, k_val, k_test = _key(train), _key(val), _key(test)
    assert len(k_train | k_val | k_test) == len(_key(frame))
    assert not (k_train & k_val) and not (k_train & k_test) and not (k_val & k_test)


def test_stratification_keeps_rare_class_everywhere(frame: pd.DataFrame) -> None:
    rate = frame[LABEL_COLUMN].mean()
    assert 0 < rate < 0.05  # the premise: a rare positive class
    splits = split_frame(frame, LABEL_COLUMN, task="classification", seed=4)
    for part in splits:
        positives = int(part[LABEL_COLUMN].sum())
        assert positives >= 1
        # Stratified: each split's rate is the overall rate up to one row of rounding.
        assert abs(positives - rate * len(part)) <= 1.0


def test_stratification_with_a_handful_of_rows_of_a_class() -> None:
    df = pd.DataFrame({"x": np.arange(100.0), "y": ["a"] * 94 + ["b"] * 6})
    train, val, test = split_frame(df, "y", task="classification")
    assert (val["y"] == "b").sum() >= 1 and (test["y"] == "b").sum() >= 1
    assert (train["y"] == "b").sum() >= 3


def test_seed_determinism(frame: pd.DataFrame) -> None:
    a = split_frame(frame, LABEL_COLUMN, task="classification", seed=7)
    b = split_frame(frame, LABEL_COLUMN, task="classification", seed=7)
    c = split_frame(frame, LABEL_COLUMN, task="classification", seed=8)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])


def test_regression_split_is_not_stratified() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "y": rng.normal(size=200)})
    train, val, test = split_frame(df, "y", task="regression")
    assert len(train) + len(val) + len(test) == 200
    assert len(val) == pytest.approx(30, abs=1) and len(test) == pytest.approx(30, abs=1)


def test_rows_with_null_target_are_dropped(frame: pd.DataFrame) -> None:
    df = frame.copy()
    df[LABEL_COLUMN] = df[LABEL_COLUMN].astype("float64")
    df.loc[df.index[:37], LABEL_COLUMN] = np.nan
    parts = split_frame(df, LABEL_COLUMN, task="classification")
    assert sum(len(p) for p in parts) == len(df) - 37
    for part in parts:
        assert part[LABEL_COLUMN].notna().all()


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (0.0, 0.15, "val_fraction"),
        (1.0, 0.15, "val_fraction"),
        (-0.1, 0.15, "val_fraction"),
        (0.15, 0.0, "test_fraction"),
        (0.15, 1.5, "test_fraction"),
        (0.5, 0.45, "leaves under 10%"),
    ],
)
def test_bad_fractions(frame: pd.DataFrame, val: float, test: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        split_frame(
            frame, LABEL_COLUMN, task="classification", val_fraction=val, test_fraction=test
        )


def test_class_with_fewer_than_three_rows() -> None:
    df = pd.DataFrame({"x": np.arange(50.0), "y": ["a"] * 48 + ["rare"] * 2})
    with pytest.raises(DataError, match="'rare'"):
        split_frame(df, "y", task="classification")
    # Class counts only matter when stratifying: the same rows split for regression.
    df["y"] = np.arange(50.0)
    assert sum(len(p) for p in split_frame(df, "y", task="regression")) == 50


def test_too_few_rows() -> None:
    df = pd.DataFrame({"x": np.arange(9.0), "y": np.arange(9.0)})
    with pytest.raises(DataError, match="9 rows"):
        split_frame(df, "y", task="regression")


def test_time_split_puts_the_latest_rows_last() -> None:
    import numpy as np
    import pandas as pd

    from kfgpu.features.split import split_frame

    rng = np.random.default_rng(0)
    times = pd.date_range("2026-01-01", periods=200, freq="h", tz="UTC")
    df = pd.DataFrame(
        {"ts": rng.permutation(times), "x": rng.normal(size=200), "y": rng.integers(0, 2, 200)}
    )
    train, val, test = split_frame(
        df, "y", task="classification", val_fraction=0.1, test_fraction=0.2, time_column="ts"
    )
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    assert train["ts"].max() < val["ts"].min() <= val["ts"].max() < test["ts"].min()


def test_time_split_refuses_missing_times() -> None:
    import pandas as pd
    import pytest

    from kfgpu.errors import DataError, SchemaError
    from kfgpu.features.split import split_frame

    df = pd.DataFrame({"ts": ["2026-01-01"] * 19 + ["not a date"], "y": [0, 1] * 10})
    with pytest.raises(DataError, match="unparseable"):
        split_frame(df, "y", task="classification", time_column="ts")
    with pytest.raises(SchemaError, match="time_column 'when'"):
        split_frame(df, "y", task="classification", time_column="when")
