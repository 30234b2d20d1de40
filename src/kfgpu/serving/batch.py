"""Batch prediction: a bundle and a Parquet file in, a Parquet file of predictions out.

The input is read in chunks of ``chunk_rows`` (pyarrow record batches, so a file far
larger than memory streams through); each chunk is predicted with the bundle's served
module and appended to a Parquet writer on a temporary sibling file, which replaces the
output only when every chunk succeeded. A failure leaves no partial output.

Output columns: the ``keep_columns`` copied from the input (ids, keys), then
``prediction`` and, for classification, ``proba_<class>`` per class (the same frame
:meth:`kfgpu.bundle.Bundle.predict` returns).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError, DataFormatError, SchemaError

__all__ = ["batch_predict_step"]


@step("batch_predict")
def batch_predict_step(
    *,
    bundle_path: str,
    data_uri: str,
    output_path: str,
    chunk_rows: int = 65_536,
    keep_columns: Sequence[str] = (),
    device: str = "cpu",
) -> StepResult:
    """Predict every row of a Parquet file; write predictions as Parquet, atomically.

    Args:
        bundle_path: the model bundle (checksums verified).
        data_uri: a Parquet file (local or any fsspec URI) with the raw input columns.
        output_path: where the predictions Parquet goes (local).
        chunk_rows: rows per chunk.
        keep_columns: input columns copied to the output beside the predictions.
        device: ``cpu`` or ``cuda``.

    Raises:
        SchemaError: a kept column or an input column is missing.
    """
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kfgpu.bundle import load_bundle
    from kfgpu.data._atomic import atomic_local_file

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is invalid; use an integer >= 1")
    bundle = load_bundle(bundle_path, device=device)
    keep = list(keep_columns)
    t0 = time.perf_counter()
    rows = 0
    chunks = 0
    with fsspec.open(data_uri, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as e:
            raise DataFormatError(f"{data_uri!r} is not a Parquet file: {e}") from e
        names = set(pf.schema_arrow.names)
        missing_keep = [c for c in keep if c not in names]
        if missing_keep:
            raise SchemaError(
                f"keep_columns {missing_keep} are not in {data_uri!r}; it has {sorted(names)}"
            )
        needed = [c for c in bundle.transform.input_columns if c in names]
        missing = [c for c in bundle.transform.input_columns if c not in names]
        if missing:
            raise SchemaError(
                f"{data_uri!r} lacks column(s) {missing} that the model reads; send all of "
                f"{list(bundle.transform.input_columns)}"
            )
        read = list(dict.fromkeys([*needed, *keep]))
        with atomic_local_file(output_path) as (tmp, _dest):
            writer: pq.ParquetWriter | None = None
            try:
                for batch in pf.iter_batches(batch_size=chunk_rows, columns=read):
                    df = batch.to_pandas()
                    pred = bundle.predict(df)
                    for i, c in enumerate(keep):
                        pred.insert(i, c, df[c].to_numpy())
                    table = pa.Table.from_pandas(pred, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    rows += len(df)
                    chunks += 1
                if writer is None:  # an empty input still gets a (typed, empty) output
                    import pandas as pd

                    empty = bundle.predict(pd.DataFrame({c: [] for c in read}))
                    for i, c in enumerate(keep):
                        empty.insert(i, c, [])
                    pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), tmp)
            finally:
                if writer is not None:
                    writer.close()
    seconds = time.perf_counter() - t0
    return StepResult(
        metrics={"rows": float(rows), "chunks": float(chunks), "seconds": seconds},
        metadata={"predictions": {"rows": rows, "chunks": chunks}},
        summary=f"batch_predict: {rows} rows in {chunks} chunk(s), {seconds:.1f}s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s)",
    )
