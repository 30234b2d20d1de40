"""Streamed validation (kfgpu.validation.stream) finds what the in-memory validation finds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.shards import open_shards, write_shards
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.validation.checks import validate
from kfgpu.validation.stream import validate_source


@pytest.fixture(scope="module")
def messy() -> pd.DataFrame:
    df = fraud(4_000, seed=8)
    df["constant"] = 3.0
    df["user_id"] = [f"u{i}" for i in range(len(df))]  # ID-like: high cardinality
    df.loc[df.index[:40], "amount"] = np.inf
    df.loc[df.index[40:45], "amount"] = -np.inf
    df["mostly_null"] = np.where(np.arange(len(df)) % 10 == 0, 1.0, np.nan)
    dup = df.iloc[100:130].copy()  # 30 exact duplicate rows
    return pd.concat([df, dup], ignore_index=True)


def _found(result: object) -> set[tuple[object, str]]:
    return {(a.column, a.check) for a in result.anomalies}  # type: ignore[attr-defined]


def test_streamed_validation_reports_what_in_memory_validation_reports(
    tmp_path: Path, messy: pd.DataFrame
) -> None:
    src = str(tmp_path / "data")
    write_shards(messy, src, file_rows=1_000, row_group_rows=300)
    whole = validate(messy, LABEL_COLUMN)
    streamed = validate_source(src, LABEL_COLUMN, sample_rows=1_500, batch_rows=256)
    assert streamed.streamed and streamed.rows == len(messy)
    assert 1_000 < len(streamed.sample) < 2_000
    got = streamed.result
    assert _found(got) == _found(whole)
    assert {
        ("amount", "infinite_values"),
        (None, "duplicate_rows"),
        ("constant", "constant_feature"),
        ("user_id", "high_cardinality"),
        ("mostly_null", "null_fraction"),
    } <= _found(got)
    dup = next(a for a in got.anomalies if a.check == "duplicate_rows")
    assert dup.value == 30 and dup.message.startswith("30 of 4030")
    inf = next(a for a in got.anomalies if a.check == "infinite_values")
    assert inf.value["pos"] == 40 and inf.value["neg"] == 5
    # Exact statistics agree with the in-memory ones; quantiles come from the sample.
    a, b = got.statistics, whole.statistics
    assert (a.n_rows, a.task, a.label_distribution) == (b.n_rows, b.task, b.label_distribution)
    for col_a, col_b in zip(a.columns, b.columns, strict=True):
        assert (col_a.name, col_a.kind, col_a.dtype) == (col_b.name, col_b.kind, col_b.dtype)
        assert col_a.null_fraction == pytest.approx(col_b.null_fraction, abs=1e-12)
        if col_b.kind == "numeric" and col_b.min is not None:
            assert (col_a.min, col_a.max) == (col_b.min, col_b.max)
            assert col_a.mean == pytest.approx(col_b.mean, rel=1e-9)
            assert col_a.std == pytest.approx(col_b.std, rel=1e-9)
        if col_b.kind == "categorical":
            assert col_a.domain == col_b.domain and col_a.n_unique == col_b.n_unique


def test_a_small_table_is_validated_whole(tmp_path: Path) -> None:
    df = fraud(600, seed=1)
    write_shards(df, str(tmp_path / "d"), row_group_rows=100)
    found = validate_source(str(tmp_path / "d"), LABEL_COLUMN)
    assert not found.streamed and found.sample.equals(df)
    assert found.result.statistics == validate(df, LABEL_COLUMN).statistics


def test_duplicates_past_the_hash_budget_are_estimated(
    tmp_path: Path, messy: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kfgpu.validation.stream as stream

    many = pd.concat([messy] * 3, ignore_index=True)  # 2 of every 3 rows duplicate
    write_shards(many, str(tmp_path / "d"), row_group_rows=500)
    monkeypatch.setattr(stream, "MAX_ROW_HASHES", 3_000)
    found = validate_source(str(tmp_path / "d"), LABEL_COLUMN, sample_rows=1_000)
    dup = next(a for a in found.result.anomalies if a.check == "duplicate_rows")
    exact = int(many.duplicated().sum())
    assert dup.message.startswith("about ") and abs(dup.value - exact) < 0.15 * exact


def test_validate_data_step_copies_parquet_shards_with_a_manifest(tmp_path: Path) -> None:
    from kfgpu.validation.step import validate_data_step

    src = str(tmp_path / "data")
    write_shards(fraud(2_000, seed=3), src, file_rows=600, row_group_rows=200)
    out = tmp_path / "out"
    validate_data_step(
        data_uri=src,
        target=LABEL_COLUMN,
        dataset_path=str(out / "dataset"),
        schema_path=str(out / "schema.json"),
        report_path=str(out / "report.md"),
    )
    copied = open_shards(str(out / "dataset"))
    original = open_shards(src)
    assert copied.rows == 2_000 and copied.manifest is not None
    # Byte-for-byte copies: the same file hashes, so the same fingerprint.
    assert [f.sha256 for f in copied.files] == [f.sha256 for f in original.files]
    assert copied.fingerprint == original.fingerprint


def test_streamed_statistics_do_not_depend_on_the_shard_layout_and_stay_exact(
    tmp_path: Path,
) -> None:
    """The per-batch fast path (dictionary hashes, prefetching reader): the same statistics
    whatever the files, row groups and batches, exact where documented as exact."""
    from kfgpu.validation.stream import stream_statistics

    rng = np.random.default_rng(5)
    n = 6_000
    df = fraud(n, seed=5)
    df.loc[df.index[:30], "amount"] = np.inf
    df.loc[df.index[30:37], "amount"] = -np.inf
    df.loc[df.index[37:60], "amount"] = np.nan
    df["text"] = pd.Series(rng.choice(["a", "b", "c"], n), dtype=object)
    df.loc[rng.random(n) < 0.1, "text"] = None
    df["flag"] = pd.array(np.where(rng.random(n) < 0.5, True, False), dtype="boolean")
    df.loc[rng.random(n) < 0.05, "flag"] = pd.NA
    df["ids"] = [f"id{i % 4_500}" for i in range(n)]  # past the distinct-count sketch
    df["zeros"] = np.where(rng.random(n) < 0.5, -0.0, 0.0)
    df = pd.concat([df, df.iloc[200:260]], ignore_index=True)  # 60 duplicate rows
    found = []
    for i, (file_rows, group_rows, batch_rows) in enumerate(
        [(2_000, 700, 256), (5_000, 2_500, 4_096), (10_000, 10_000, 65_536)]
    ):
        src = str(tmp_path / f"d{i}")
        write_shards(df, src, file_rows=file_rows, row_group_rows=group_rows)
        found.append(
            stream_statistics(
                open_shards(src), LABEL_COLUMN, sample_rows=1_000, batch_rows=batch_rows
            )
        )
    first = found[0]
    for other in found[1:]:
        for a, b in zip(other.schema.columns, first.schema.columns, strict=True):
            # Means and deviations merge per batch: equal up to rounding.
            assert replace(a, mean=None, std=None) == replace(b, mean=None, std=None)
            if b.mean is not None:
                assert (a.mean, a.std) == pytest.approx((b.mean, b.std), rel=1e-12)
        assert other.schema.label_distribution == first.schema.label_distribution
        assert (other.duplicate_rows, other.infinite) == (first.duplicate_rows, first.infinite)
    assert first.duplicates_exact and first.duplicate_rows == int(df.duplicated().sum()) == 60
    assert first.infinite == {"amount": (30, 7)}
    whole = validate(df, LABEL_COLUMN).statistics
    for got, want in zip(first.schema.columns, whole.columns, strict=True):
        assert got.null_fraction == pytest.approx(want.null_fraction, abs=1e-12), got.name
        if want.kind == "numeric" and want.min is not None:
            assert (got.min, got.max) == (want.min, want.max), got.name
            assert got.mean == pytest.approx(want.mean, rel=1e-9), got.name
            assert got.std == pytest.approx(want.std, rel=1e-9), got.name
        elif got.name in ("text", "merchant_category", "country"):
            assert (got.domain, got.n_unique) == (want.domain, want.n_unique), got.name
    ids = next(c for c in first.schema.columns if c.name == "ids")
    assert abs(ids.n_unique - 4_500) < 0.05 * 4_500  # estimated past 4096 distinct values
    assert first.schema.label_distribution == whole.label_distribution
