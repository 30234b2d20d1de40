"""Tests for kfgpu.data.io: reading every format, errors, atomic Parquet, fingerprints."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from kfgpu.data import fingerprint, read_table, write_parquet
from kfgpu.errors import (
    ConfigError,
    DataError,
    DataFormatError,
    DataNotFoundError,
    EmptyDataError,
    SchemaError,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(6, dtype=np.int64),
            "x": [0.5, 1.25, np.nan, -3.0, 4.75, 1e6],
            "cat": ["a", "b", "a", "c", "b", "a"],
            "flag": [True, False, True, True, False, False],
        }
    )


def _write(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` with pandas itself, in the format the suffix names."""
    name = path.name
    compression = None
    for suffix, codec in ((".gz", "gzip"), (".bz2", "bz2"), (".xz", "xz"), (".zst", "zstd")):
        if name.endswith(suffix):
            compression, name = codec, name[: -len(suffix)]
    if name.endswith(".csv"):
        df.to_csv(path, index=False, compression=compression)
    elif name.endswith(".tsv"):
        df.to_csv(path, index=False, sep="\t", compression=compression)
    elif name.endswith((".parquet", ".pq")):
        df.to_parquet(path, index=False)
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        df.to_json(path, orient="records", lines=True, compression=compression)
    else:  # pragma: no cover - test helper misuse
        raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "t.csv",
        "t.tsv",
        "t.parquet",
        "t.pq",
        "t.jsonl",
        "t.ndjson",
        "t.json",
        "t.csv.gz",
        "t.csv.bz2",
        "t.csv.xz",
        "t.tsv.gz",
        "t.jsonl.gz",
        "T.CSV",
    ],
)
def test_round_trip(tmp_path: Path, frame: pd.DataFrame, name: str) -> None:
    path = tmp_path / name
    if name == "T.CSV":
        frame.to_csv(path, index=False)
    else:
        _write(frame, path)
    got = read_table(str(path))
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    assert list(got.columns) == list(frame.columns)


def test_round_trip_zstd(tmp_path: Path, frame: pd.DataFrame) -> None:
    pytest.importorskip("zstandard")
    path = tmp_path / "t.csv.zst"
    _write(frame, path)
    pd.testing.assert_frame_equal(read_table(str(path)), frame)


def test_gzip_csv_is_really_compressed(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as f:
        frame.to_csv(f, index=False)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(read_table(str(path)), frame)


def test_other_codecs_by_hand(tmp_path: Path, frame: pd.DataFrame) -> None:
    text = frame.to_csv(index=False).encode()
    (tmp_path / "a.csv.bz2").write_bytes(bz2.compress(text))
    (tmp_path / "a.csv.xz").write_bytes(lzma.compress(text))
    for name in ("a.csv.bz2", "a.csv.xz"):
        pd.testing.assert_frame_equal(read_table(str(tmp_path / name)), frame)


def test_json_array_of_records(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.json"
    path.write_text(frame.to_json(orient="records"))
    assert path.read_text().startswith("[")
    pd.testing.assert_frame_equal(read_table(str(path)), frame, check_dtype=False)


def test_json_keeps_types(tmp_path: Path) -> None:
    """Whole-number floats stay floats and date-like names stay strings."""
    df = pd.DataFrame({"created_at": ["2020-01-01", "x"], "v": [1.0, 2.0], "n": [1, 2]})
    path = tmp_path / "t.jsonl"
    _write(df, path)
    got = read_table(str(path))
    pd.testing.assert_frame_equal(got, df)


def test_parquet_directory(tmp_path: Path, frame: pd.DataFrame) -> None:
    d = tmp_path / "parts"
    d.mkdir()
    frame.iloc[:3].to_parquet(d / "part-0.parquet", index=False)
    frame.iloc[3:].to_parquet(d / "part-1.parquet", index=False)
    (d / "_SUCCESS").write_text("")
    got = read_table(str(d)).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, frame)


def test_file_uri_and_columns(tmp_path: Path, frame: pd.DataFrame) -> None:
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        path = tmp_path / name
        _write(frame, path)
        got = read_table(path.as_uri(), columns=["cat", "id"])
        assert list(got.columns) == ["cat", "id"]
        pd.testing.assert_frame_equal(got, frame[["cat", "id"]], check_dtype=False)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.jsonl"])
def test_missing_column_is_schema_error(tmp_path: Path, frame: pd.DataFrame, name: str) -> None:
    path = tmp_path / name
    _write(frame, path)
    with pytest.raises(SchemaError, match="nope") as info:
        read_table(str(path), columns=["id", "nope"])
    assert name in str(info.value)


def test_memory_filesystem(frame: pd.DataFrame) -> None:
    root = f"memory://kfgpu-test-{uuid.uuid4().hex}"
    try:
        with fsspec.open(f"{root}/t.csv", "w") as f:
            frame.to_csv(f, index=False)
        with fsspec.open(f"{root}/t.parquet", "wb") as f:
            frame.to_parquet(f, index=False)
        with fsspec.open(f"{root}/t.jsonl.gz", "wt", compression="gzip") as f:
            frame.to_json(f, orient="records", lines=True)
        pd.testing.assert_frame_equal(read_table(f"{root}/t.csv"), frame)
        pd.testing.assert_frame_equal(read_table(f"{root}/t.parquet"), frame)
        pd.testing.assert_frame_equal(read_table(f"{root}/t.jsonl.gz"), frame)
        with pytest.raises(DataNotFoundError, match=re.escape("gone.csv")) as info:
            read_table(f"{root}/gone.csv")
        assert info.value.check == "not_found"
    finally:
        fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_single_column_csv_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("value\n1\n2\n3\n")
    got = read_table(str(path))
    assert got.shape == (3, 1)
    assert got["value"].tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DataNotFoundError, match=re.escape("absent.csv")) as info:
        read_table(str(path))
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DataError)
    assert info.value.check == "not_found"


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataFormatError, match=re.escape("table.xlsx")) as info:
        read_table(str(path))
    msg = str(info.value)
    for fmt in (".csv", ".parquet", ".jsonl"):
        assert fmt in msg
    assert info.value.check == "unsupported_format"


def test_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n1,\x002\n")
    with pytest.raises(DataFormatError, match=re.escape("binary.csv")) as info:
        read_table(str(path))
    assert info.value.check == "binary_content"


def test_png_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DataFormatError, match=r"image\.csv.*\.parquet") as info:
        read_table(str(path))
    assert info.value.check == "binary_content"


def test_non_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"a": "\xff\xfe caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=re.escape("latin.jsonl")) as info:
        read_table(str(path))
    assert info.value.check == "encoding"
    assert "iconv -f latin1 -t utf-8" in str(info.value)


def test_non_utf8_after_the_sniffed_head(tmp_path: Path) -> None:
    """A latin-1 byte past the first 8 KiB is still an encoding error, not a parse error."""
    path = tmp_path / "late.csv"
    path.write_bytes(b"a,b\n" + b"1,x\n" * 5000 + "2,Z\u00fcrich\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="UTF-8") as info:
        read_table(str(path))
    assert info.value.check == "encoding"


def test_utf16_text_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16"))
    with pytest.raises(DataFormatError, match="iconv -f utf-16") as info:
        read_table(str(path))
    assert info.value.check == "encoding"


def test_text_named_parquet(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=re.escape("fake.parquet")) as info:
        read_table(str(path))
    assert info.value.check == "parquet"


def test_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=re.escape("bad.csv.gz")) as info:
        read_table(str(path))
    assert info.value.check == "decompress"


def test_truncated_gzip_past_the_head(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    data = gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(20000)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=re.escape("cut.csv.gz")) as info:
        read_table(str(path))
    assert info.value.check == "decompress"


def test_malformed_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataFormatError, match=re.escape("ragged.csv")) as info:
        read_table(str(path))
    assert info.value.check == "parse"
    assert "at line 3" in str(info.value)


def test_unterminated_quote_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('a,b\n1,2\n3,"open\n4,5\n')
    with pytest.raises(DataFormatError, match="at line 3") as info:
        read_table(str(path))
    assert info.value.check == "parse"


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataFormatError, match=re.escape("broken.jsonl")) as info:
        read_table(str(path))
    assert info.value.check == "parse"


def test_malformed_json_array_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"a": 1},\n{"a": }]\n')
    with pytest.raises(DataFormatError, match="at line 2") as info:
        read_table(str(path))
    assert info.value.check == "parse"


def test_json_array_of_scalars(tmp_path: Path) -> None:
    path = tmp_path / "scalars.json"
    path.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match=re.escape("scalars.json")) as info:
        read_table(str(path))
    assert info.value.check == "parse"


def test_directory_without_parquet(tmp_path: Path) -> None:
    d = tmp_path / "csvs"
    d.mkdir()
    (d / "a.csv").write_text("a\n1\n")
    with pytest.raises(DataFormatError, match="csvs") as info:
        read_table(str(d))
    assert info.value.check == "unsupported_format"


@pytest.mark.parametrize("content", ["", "a,b,c\n", "\n\n"])
def test_empty_csv(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(EmptyDataError, match=re.escape("empty.csv")) as info:
        read_table(str(path))
    assert info.value.check == "empty"


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json"])
def test_empty_json(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("[]" if name.endswith(".json") else "")
    with pytest.raises(EmptyDataError, match=re.escape(name)) as info:
        read_table(str(path))
    assert info.value.check == "empty"


def test_empty_parquet(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "empty.parquet"
    frame.iloc[:0].to_parquet(path, index=False)
    with pytest.raises(EmptyDataError, match=re.escape("empty.parquet")) as info:
        read_table(str(path))
    assert info.value.check == "empty"


def test_unknown_scheme_is_config_error() -> None:
    with pytest.raises(ConfigError, match="nosuchscheme"):
        read_table("nosuchscheme://bucket/t.csv")


# --------------------------------------------------------------------------- built-ins


def test_breast_cancer() -> None:
    df = read_table("kfgpu://breast_cancer")
    assert df.shape[0] == 569
    assert "label" in df.columns
    assert set(df["label"].unique()) == {0, 1}
    assert pd.api.types.is_integer_dtype(df["label"])
    assert all(c == c.lower() and " " not in c for c in df.columns)
    assert df.drop(columns="label").dtypes.map(pd.api.types.is_float_dtype).all()


def test_fraud_builtin_matches_generator() -> None:
    from kfgpu.data.synthetic import fraud

    df = read_table("kfgpu://fraud?rows=1500&seed=3&drift=0.25")
    pd.testing.assert_frame_equal(df, fraud(1500, seed=3, drift=0.25))
    sub = read_table("kfgpu://fraud?rows=100", columns=["amount", "is_fraud"])
    assert list(sub.columns) == ["amount", "is_fraud"]
    assert len(sub) == 100


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("kfgpu://iris", "breast_cancer"),
        ("kfgpu://fraud?rowz=10", "rows"),
        ("kfgpu://breast_cancer?rows=10", "rows"),
        ("kfgpu://fraud?rows=many", "rows"),
        ("kfgpu://fraud?rows=10&drift=2", "drift"),
        ("kfgpu://fraud?rows=0", "rows"),
    ],
)
def test_builtin_errors(uri: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        read_table(uri)


# --------------------------------------------------------------------------- write_parquet


def test_write_parquet_atomic_and_round_trips(tmp_path: Path, frame: pd.DataFrame) -> None:
    shuffled = frame.set_index(pd.Index([10, 11, 12, 13, 14, 15], name="idx"))
    dest = tmp_path / "deep" / "er" / "out.parquet"
    write_parquet(shuffled, str(dest))
    assert dest.exists()
    assert sorted(os.listdir(dest.parent)) == ["out.parquet"]
    got = pd.read_parquet(dest)
    assert list(got.columns) == list(frame.columns)  # index not stored
    pd.testing.assert_frame_equal(got, frame)
    # Overwrite in place.
    write_parquet(frame.iloc[:2], str(dest))
    assert len(read_table(str(dest))) == 2
    assert sorted(os.listdir(dest.parent)) == ["out.parquet"]


def test_write_parquet_failure_leaves_nothing(tmp_path: Path) -> None:
    bad = pd.DataFrame({"mixed": [1, "a", 2.5]})
    dest = tmp_path / "bad.parquet"
    with pytest.raises(SchemaError, match=re.escape("bad.parquet")):
        write_parquet(bad, str(dest))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_shape_and_schema(frame: pd.DataFrame) -> None:
    fp = fingerprint(frame)
    assert fp["rows"] == len(frame)
    assert fp["columns"] == frame.shape[1]
    assert fp["schema"] == {c: str(t) for c, t in frame.dtypes.items()}
    assert len(fp["sha256"]) == 64
    int(fp["sha256"], 16)


def test_fingerprint_stable(frame: pd.DataFrame) -> None:
    assert fingerprint(frame) == fingerprint(frame.copy())
    # Index is ignored.
    assert fingerprint(frame)["sha256"] == fingerprint(frame.set_axis(range(6, 12)))["sha256"]


def test_fingerprint_stable_across_processes(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False)
    code = (
        "import sys, pandas as pd; from kfgpu.data import fingerprint; "
        f"print(fingerprint(pd.read_parquet({str(path)!r}))['sha256'])"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[3] / "src"), *sys.path])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == fingerprint(pd.read_parquet(path))["sha256"]


def test_fingerprint_sensitive(frame: pd.DataFrame) -> None:
    base = fingerprint(frame)["sha256"]
    changed = frame.copy()
    changed.loc[2, "cat"] = "z"
    renamed = frame.rename(columns={"x": "y"})
    retyped = frame.astype({"id": "int32"})
    reordered_rows = frame.iloc[::-1].reset_index(drop=True)
    reordered_cols = frame[["x", "id", "cat", "flag"]]
    variants = [changed, renamed, retyped, reordered_rows, reordered_cols]
    digests = [fingerprint(v)["sha256"] for v in variants]
    assert base not in digests
    assert len(set(digests)) == len(digests)


def test_fingerprint_unhashable_values() -> None:
    df = pd.DataFrame({"nested": [[1, 2], {"a": 1}, None]})
    other = pd.DataFrame({"nested": [[1, 3], {"a": 1}, None]})
    assert fingerprint(df)["sha256"] == fingerprint(df.copy())["sha256"]
    assert fingerprint(df)["sha256"] != fingerprint(other)["sha256"]


def test_import_is_cheap() -> None:
    code = "import sys, kfgpu, kfgpu.data; assert 'pandas' not in sys.modules, 'pandas imported'"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[3] / "src"), *sys.path])
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_zstd_without_codec_is_not_read_raw(tmp_path: Path) -> None:
    """A .zst file is decompressed or refused, never parsed as plain text."""
    path = tmp_path / "plain.csv.zst"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=re.escape("plain.csv.zst")) as info:
        read_table(str(path))
    assert info.value.check == "decompress"
