"""Data access for kfgpu: reading tables, writing Parquet, fingerprints, synthetic data.

Importing this package is cheap: pandas, pyarrow and numpy are imported only when one of
the functions below is first used.

* :func:`read_table` reads CSV, TSV, Parquet or JSON lines from a path or fsspec URI, or a
  built-in data set (``kfgpu://breast_cancer``, ``kfgpu://fraud?rows=N&seed=S&drift=D``).
* :func:`write_parquet` writes a frame atomically; :func:`fingerprint` hashes its content.
* :func:`open_shards` lists a Parquet file or directory (local or fsspec URI) with row counts
  per row group and streams it in record batches; :class:`ShardWriter` and
  :func:`write_shards` write many bounded files atomically with a manifest.
* :func:`iter_fraud`, :func:`fraud` and :func:`write_fraud_parquet` generate a seeded
  synthetic card-fraud table, streaming when it is large.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfgpu.data.io import (
        artifact_metadata,
        fingerprint,
        read_parquet,
        read_table,
        write_parquet,
    )
    from kfgpu.data.shards import ShardSet, ShardWriter, open_shards, write_shards
    from kfgpu.data.synthetic import fraud, iter_fraud, write_fraud_parquet

__all__ = [
    "ShardSet",
    "ShardWriter",
    "artifact_metadata",
    "fingerprint",
    "fraud",
    "iter_fraud",
    "open_shards",
    "read_parquet",
    "read_table",
    "write_fraud_parquet",
    "write_parquet",
    "write_shards",
]

_LAZY = {
    "ShardSet": "kfgpu.data.shards",
    "ShardWriter": "kfgpu.data.shards",
    "open_shards": "kfgpu.data.shards",
    "write_shards": "kfgpu.data.shards",
    "artifact_metadata": "kfgpu.data.io",
    "fingerprint": "kfgpu.data.io",
    "fraud": "kfgpu.data.synthetic",
    "iter_fraud": "kfgpu.data.synthetic",
    "read_parquet": "kfgpu.data.io",
    "read_table": "kfgpu.data.io",
    "write_fraud_parquet": "kfgpu.data.synthetic",
    "write_parquet": "kfgpu.data.io",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kfgpu.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
