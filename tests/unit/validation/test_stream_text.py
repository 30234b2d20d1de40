"""validate_data streams CSV/TSV and JSON lines: parsed chunk by chunk into Parquet shards,
then validated like Parquet (kfgpu.data.stream.stream_to_shards + validate_source)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kfgpu.data
import kfgpu.validation.stream as streaming
from kfgpu.data import read_table
from kfgpu.data.shards import open_shards
from kfgpu.data.stream import MixedTypesError, stream_to_shards
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import DataError
from kfgpu.validation.checks import validate
from kfgpu.validation.step import validate_data_step

ROWS = 3_000


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    df = fraud(ROWS, seed=21)
    df["late_null"] = np.arange(ROWS, dtype=float)
    df.loc[df.index[2_600:], "late_null"] = np.nan  # integers, then blanks
    df.loc[df.index[:25], "amount"] = np.inf
    return pd.concat([df, df.iloc[10:30]], ignore_index=True)  # 20 duplicate rows


def _write(df: pd.DataFrame, path: Path) -> Path:
    name = path.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        text = df.to_json(orient="records", lines=True)
    else:
        text = df.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns and values (a missing value is None in one, NaN in the other)."""

    def norm(df: pd.DataFrame) -> pd.DataFrame:
        return df.astype(object).where(df.notna(), None)

    pd.testing.assert_frame_equal(norm(got), norm(want), check_dtype=False)


def _run(data: Path, out: Path) -> object:
    return validate_data_step(
        data_uri=str(data),
        target=LABEL_COLUMN,
        dataset_path=str(out / "dataset"),
        schema_path=str(out / "schema.json"),
        report_path=str(out / "report.md"),
        anomalies_path=str(out / "anomalies.json"),
    )


@pytest.mark.parametrize("name", ["data.csv", "data.tsv.gz", "data.jsonl", "data.json"])
def test_validate_data_streams_a_text_table_and_finds_what_reading_it_whole_finds(
    name: str, table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(table, tmp_path / name)
    whole = read_table(str(src))
    expected = validate(whole, LABEL_COLUMN)

    def no_whole_read(uri: str, **kw: object) -> pd.DataFrame:
        raise AssertionError(f"{uri} was read whole")

    monkeypatch.setattr(streaming, "DEFAULT_SAMPLE_ROWS", 500)  # streamed, sampled checks
    monkeypatch.setattr(kfgpu.data, "read_table", no_whole_read)
    out = tmp_path / "out"
    result = _run(src, out)
    assert result.metrics["rows"] == len(table)  # type: ignore[attr-defined]
    found = {(a.column, a.check) for a in expected.anomalies}
    report = (out / "report.md").read_text()
    assert (None, "duplicate_rows") in found and "20 of 3020 rows" in report
    copied = open_shards(str(out / "dataset"))
    assert copied.manifest is not None and copied.rows == len(table)
    _same_rows(pd.read_parquet(out / "dataset"), whole)
    # Nothing else is left beside the output (the staging shards are gone).
    assert sorted(p.name for p in out.iterdir()) == [
        "anomalies.json",
        "dataset",
        "report.md",
        "schema.json",
    ]
    got = {
        (a["column"], a["check"])
        for a in json.loads((out / "anomalies.json").read_text())["anomalies"]
    }
    assert got == found


def test_a_csv_broken_mid_file_fails_with_its_report_and_leaves_the_old_output(
    table: pd.DataFrame, tmp_path: Path
) -> None:
    src = _write(table, tmp_path / "data.csv")
    out = tmp_path / "out"
    _run(src, out)
    before = open_shards(str(out / "dataset")).fingerprint
    lines = src.read_text().splitlines()
    lines[2_500] = '"unterminated'
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="cannot be parsed as CSV"):
        _run(broken, out)
    assert "cannot be parsed as CSV" in (out / "report.md").read_text()
    assert open_shards(str(out / "dataset")).fingerprint == before  # untouched
    assert sorted(p.name for p in out.iterdir()) == [
        "anomalies.json",
        "dataset",
        "report.md",
        "schema.json",
    ]
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError):
        _run(broken, fresh)
    assert not (fresh / "dataset").exists()
    assert [p.name for p in fresh.iterdir() if p.name.startswith(".")] == []


def test_chunks_get_the_types_of_the_whole_file(table: pd.DataFrame, tmp_path: Path) -> None:
    src = _write(table, tmp_path / "data.csv")
    stream_to_shards(str(src), str(tmp_path / "shards"), chunk_rows=700)
    shards = open_shards(str(tmp_path / "shards"))
    whole = read_table(str(src))
    # late_null parses as integers in the first chunks and as floats in the last.
    assert str(shards.schema.field("late_null").type) == "double"
    _same_rows(pd.read_parquet(tmp_path / "shards"), whole)

    mixed = table.head(1_500).copy()
    mixed["code"] = [str(i) if i < 1_000 else f"c{i}" for i in range(len(mixed))]
    src = _write(mixed, tmp_path / "mixed.csv")
    with pytest.raises(MixedTypesError, match="changes type mid-file"):
        stream_to_shards(str(src), str(tmp_path / "mixed"), chunk_rows=700)
    assert not (tmp_path / "mixed").exists()
