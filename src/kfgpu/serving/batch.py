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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kfgpu._step import StepResult, step
from kfgpu.data.stream import open_table_stream
from kfgpu.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["batch_predict_step", "open_table_stream"]


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
