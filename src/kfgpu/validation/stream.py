"""Validate a Parquet data set of any size in one streamed pass, in bounded memory.

:func:`validate_source` reads the data set one record batch at a time and keeps, per
column, a few exact counters and two small sketches, plus a uniform row sample:

* exact over every row: row count, null counts, ``+inf``/``-inf`` counts, min, max, mean
  and standard deviation of the finite values, the target's class counts, and each text
  column's value counts up to :data:`MAX_EXACT_VALUES` distinct values;
* distinct counts: exact up to :data:`KMV_SIZE` distinct values, then a k-minimum-values
  estimate (relative error about ``1/sqrt(KMV_SIZE)``, 1.6%);
* duplicate rows: exact while the table has at most :data:`MAX_ROW_HASHES` rows, then
  estimated from the rows whose 64-bit row hash falls in a fraction of the hash space
  (every copy of a row has the same hash, so duplicates inside it are counted exactly
  and scaled up);
* the quantiles ``p01``/``p50``/``p99``, the leakage check and the mixed-type check use a
  uniform sample of about ``sample_rows`` rows (chosen by a seeded hash of the row's
  position, so the same table gives the same sample).

A table of at most ``sample_rows`` rows is read whole and validated by
:func:`kfgpu.validation.checks.validate`, so small tables get exactly what they always got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from kfgpu.data.shards import ShardSet
    from kfgpu.validation.checks import ValidationResult
    from kfgpu.validation.schema import Schema

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "KMV_SIZE",
    "MAX_EXACT_VALUES",
    "MAX_ROW_HASHES",
    "SourceValidation",
    "StreamStatistics",
    "stream_statistics",
    "validate_source",
]

DEFAULT_SAMPLE_ROWS = 262_144
"""Rows of the uniform sample (and the size up to which a table is validated in memory)."""
KMV_SIZE = 4096
"""Hashes a distinct-count sketch keeps: counts are exact up to this many distinct values."""
MAX_EXACT_VALUES = 10_000
"""Distinct values of a text column counted exactly; beyond, the domain is of those seen."""
MAX_ROW_HASHES = 4_000_000
"""Row hashes kept for the duplicate count (32 MB); beyond, a fraction of the hash space."""

_U64 = 1 << 64
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: np.ndarray) -> np.ndarray:
    import numpy as np

    z = x * np.uint64(_GOLDEN)
    z ^= z >> np.uint64(29)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(32)
    return z


class _Kmv:
    """The ``k`` smallest distinct hashes seen: exact below ``k`` distinct values."""

    def __init__(self, k: int = KMV_SIZE) -> None:
        import numpy as np

        self.k = k
        self.hashes = np.zeros(0, dtype=np.uint64)

    def add(self, h: np.ndarray) -> None:
        import numpy as np

        if len(self.hashes) >= self.k:
            h = h[h < self.hashes[-1]]
        if not len(h):
            return
        if len(h) > 4 * self.k:  # only the k smallest can stay
            h = np.partition(h, 4 * self.k)[: 4 * self.k + 1]
        merged = np.sort(np.concatenate([self.hashes, h]))
        if len(merged) > 1:
            merged = merged[np.concatenate([[True], merged[1:] != merged[:-1]])]
        self.hashes = merged[: self.k]

    def estimate(self) -> int:
        n = len(self.hashes)
        if n < self.k:
            return n
        return round((self.k - 1) / ((int(self.hashes[-1]) + 1) / _U64))


class _Moments:
    """Exact count, nulls, infinities, min, max, mean and variance of a numeric column."""

    def __init__(self) -> None:
        self.count = 0
        self.nulls = 0
        self.pos_inf = 0
        self.neg_inf = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum = 0.0
        self.m2 = 0.0

    def add(self, x: np.ndarray) -> None:
        import numpy as np

        with np.errstate(invalid="ignore", over="ignore"):
            total = float(x.sum())
        if not math.isfinite(total):  # NaN or an infinity in the batch
            nan = np.isnan(x)
            pos = x == np.inf
            neg = x == -np.inf
            self.nulls += int(nan.sum())
            self.pos_inf += int(pos.sum())
            self.neg_inf += int(neg.sum())
            x = x[~(nan | pos | neg)]
            total = float(x.sum())
        n = len(x)
        if not n:
            return
        # Shifted sums: exact enough whatever the column's offset, three passes.
        d = x - x[0]
        sd = float(d.sum())
        # einsum, not a BLAS dot: BLAS threads spin on a busy machine (20x slower here).
        m2 = max(0.0, float(np.einsum("i,i->", d, d)) - sd * sd / n)
        mean_b = total / n
        if self.count:
            delta = mean_b - self.sum / self.count
            self.m2 += m2 + delta * delta * self.count * n / (self.count + n)
        else:
            self.m2 = m2
        self.count += n
        self.sum += total
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else math.nan


@dataclass
class _Column:
    name: str
    arrow_type: Any
    kind: str
    rows: int = 0
    nulls: int = 0
    distinct: _Kmv = field(default_factory=_Kmv)
    moments: _Moments = field(default_factory=_Moments)
    counts: dict[Any, int] | None = None  # exact value counts for text/boolean columns
    overflow: bool = False
    non_integer: bool = False  # a numeric value with a fraction (target: regression)


@dataclass(frozen=True)
class StreamStatistics:
    """What one streamed pass learned about a table.

    Attributes:
        schema: the inferred schema with statistics (see the module docstring for which
            fields are exact).
        sample: a uniform row sample (pandas), about ``sample_rows`` rows.
        duplicate_rows: rows duplicating an earlier row (estimated beyond
            :data:`MAX_ROW_HASHES` rows).
        duplicates_exact: whether ``duplicate_rows`` is exact.
        infinite: column -> ``(+inf count, -inf count)``, numeric columns with any.
        rows: rows read.
    """

    schema: Schema
    sample: pd.DataFrame
    duplicate_rows: int
    duplicates_exact: bool
    infinite: dict[str, tuple[int, int]]
    rows: int


def _kind(t: pa.DataType) -> str:
    import pyarrow.types as pat

    if pat.is_boolean(t):
        return "boolean"
    if pat.is_timestamp(t):
        return "datetime"
    if pat.is_integer(t) or pat.is_floating(t):
        return "numeric"
    return "categorical"


def _bits(
    arr: pa.Array, kind: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[list[Any], np.ndarray] | None]:
    """64-bit words per row (equal values give equal words; nulls a fixed word), with the
    words of the distinct non-null values when they come cheaply (else None), and for a
    text column its value counts ``(values, counts)`` (else None)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    if kind == "numeric":
        x = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        with np.errstate(invalid="ignore", over="ignore"):
            total = x.sum()
        if arr.null_count or not np.isfinite(total):
            # Slow path: one NaN bit pattern, and -0.0 == 0.0.
            x = x + 0.0
            nan = np.isnan(x)
            if nan.any():
                x[nan] = np.float64("nan")
        return x.view(np.uint64), None, None
    if kind == "datetime":
        ints = pc.fill_null(arr.cast(pa.int64()), -(1 << 63))
        return ints.to_numpy(zero_copy_only=False).view(np.uint64), None, None
    if kind == "boolean":
        codes = pc.fill_null(arr.cast(pa.int8()), 2).to_numpy(zero_copy_only=False)
        seen = np.flatnonzero(np.bincount(codes, minlength=3)[:2]).astype(np.uint64)
        return codes.astype(np.uint64), seen, None
    enc = pc.dictionary_encode(arr)
    values = enc.dictionary.to_pandas()
    try:
        dict_h = pd.util.hash_array(values.to_numpy(dtype=object), categorize=False)
    except TypeError:
        dict_h = pd.util.hash_array(values.astype(str).to_numpy(dtype=object))
    dict_h = dict_h.astype(np.uint64, copy=False)
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    if arr.null_count:
        out = np.where(idx >= 0, dict_h[np.maximum(idx, 0)], np.uint64(0x5555))
        valid_idx = idx[idx >= 0]
    else:
        out = dict_h[idx]
        valid_idx = idx
    if pat.is_dictionary(arr.type):  # the dictionary may hold values no row uses
        return out.astype(np.uint64, copy=False), None, None
    counts = np.bincount(valid_idx, minlength=len(dict_h))
    return out.astype(np.uint64, copy=False), dict_h, (enc.dictionary.to_pylist(), counts)


class _Accumulator:
    def __init__(self, schema: pa.Schema, target: str | None, sample_p: float, seed: int) -> None:
        import numpy as np

        self.columns = [_Column(f.name, f.type, _kind(f.type)) for f in schema]
        for c in self.columns:
            if c.kind in ("categorical", "boolean") or c.name == target:
                c.counts = {}
        self.target = target
        self.rows = 0
        self.sample_threshold = np.uint64(min(_U64 - 1, int(sample_p * _U64)))
        self.seed = np.uint64(seed)
        self.samples: list[pa.RecordBatch] = []
        self.row_hashes: list[np.ndarray] = []
        self.kept = 0
        self.hash_threshold = _U64 - 1  # keep row hashes <= this

    def add(self, batch: pa.RecordBatch) -> None:
        import numpy as np
        import pyarrow.compute as pc

        n = batch.num_rows
        if not n:
            return
        row_h = np.zeros(n, dtype=np.uint64)
        for j, c in enumerate(self.columns):
            arr = batch.column(j)
            c.rows += n
            nulls = arr.null_count
            bits, distinct, value_counts = _bits(arr, c.kind)
            if c.kind == "numeric":
                x = bits.view(np.float64)
                c.moments.add(x)
                if c.name == self.target and not c.non_integer:
                    fin = x[np.isfinite(x)]
                    c.non_integer = bool(len(fin)) and bool((np.mod(fin, 1.0) != 0).any())
            else:
                c.nulls += nulls
                if distinct is None:
                    distinct = (
                        bits if not nulls else bits[arr.is_valid().to_numpy(zero_copy_only=False)]
                    )
                c.distinct.add(_mix(distinct))
            if c.counts is not None and not c.overflow:
                if value_counts is None:
                    vc = pc.value_counts(arr)
                    value_counts = (vc.field("values").to_pylist(), vc.field("counts").to_numpy())
                for value, count in zip(value_counts[0], value_counts[1].tolist(), strict=True):
                    if value is None or not count:
                        continue
                    c.counts[value] = c.counts.get(value, 0) + count
                if len(c.counts) > MAX_EXACT_VALUES:
                    c.overflow = True
            np.bitwise_xor(row_h, bits, out=row_h)
            np.multiply(row_h, np.uint64(_GOLDEN + 2 * j), out=row_h)
        row_h = _mix(row_h)
        kept = row_h[row_h <= np.uint64(self.hash_threshold)]
        self.row_hashes.append(kept)
        self.kept += len(kept)
        while self.kept > MAX_ROW_HASHES:
            self.hash_threshold //= 2
            thr = np.uint64(self.hash_threshold)
            merged = np.concatenate(self.row_hashes)
            merged = merged[merged <= thr]
            self.row_hashes, self.kept = [merged], len(merged)
        pos = np.arange(self.rows, self.rows + n, dtype=np.uint64)
        pick = np.flatnonzero(_mix(pos ^ self.seed) <= self.sample_threshold)
        if len(pick):
            # A NumPy index: pa.array(pick) costs 15 ms a batch here.
            self.samples.append(batch.take(pick))
        self.rows += n

    def duplicates(self) -> tuple[int, bool]:
        import numpy as np

        hashes = np.concatenate(self.row_hashes) if self.row_hashes else np.zeros(0, np.uint64)
        hashes.sort()
        within = int((hashes[1:] == hashes[:-1]).sum()) if len(hashes) > 1 else 0
        p = (self.hash_threshold + 1) / _U64
        exact = self.hash_threshold == _U64 - 1
        return (within if exact else round(within / p)), exact


def _n_distinct_sorted(values: np.ndarray) -> int:
    """Distinct values of a sorted float array without NaN (``-0.0`` equals ``0.0``)."""
    if not len(values):
        return 0
    return int(1 + (values[1:] != values[:-1]).sum())


def _label_key(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _pandas_dtype(c: _Column, empty: pd.DataFrame) -> str:
    import pyarrow.types as pat

    dtype = str(empty[c.name].dtype)
    if c.nulls and pat.is_integer(c.arrow_type):
        return "float64"
    if c.nulls and pat.is_boolean(c.arrow_type):
        return "object"
    return dtype


def _schema(acc: _Accumulator, sample: pd.DataFrame, empty: pd.DataFrame) -> Schema:
    import numpy as np

    from kfgpu.validation.schema import (
        MAX_CLASSIFICATION_CLASSES,
        MAX_DOMAIN_SIZE,
        ColumnSchema,
        Schema,
    )

    n_rows = acc.rows
    cols = []
    for c in acc.columns:
        kind = c.kind
        dtype = _pandas_dtype(c, empty)
        if kind == "boolean" and c.nulls:
            kind = "categorical"  # pandas reads a bool column with nulls as object
        base: dict[str, Any] = {
            "name": c.name,
            "kind": kind,
            "dtype": dtype,
            "nullable": c.nulls > 0,
            "null_fraction": float(c.nulls / n_rows) if n_rows else 0.0,
        }
        if kind == "numeric":
            mo = c.moments
            base["nullable"] = mo.nulls + c.nulls > 0
            base["null_fraction"] = float(mo.nulls / n_rows) if n_rows else 0.0
            values = sample[c.name].to_numpy(dtype=float, na_value=np.nan)
            # Distinct values: 1 when min == max, else those in the sample plus +-inf (a
            # lower bound of the table's count).
            # Sorted once: the distinct count and the quantiles both read it.
            seen = np.sort(values[~np.isnan(values)])
            n_unique = _n_distinct_sorted(seen) if mo.min != mo.max else 1
            n_unique += int(mo.pos_inf > 0 and not np.isposinf(seen).any())
            n_unique += int(mo.neg_inf > 0 and not np.isneginf(seen).any())
            if mo.count == 0:
                cols.append(ColumnSchema(**base, n_unique=min(n_unique, 2)))
                continue
            finite = seen[np.isfinite(seen)]
            qs = (
                np.quantile(finite, [0.01, 0.5, 0.99])
                if len(finite)
                else np.array([mo.min, (mo.min + mo.max) / 2, mo.max])
            )
            cols.append(
                ColumnSchema(
                    **base,
                    n_unique=n_unique,
                    min=float(mo.min),
                    max=float(mo.max),
                    mean=float(mo.mean),
                    std=float(mo.std),
                    quantiles={"p01": float(qs[0]), "p50": float(qs[1]), "p99": float(qs[2])},
                )
            )
        elif kind == "datetime":
            cols.append(ColumnSchema(**base, n_unique=c.distinct.estimate()))
        else:
            counts: dict[str, int] = {}
            for value, count in (c.counts or {}).items():
                key = str(value)
                counts[key] = counts.get(key, 0) + count
            ordered = _ordered(counts)
            n_unique = len(ordered) if not c.overflow else max(len(ordered), c.distinct.estimate())
            domain = dict(list(ordered.items())[:MAX_DOMAIN_SIZE])
            cols.append(ColumnSchema(**base, n_unique=n_unique, domain=domain))
    task = None
    labels = None
    if acc.target is not None:
        t = next(c for c in acc.columns if c.name == acc.target)
        if t.kind != "numeric":
            task = "classification"
        else:
            infinite = t.moments.pos_inf + t.moments.neg_inf
            few = not t.overflow and len(t.counts or {}) <= MAX_CLASSIFICATION_CLASSES
            task = "classification" if not infinite and not t.non_integer and few else "regression"
        if task == "classification":
            merged: dict[str, int] = {}
            for value, count in (t.counts or {}).items():
                key = _label_key(value)
                merged[key] = merged.get(key, 0) + count
            labels = _ordered(merged)
    return Schema(
        columns=tuple(cols),
        n_rows=n_rows,
        target=acc.target,
        task=task,  # type: ignore[arg-type]
        label_distribution=labels,
    )


@dataclass(frozen=True)
class SourceValidation:
    """What :func:`validate_source` found.

    Attributes:
        result: the validation result.
        sample: the rows the row-level checks saw: the whole table when it has at most
            ``sample_rows`` rows, else a uniform sample of about that many.
        rows: rows in the table.
        streamed: whether the table was streamed (else read whole).
    """

    result: ValidationResult
    sample: pd.DataFrame
    rows: int
    streamed: bool


def stream_statistics(
    shards: ShardSet,
    target: str | None,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    batch_rows: int = 65_536,
) -> StreamStatistics:
    """One streamed pass over ``shards``: schema statistics, duplicates, infinities, sample.

    Raises:
        SchemaError: ``target`` is not a column.
    """
    import pyarrow as pa

    from kfgpu.data.shards import prefetched

    names = list(shards.schema.names)
    if target is not None and target not in names:
        raise SchemaError(
            f"target column {target!r} not found in the table's {len(names)} columns "
            f"({', '.join(names[:20])}); pass a target that is one of them"
        )
    p = min(1.0, sample_rows / max(shards.rows, 1))
    acc = _Accumulator(shards.schema, target, p, seed)
    # Decoding (pyarrow, GIL released) runs in a thread ahead of the statistics.
    for batch in prefetched(shards.iter_batches(batch_rows=batch_rows)):
        acc.add(batch)
    empty = shards.schema.empty_table().to_pandas()
    sample_table = (
        pa.Table.from_batches(acc.samples, schema=shards.schema)
        if acc.samples
        else shards.schema.empty_table()
    )
    sample = sample_table.to_pandas()
    duplicates, exact = acc.duplicates()
    infinite = {
        c.name: (c.moments.pos_inf, c.moments.neg_inf)
        for c in acc.columns
        if c.kind == "numeric" and (c.moments.pos_inf or c.moments.neg_inf)
    }
    return StreamStatistics(
        schema=_schema(acc, sample, empty),
        sample=sample,
        duplicate_rows=duplicates,
        duplicates_exact=exact,
        infinite=infinite,
        rows=acc.rows,
    )


def validate_source(
    source: str | ShardSet,
    target: str,
    *,
    schema: Schema | None = None,
    task: str = "auto",
    max_null_fraction: float = 0.5,
    max_unseen_fraction: float = 0.0,
    leakage_threshold: float = 0.99,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    batch_rows: int = 65_536,
) -> SourceValidation:
    """Validate a Parquet data set in one streamed pass (see the module docstring).

    Takes the options of :func:`kfgpu.validation.checks.validate`; a table of at most
    ``sample_rows`` rows goes through it unchanged.

    Raises:
        ConfigError: an option has an unusable value.
        DataError: the data set cannot be read.
    """
    from kfgpu.data.shards import ShardSet, open_shards
    from kfgpu.validation.checks import DEFAULT_CHECKS, check_target_and_task, validate
    from kfgpu.validation.checks.base import (
        CheckContext,
        StreamedCounts,
        ValidationOptions,
        ValidationResult,
    )
    from kfgpu.validation.schema import Schema as SchemaType

    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 1:
        raise ConfigError(f"sample_rows={sample_rows!r} is not a positive integer; pass 262144")
    shards = source if isinstance(source, ShardSet) else open_shards(source)
    options = {
        "schema": schema,
        "task": task,
        "max_null_fraction": max_null_fraction,
        "max_unseen_fraction": max_unseen_fraction,
        "leakage_threshold": leakage_threshold,
    }
    if shards.rows <= sample_rows:
        import pyarrow as pa

        batches = list(shards.iter_batches(batch_rows=batch_rows))
        df = pa.Table.from_batches(batches, schema=shards.schema).to_pandas()
        result = validate(df, target, **options)  # type: ignore[arg-type]
        return SourceValidation(result=result, sample=df, rows=len(df), streamed=False)
    check_target_and_task(target, task)
    opts = ValidationOptions(
        max_null_fraction=max_null_fraction,
        max_unseen_fraction=max_unseen_fraction,
        leakage_threshold=leakage_threshold,
    )
    has_target = target in shards.schema.names
    st = stream_statistics(
        shards, target if has_target else None, sample_rows=sample_rows, batch_rows=batch_rows
    )
    stats = st.schema
    resolved = None
    if has_target:
        if task != "auto":
            resolved = task
        elif schema is not None and schema.target == target and schema.task is not None:
            resolved = schema.task
        else:
            resolved = stats.task
        if resolved != stats.task:
            stats = SchemaType(
                columns=stats.columns,
                n_rows=stats.n_rows,
                target=stats.target,
                task=resolved,  # type: ignore[arg-type]
                label_distribution=stats.label_distribution
                if resolved == "classification"
                else None,
            )
    ctx = CheckContext(
        df=st.sample,
        target=target,
        task=resolved,  # type: ignore[arg-type]
        stats=stats,
        pinned=schema,
        max_null_fraction=float(max_null_fraction),
        options=opts,
        streamed=StreamedCounts(
            rows=st.rows,
            duplicate_rows=st.duplicate_rows,
            duplicates_exact=st.duplicates_exact,
            infinite=st.infinite,
        ),
    )
    anomalies = []
    for check in DEFAULT_CHECKS:
        anomalies.extend(check(ctx))
    result = ValidationResult(
        schema=schema if schema is not None else stats,
        statistics=stats,
        anomalies=tuple(anomalies),
        target=target,
        task=resolved,  # type: ignore[arg-type]
    )
    return SourceValidation(result=result, sample=st.sample, rows=st.rows, streamed=True)
