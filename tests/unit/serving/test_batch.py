"""batch_predict: any table in, Parquet shards out, streamed in chunks, atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfgpu.errors import SchemaError
from kfgpu.serving.batch import batch_predict_step
from tests.conftest import run_kfgpu


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kfgpu.data import fraud

    df = fraud(2500, seed=11).drop(columns=["is_fraud"])
    df.insert(0, "id", np.arange(len(df)))
    path = tmp_path_factory.mktemp("batch") / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=700)
    return path


def test_chunked_output_equals_in_memory_predictions(
    bundle_path: Path, data: Path, tmp_path: Path
) -> None:
    from kfgpu.bundle import load_bundle

    out = tmp_path / "out.parquet"
    result = batch_predict_step(
        bundle_path=str(bundle_path),
        data_uri=str(data),
        output_path=str(out),
        chunk_rows=600,
        keep_columns=["id"],
    )
    # Chunks never span a row group (700 rows): 600 + 100 three times, then 400.
    assert result.metrics["rows"] == 2500 and result.metrics["chunks"] == 7
    assert (out / "_manifest.json").is_file()
    got = pd.read_parquet(out)
    want = load_bundle(bundle_path).predict(pd.read_parquet(data))
    assert list(got.columns) == ["id", "prediction", "proba_0", "proba_1"]
    assert got["id"].tolist() == list(range(2500))
    np.testing.assert_allclose(got[["proba_0", "proba_1"]], want[["proba_0", "proba_1"]], atol=1e-6)
    assert got["prediction"].tolist() == want["prediction"].tolist()


def test_failure_leaves_no_partial_file(bundle_path: Path, data: Path, tmp_path: Path) -> None:
    df = pd.read_parquet(data)
    df["amount"] = df["amount"].map(str)  # numeric text parses, until the bad value
    df.loc[2000, "amount"] = "not a number"  # fails in the fourth chunk, after three were written
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), bad)
    out = tmp_path / "out.parquet"
    with pytest.raises(SchemaError, match="not a number"):
        batch_predict_step(
            bundle_path=str(bundle_path),
            data_uri=str(bad),
            output_path=str(out),
            chunk_rows=600,
            file_rows=600,  # three shards were complete when the fourth chunk failed
        )
    assert list(tmp_path.iterdir()) == [bad]
    # Over an earlier output: it stays as it was, whole, with its manifest.
    batch_predict_step(bundle_path=str(bundle_path), data_uri=str(data), output_path=str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SchemaError, match="not a number"):
        batch_predict_step(
            bundle_path=str(bundle_path),
            data_uri=str(bad),
            output_path=str(out),
            chunk_rows=600,
            file_rows=600,
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "out.parquet"]


def _write(df: pd.DataFrame, path: Path) -> None:
    name = path.name
    if name.endswith((".csv", ".csv.gz")):
        df.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        df.to_csv(path, index=False, sep="\t")
    elif name.endswith(".jsonl"):
        df.to_json(path, orient="records", lines=True)
    else:  # a directory of Parquet shards
        path.mkdir()
        for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
            df.iloc[part].to_parquet(path / f"p{i}.parquet", index=False)


@pytest.mark.parametrize("name", ["in.csv", "in.csv.gz", "in.tsv", "in.jsonl", "shards"])
def test_every_format_run_reads_streams_to_the_same_predictions(
    bundle_path: Path, data: Path, tmp_path: Path, name: str
) -> None:
    from kfgpu.data import read_table

    src = tmp_path / name
    _write(pd.read_parquet(data), src)
    out = tmp_path / "out"
    result = batch_predict_step(
        bundle_path=str(bundle_path),
        data_uri=str(src),
        output_path=str(out),
        chunk_rows=800,
        keep_columns=["id"],
        file_rows=1000,
    )
    # Streamed: 2500 rows in chunks of at most 800, written as shards of at most 1000.
    assert result.metrics["chunks"] >= 4 and result.metadata["predictions"]["files"] == 3
    got = pd.read_parquet(out)
    from kfgpu.bundle import load_bundle

    want = load_bundle(bundle_path).predict(read_table(str(src)))
    assert got["id"].tolist() == list(range(2500))
    assert got["prediction"].tolist() == want["prediction"].tolist()
    np.testing.assert_allclose(got[["proba_0", "proba_1"]], want[["proba_0", "proba_1"]], atol=1e-6)


def test_a_csv_broken_mid_way_is_named_and_leaves_no_output(
    bundle_path: Path, data: Path, tmp_path: Path
) -> None:
    from kfgpu.errors import DataFormatError

    src = tmp_path / "in.csv"
    lines = pd.read_parquet(data).to_csv(index=False).splitlines()
    lines[2200] += ',"unterminated'  # a row the parser rejects, in the third chunk
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="cannot be parsed as CSV"):
        batch_predict_step(
            bundle_path=str(bundle_path),
            data_uri=str(src),
            output_path=str(tmp_path / "out"),
            chunk_rows=1000,
            file_rows=1000,
        )
    assert list(tmp_path.iterdir()) == [src]


def test_builtin_data_and_a_file_that_is_no_table(bundle_path: Path, tmp_path: Path) -> None:
    from kfgpu.errors import DataFormatError

    out = tmp_path / "o"
    r = batch_predict_step(
        bundle_path=str(bundle_path), data_uri="kfgpu://fraud?rows=300", output_path=str(out)
    )
    assert r.metrics["rows"] == 300 and len(pd.read_parquet(out)) == 300
    junk = tmp_path / "artifact"
    junk.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="no known suffix and is not Parquet"):
        batch_predict_step(bundle_path=str(bundle_path), data_uri=str(junk), output_path=str(out))


def test_missing_columns_are_named(bundle_path: Path, data: Path, tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="keep_columns"):
        batch_predict_step(
            bundle_path=str(bundle_path),
            data_uri=str(data),
            output_path=str(tmp_path / "o.parquet"),
            keep_columns=["nope"],
        )
    small = tmp_path / "small.parquet"
    pd.read_parquet(data).drop(columns=["country"]).to_parquet(small)
    with pytest.raises(SchemaError, match="country"):
        batch_predict_step(
            bundle_path=str(bundle_path),
            data_uri=str(small),
            output_path=str(tmp_path / "o.parquet"),
        )


def test_cli_predict_and_deploy_dry_run(bundle_path: Path, data: Path, tmp_path: Path) -> None:
    import yaml

    out = tmp_path / "p.parquet"
    # A CSV: `kfgpu predict` used to refuse it ("... is not a Parquet file").
    csv = tmp_path / "in.csv"
    pd.read_parquet(data).to_csv(csv, index=False)
    r = run_kfgpu(
        "predict", str(bundle_path), str(csv), str(out), "--keep", "id", "--chunk-rows", "1000"
    )
    assert r.returncode == 0, r.stderr
    assert "2500 rows in 3 chunk(s)" in r.stdout
    assert pd.read_parquet(out)["id"].tolist() == list(range(2500))
    r = run_kfgpu(
        "deploy",
        str(bundle_path),
        "--name",
        "fraud",
        "--storage-uri",
        "s3://m/v2",
        "--mode",
        "RawDeployment",
        "--canary",
        "10",
        "--gpus",
        "1",
        "--dry-run",
    )
    assert r.returncode == 0, r.stderr
    obj = yaml.safe_load(r.stdout)
    assert obj["spec"]["canary"][0]["trafficPercent"] == 10
    r = run_kfgpu(
        "deploy",
        str(bundle_path),
        "--name",
        "fraud",
        "--mode",
        "RawDeployment",
        "--canary",
        "10",
        "--kserve-version",
        "0.19",
        "--dry-run",
    )
    assert r.returncode == 1 and "kserve issue 5335" in r.stderr
