"""Batch prediction: a bundle and a table in, a directory of Parquet prediction shards out.

The input is any table ``kfgpu run --data`` reads (:func:`kfgpu.data.read_table`): a
Parquet file or directory of them, CSV/TSV, JSON lines, each on a local path or any fsspec
URI, or a built-in ``kfgpu://`` data set. It is streamed in chunks of ``chunk_rows``:
Parquet one row group at a time (:func:`kfgpu.data.shards.open_shards`), CSV/TSV and JSON
lines with pandas' chunked readers (compressed files too); a JSON array, a compressed
Parquet file and a ``kfgpu://`` data set are read whole, then cut into chunks.

Each chunk is predicted with the bundle's served module and written through a
:class:`kfgpu.data.shards.ShardWriter`: Parquet files of bounded row groups beside a
``_manifest.json`` (rows and SHA-256 per file). The output is atomic: the shards are
written to a hidden temporary directory that replaces the output only when every chunk
succeeded (on an object store the manifest is written last, and a directory without it
is refused by readers). A failure mid-way leaves no output that looks complete.

Output columns: the ``keep_columns`` copied from the input (ids, keys), then
``prediction`` and, for classification, ``proba_<class>`` per class (the same frame
:meth:`kfgpu.bundle.Bundle.predict` returns), rows in input order.
``pandas.read_parquet(output)`` reads the whole directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError, DataFormatError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["batch_predict_step", "open_table_stream"]

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".xz": "xz"}
_CSV = {".csv": ",", ".tsv": "\t"}
_JSON_LINES = (".jsonl", ".ndjson")


def _suffixes(uri: str) -> tuple[str, str | None]:
    """``(format suffix, compression or None)`` of a URI, lower-cased."""
    import posixpath

    name = posixpath.basename(uri.split("?", 1)[0].rstrip("/")).lower()
    compression = None
    for suffix, codec in _COMPRESSION.items():
        if name.endswith(suffix):
            compression, name = codec, name[: -len(suffix)]
            break
    return posixpath.splitext(name)[1], compression


def _parsed(frames: Iterator[pd.DataFrame], uri: str, kind: str) -> Iterator[pd.DataFrame]:
    """``frames``, with a parser failure mid-way named as the file's format error."""
    import pandas as pd

    from kfgpu.errors import DataError

    try:
        yield from frames
    except DataError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, ValueError) as e:
        raise DataFormatError(
            f"data file {uri!r} cannot be parsed as {kind} ({e}); fix the file, or pass it "
            "as Parquet",
            check="parse",
        ) from e


def open_table_stream(
    uri: str, *, chunk_rows: int = 65_536
) -> tuple[list[str], Callable[[list[str]], Iterator[pd.DataFrame]]]:
    """The columns of a table and a function that streams chosen columns in chunks.

    Reads every source :func:`kfgpu.data.read_table` reads; Parquet, CSV/TSV and JSON
    lines stream in chunks of ``chunk_rows`` rows, anything else is read whole first.

    Returns:
        ``(columns, frames)``: ``frames(columns)`` yields DataFrames of those columns,
        in row order, each of at most ``chunk_rows`` rows.

    Raises:
        DataNotFoundError: nothing exists at ``uri``.
        DataFormatError: the source is not a table kfgpu reads.
    """
    import fsspec
    import pandas as pd

    from kfgpu.data import read_table
    from kfgpu.data.io import open_filesystem
    from kfgpu.data.shards import open_shards

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is invalid; use an integer >= 1")

    def whole() -> tuple[list[str], Callable[[list[str]], Iterator[pd.DataFrame]]]:
        df = read_table(uri)

        def frames(cols: list[str]) -> Iterator[pd.DataFrame]:
            for start in range(0, len(df), chunk_rows):
                yield df.iloc[start : start + chunk_rows][cols].reset_index(drop=True)

        return [str(c) for c in df.columns], frames

    if uri.startswith("kfgpu://"):
        return whole()
    suffix, compression = _suffixes(uri)
    fs, path = open_filesystem(uri)
    if not fs.exists(path):
        return whole()  # read_table's DataNotFoundError names it
    is_dir = fs.isdir(path)
    if is_dir or (suffix in (".parquet", ".pq") and compression is None):
        shards = open_shards(uri)

        def parquet(cols: list[str]) -> Iterator[pd.DataFrame]:
            yield from shards.iter_frames(cols, batch_rows=chunk_rows)

        return shards.columns, parquet
    if suffix in _CSV:
        sep = _CSV[suffix]
        try:
            with fsspec.open(uri, "rt", compression=compression, encoding="utf-8") as f:
                names = [str(c) for c in pd.read_csv(f, sep=sep, nrows=0).columns]
        except (ValueError, UnicodeDecodeError, OSError, EOFError):
            return whole()  # read_table names what is wrong with the file

        def csv_chunks(cols: list[str]) -> Iterator[pd.DataFrame]:
            with (
                fsspec.open(uri, "rt", compression=compression, encoding="utf-8") as f,
                pd.read_csv(f, sep=sep, usecols=cols, chunksize=chunk_rows, low_memory=False) as r,
            ):
                for chunk in r:
                    yield chunk[cols].reset_index(drop=True)

        return names, lambda cols: _parsed(csv_chunks(cols), uri, "CSV")
    if suffix in _JSON_LINES:

        def jsonl_chunks(cols: list[str]) -> Iterator[pd.DataFrame]:
            with (
                fsspec.open(uri, "rt", compression=compression, encoding="utf-8") as f,
                pd.read_json(f, lines=True, chunksize=chunk_rows) as r,
            ):
                for chunk in r:
                    missing = [c for c in cols if c not in chunk.columns]
                    if missing:
                        raise SchemaError(
                            f"{uri!r}: rows {chunk.index[0]}.. lack column(s) {missing}; every "
                            "JSON line needs every input column"
                        )
                    yield chunk[cols].reset_index(drop=True)

        try:
            with fsspec.open(uri, "rt", compression=compression, encoding="utf-8") as f:
                names = [str(c) for c in pd.read_json(f, lines=True, nrows=1).columns]
        except (ValueError, UnicodeDecodeError, OSError, EOFError):
            return whole()  # read_table names what is wrong with the file
        return names, lambda cols: _parsed(jsonl_chunks(cols), uri, "JSON lines")
    if suffix in (".json", ".parquet", ".pq"):
        return whole()
    # No suffix kfgpu knows (a KFP artifact path): Parquet, or a clear error.
    try:
        shards = open_shards(uri)
    except DataFormatError as e:
        raise DataFormatError(
            f"data {uri!r} has no known suffix and is not Parquet ({e}); name it .csv, .tsv, "
            ".parquet, .jsonl or .json (optionally compressed), or pass a Parquet directory",
            check="unsupported_format",
        ) from e

    def artifact(cols: list[str]) -> Iterator[pd.DataFrame]:
        yield from shards.iter_frames(cols, batch_rows=chunk_rows)

    return shards.columns, artifact


@step("batch_predict")
def batch_predict_step(
    *,
    bundle_path: str,
    data_uri: str,
    output_path: str,
    chunk_rows: int = 65_536,
    keep_columns: Sequence[str] = (),
    device: str = "cpu",
    file_rows: int = 1_048_576,
) -> StepResult:
    """Predict every row of a table; write predictions as Parquet shards, atomically.

    Args:
        bundle_path: the model bundle (checksums verified).
        data_uri: any table ``kfgpu run --data`` reads (see :func:`open_table_stream`).
        output_path: the directory (local or fsspec URI) the prediction shards go to.
        chunk_rows: rows read and predicted at a time.
        keep_columns: input columns copied to the output beside the predictions.
        device: ``cpu`` or ``cuda``.
        file_rows: the most rows per output shard.

    Raises:
        SchemaError: a kept column or an input column is missing.
    """
    import pandas as pd
    import pyarrow as pa

    from kfgpu.bundle import load_bundle
    from kfgpu.data.shards import ShardWriter

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is invalid; use an integer >= 1")
    bundle = load_bundle(bundle_path, device=device)
    keep = list(keep_columns)
    t0 = time.perf_counter()
    names, frames = open_table_stream(data_uri, chunk_rows=chunk_rows)
    missing_keep = [c for c in keep if c not in names]
    if missing_keep:
        raise SchemaError(
            f"keep_columns {missing_keep} are not in {data_uri!r}; it has {sorted(names)}"
        )
    needed = list(bundle.transform.input_columns)
    missing = [c for c in needed if c not in names]
    if missing:
        raise SchemaError(
            f"{data_uri!r} lacks column(s) {missing} that the model reads; send all of {needed}"
        )
    read = list(dict.fromkeys([*needed, *keep]))
    rows = chunks = 0

    def predictions(df: pd.DataFrame) -> pd.DataFrame:
        pred = bundle.predict(df)
        for i, c in enumerate(keep):
            pred.insert(i, c, df[c].to_numpy())
        return pred

    with ShardWriter(
        output_path,
        file_rows=file_rows,
        row_group_rows=min(file_rows, max(chunk_rows, 1024)),
        metadata={"bundle": str(bundle_path), "data_uri": data_uri},
    ) as writer:
        for df in frames(read):
            # Later chunks are cast to the first one's types (a CSV chunk may infer others).
            writer.write(pa.Table.from_pandas(predictions(df), preserve_index=False))
            rows += len(df)
            chunks += 1
        if rows == 0:  # an empty input still gets a typed, empty output
            empty = predictions(pd.DataFrame({c: [] for c in read}))
            writer.write(pa.Table.from_pandas(empty, preserve_index=False))
    files = len(writer.manifest.files) if writer.manifest is not None else 0
    seconds = time.perf_counter() - t0
    return StepResult(
        metrics={"rows": float(rows), "chunks": float(chunks), "seconds": seconds},
        metadata={"predictions": {"rows": rows, "chunks": chunks, "files": files}},
        summary=f"batch_predict: {rows} rows in {chunks} chunk(s), {files} shard(s), "
        f"{seconds:.1f}s ({rows / max(seconds, 1e-9):,.0f} rows/s)",
    )
