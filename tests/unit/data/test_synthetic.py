"""Tests for kfgpu.data.synthetic: the seeded, streaming card-fraud generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kfgpu.data import fraud, iter_fraud, read_table, write_fraud_parquet
from kfgpu.data.synthetic import BLOCK_ROWS, CATEGORICAL_COLUMNS, COLUMNS, LABEL_COLUMN
from kfgpu.errors import ConfigError


def test_columns_and_types() -> None:
    df = fraud(2_000, seed=1)
    assert tuple(df.columns) == COLUMNS
    assert 10 <= df.shape[1] <= 14
    assert len(df) == 2_000
    assert set(df[LABEL_COLUMN].unique()) <= {0, 1}
    assert pd.api.types.is_integer_dtype(df[LABEL_COLUMN])
    assert df["hour"].between(0, 23).all()
    assert pd.api.types.is_integer_dtype(df["hour"])
    assert (df["amount"] > 0).all()
    assert set(df["channel"].unique()) == {"web", "pos", "app"}
    for col in CATEGORICAL_COLUMNS:
        assert df[col].dropna().map(type).eq(str).all()
    assert 8 <= df["merchant_category"].nunique() <= 16
    assert 15 <= df["country"].nunique() <= 25


def test_deterministic_for_seed() -> None:
    a = fraud(3_000, seed=7)
    b = fraud(3_000, seed=7)
    c = fraud(3_000, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_independent_of_chunk_rows() -> None:
    small = list(iter_fraud(20_000, seed=5, chunk_rows=1_000))
    odd = list(iter_fraud(20_000, seed=5, chunk_rows=7_777))
    assert [len(c) for c in small] == [1_000] * 20
    assert [len(c) for c in odd] == [7_777, 7_777, 20_000 - 2 * 7_777]
    for chunk in odd:
        assert isinstance(chunk.index, pd.RangeIndex) and chunk.index.start == 0
    pd.testing.assert_frame_equal(
        pd.concat(small, ignore_index=True), pd.concat(odd, ignore_index=True)
    )


def test_chunks_cross_block_boundary() -> None:
    rows = BLOCK_ROWS + 1_234
    whole = fraud(rows, seed=2)
    chunks = list(iter_fraud(rows, seed=2, chunk_rows=50_000))
    assert [len(c) for c in chunks] == [50_000, rows - 50_000]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    # Blocks are independent draws: the second block does not repeat the first.
    assert not np.array_equal(
        whole["amount"].to_numpy()[:1_000], whole["amount"].to_numpy()[BLOCK_ROWS:][:1_000]
    )


def test_positive_rate() -> None:
    df = fraud(100_000, seed=0)
    rate = df[LABEL_COLUMN].mean()
    assert 0.015 <= rate <= 0.025, rate


def test_missing_values_present() -> None:
    df = fraud(20_000, seed=0)
    na = df.isna().mean()
    numeric_with_na = [c for c in ("account_age_days", "distance_km", "merchant_risk") if na[c] > 0]
    assert len(numeric_with_na) >= 2
    assert (na[numeric_with_na] < 0.06).all()
    assert 0 < na["device_type"] < 0.06
    assert na[LABEL_COLUMN] == 0
    assert na["amount"] == 0


def test_label_is_learnable_but_not_trivial() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    df = fraud(60_000, seed=11)
    x = df.drop(columns=LABEL_COLUMN)
    for col in CATEGORICAL_COLUMNS:
        x[col] = x[col].astype("category")
    y = df[LABEL_COLUMN]
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=100, random_state=0
    )
    model.fit(x.iloc[:40_000], y.iloc[:40_000])
    auc = roc_auc_score(y.iloc[40_000:], model.predict_proba(x.iloc[40_000:])[:, 1])
    assert 0.8 <= auc < 0.98, auc


def test_drift_moves_amount() -> None:
    ref = fraud(20_000, seed=0)["amount"].mean()
    ref_other_seed = fraud(20_000, seed=1)["amount"].mean()
    drifted = fraud(20_000, seed=0, drift=0.5)["amount"].mean()
    # Two reference samples agree to within a few percent ...
    assert abs(ref_other_seed / ref - 1) < 0.1
    # ... while drift shifts the mean far more than that.
    assert drifted / ref > 1.25


def test_drift_moves_categories() -> None:
    ref = fraud(20_000, seed=0)["channel"].value_counts(normalize=True)
    drifted = fraud(20_000, seed=0, drift=1.0)["channel"].value_counts(normalize=True)
    assert (ref - drifted).abs().max() > 0.1


def test_zero_drift_is_reference() -> None:
    pd.testing.assert_frame_equal(fraud(1_000, seed=4, drift=0.0), fraud(1_000, seed=4))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": -5}, "rows"),
        ({"rows": 10, "drift": -0.1}, "drift"),
        ({"rows": 10, "drift": 1.5}, "drift"),
        ({"rows": 10, "chunk_rows": 0}, "chunk_rows"),
        ({"rows": 10, "seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        iter_fraud(**kwargs)  # type: ignore[arg-type]


def test_write_fraud_parquet(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "fraud.parquet"
    info = write_fraud_parquet(str(dest), 10_500, seed=3, chunk_rows=2_000)
    assert info["rows"] == 10_500
    assert Path(info["path"]) == dest
    meta = pq.ParquetFile(dest).metadata
    assert meta.num_row_groups == 6
    assert meta.num_rows == 10_500
    assert [p.name for p in dest.parent.iterdir()] == ["fraud.parquet"]
    pd.testing.assert_frame_equal(read_table(str(dest)), fraud(10_500, seed=3))


def test_write_fraud_parquet_invalid_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "x.parquet"
    with pytest.raises(ConfigError, match="drift"):
        write_fraud_parquet(str(dest), 100, drift=3.0)
    assert not dest.exists()
