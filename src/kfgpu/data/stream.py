"""Stream any table ``kfgpu run --data`` reads, chunk by chunk.

Parquet files and folders (local or fsspec), CSV/TSV and JSON lines (``.jsonl``,
``.ndjson``, or ``.json`` holding one object a line; optionally compressed) stream in
bounded chunks; a JSON array, a compressed Parquet file and ``kfgpu://`` data sets are
read whole first, then chunked. :func:`stream_to_shards` copies any of them into Parquet
shards chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, DataFormatError, EmptyDataError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.data.shards import Manifest

__all__ = ["MixedTypesError", "RowSample", "open_table_stream", "stream_to_shards"]


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
    """``frames``, with a parser failure mid-way named as :func:`kfgpu.data.read_table`
    names it (check ``parse`` with the line when known, or ``encoding``)."""
    import re

    import pandas as pd

    from kfgpu.errors import DataError

    try:
        yield from frames
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"data file {uri!r} is not a table kfgpu can read (it is not UTF-8 text: {e}); "
            "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT (use the encoding "
            "it was written in)",
            check="encoding",
        ) from e
    except (pd.errors.ParserError, EOFError, ValueError) as e:
        text = " ".join(str(e).split())
        where = ""
        if m := re.search(r"\b(line|row) (\d+)", text):
            where = f" at line {int(m.group(2)) + (1 if m.group(1) == 'row' else 0)}"
        fix = (
            f"fix the file{where}: every row needs the header's number of fields and every "
            "opening quote a closing one"
            if kind == "CSV"
            else f"fix the file{where} so each line is valid JSON"
        )
        raise DataFormatError(
            f"data file {uri!r} cannot be parsed as {kind} (the parser failed{where}: "
            f"{text}); {fix}",
            check="parse",
        ) from e


def _starts_with_object(uri: str, compression: str | None) -> bool:
    """Whether a ``.json`` file holds JSON lines (its first non-blank character is ``{``)."""
    import fsspec

    try:
        with fsspec.open(uri, "rb", compression=compression) as f:
            head = f.read(4096)
    except (OSError, EOFError, ValueError):
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


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
                pd.read_csv(
                    f,
                    sep=sep,
                    # usecols would let a row with extra fields through: only when needed.
                    usecols=None if cols == names else cols,
                    chunksize=chunk_rows,
                    low_memory=False,
                ) as r,
            ):
                for chunk in r:
                    yield chunk[cols].reset_index(drop=True)

        return names, lambda cols: _parsed(csv_chunks(cols), uri, "CSV")
    if suffix in _JSON_LINES or (suffix == ".json" and _starts_with_object(uri, compression)):

        def jsonl_chunks(cols: list[str]) -> Iterator[pd.DataFrame]:
            with (
                fsspec.open(uri, "rt", compression=compression, encoding="utf-8") as f,
                pd.read_json(
                    f, lines=True, chunksize=chunk_rows, dtype=False, convert_dates=False
                ) as r,
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
                first = pd.read_json(f, lines=True, nrows=1, dtype=False, convert_dates=False)
                names = [str(c) for c in first.columns]
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


class RowSample:
    """A seeded uniform sample of at most ``size`` rows of a streamed table, in row order.

    Bottom-k of a random key per row: every row is equally likely to be kept, whatever
    the chunk sizes; while no more than ``size`` rows arrived it holds every row. Memory
    stays under about ``2 * size`` rows.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        import numpy as np

        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"sample size={size!r} is invalid; use an integer >= 1")
        self.size = size
        self.rows = 0
        self._rng = np.random.default_rng([seed, 0x5A3F])
        self._limit = 1.0  # keys >= this cannot enter: `size` smaller keys are held
        self._frames: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []
        self._held = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Offer the next chunk's rows."""
        import numpy as np

        keys = self._rng.random(len(frame))
        self.rows += len(frame)
        take = np.flatnonzero(keys < self._limit)
        if len(take):
            self._frames.append(frame.iloc[take].reset_index(drop=True))
            self._keys.append(keys[take])
            self._held += len(take)
        if self._held > 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        import numpy as np
        import pandas as pd

        frame = pd.concat(self._frames, ignore_index=True)
        keys = np.concatenate(self._keys)
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            self._limit = float(keys[keep].max())
            keep.sort()  # row order: the frames were concatenated in row order
            frame, keys = frame.iloc[keep].reset_index(drop=True), keys[keep]
        self._frames, self._keys, self._held = [frame], [keys], len(keys)

    def frame(self) -> pd.DataFrame:
        """The sampled rows, in the order they arrived."""
        if not self._frames:
            raise ValueError("no rows were offered to the sample")
        self._compact()
        return self._frames[0]


class MixedTypesError(SchemaError):
    """A column holds numbers in some chunks and text (or mixed values) in others, which
    one Parquet column cannot hold; read the table whole instead."""


def stream_to_shards(
    uri: str,
    dest: str,
    *,
    chunk_rows: int = 65_536,
    metadata: dict[str, Any] | None = None,
    on_frame: Callable[[pd.DataFrame], None] | None = None,
) -> Manifest:
    """Copy any table :func:`open_table_stream` reads into Parquet shards, chunk by chunk.

    Memory stays at a few chunks whatever the table's size. Each column gets the type that
    reading the whole file would give it: a column parsed as integers in some chunks and
    as floats (or with missing values) in others is written as float64, and a chunk where
    a column is all missing takes the other chunks' type. The chunks go to a staging
    folder beside ``dest`` first; ``dest`` is written (atomically, with a manifest) only
    once the whole table was parsed, so a file that fails mid-way leaves nothing there.

    Args:
        uri: the table.
        dest: the output folder (see :class:`kfgpu.data.shards.ShardWriter`).
        chunk_rows: rows parsed at a time.
        metadata: recorded in the manifest.
        on_frame: called with each parsed chunk, in row order.

    Raises:
        DataError: the table cannot be read or parsed (nothing is written).
        EmptyDataError: the table has no rows.
        MixedTypesError: a column mixes numbers and text across the file.
    """
    import os
    import shutil
    import tempfile
    import uuid

    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kfgpu.data.io import open_filesystem
    from kfgpu.data.shards import ShardWriter, prefetched

    columns, frames = open_table_stream(uri, chunk_rows=chunk_rows)
    fs, dest_path = open_filesystem(dest)
    local = "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol))
    parent = os.path.dirname(os.path.abspath(dest_path)) if local else None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".kfgpu-chunks-{uuid.uuid4().hex[:8]}-", dir=parent)
    try:
        paths: list[tuple[str, int]] = []
        unified: pa.Schema | None = None
        rows = 0
        # Parsing (pandas' tokenizer releases the GIL) runs a chunk or two ahead.
        for df in prefetched(frames(columns)):
            if not len(df):
                continue
            if on_frame is not None:
                on_frame(df)
            try:
                table = pa.Table.from_pandas(df, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise MixedTypesError(
                    f"{uri!r}: rows {rows}.. hold a column of mixed values ({e}); read the "
                    "table whole"
                ) from e
            table = table.replace_schema_metadata(None)
            try:
                unified = (
                    table.schema
                    if unified is None
                    else pa.unify_schemas([unified, table.schema], promote_options="permissive")
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise MixedTypesError(
                    f"{uri!r}: a column changes type mid-file ({e}); read the table whole"
                ) from e
            path = os.path.join(staging, f"chunk-{len(paths):06d}.parquet")
            # Dictionaries for text and booleans only (as ShardWriter): far faster on floats.
            text = [
                f.name
                for f in table.schema
                if pa.types.is_string(f.type)
                or pa.types.is_large_string(f.type)
                or pa.types.is_boolean(f.type)
            ]
            pq.write_table(table, path, row_group_size=max(table.num_rows, 1), use_dictionary=text)
            paths.append((path, table.num_rows))
            rows += table.num_rows
        if unified is None:
            raise EmptyDataError(f"the table {uri!r} has no rows; pass a table with data")
        local_fs = fsspec.filesystem("file")
        with ShardWriter(dest, schema=unified, metadata=metadata) as writer:
            for path, n in paths:
                if pq.read_schema(path).remove_metadata() == unified:
                    writer.add_file(local_fs, path, n, [n])  # byte copy
                else:  # a column's type was widened by a later chunk
                    table = pq.read_table(path).select(unified.names).cast(unified)
                    writer.write(table)
                os.remove(path)  # the disk holds one copy and a chunk
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    assert writer.manifest is not None
    return writer.manifest
