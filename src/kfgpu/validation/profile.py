"""Reference profiles: small, mergeable summaries of a table for drift detection.

A :class:`ReferenceProfile` is computed once, at training time, streamed over chunks of
any size, and travels in the model bundle; a later drift check profiles only the new data
and compares the two profiles (:func:`kfgpu.validation.drift.detect_drift`), never the raw
reference rows.

* :class:`~kfgpu.validation.sketch.NumericSketch` and
  :class:`~kfgpu.validation.sketch.CategoricalCounts` (in :mod:`kfgpu.validation.sketch`,
  re-exported here) summarise one numeric or categorical column.
* :class:`ReferenceProfile` holds one of those per column plus a uniform sample of rows.

Every piece merges: the profile of a table equals the merge of the profiles of its chunks
(exactly, for counts and bins), so profiles are built in bounded memory by
:func:`build_profile` and :func:`profile_source`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from kfgpu.errors import ConfigError, DataFormatError, EmptyDataError, SchemaError
from kfgpu.validation.sketch import (
    DEFAULT_MAX_VALUES,
    DEFAULT_RELATIVE_ACCURACY,
    CategoricalCounts,
    NumericSketch,
    check_relative_accuracy,
)

__all__ = [
    "DEFAULT_MAX_VALUES",
    "DEFAULT_RELATIVE_ACCURACY",
    "DEFAULT_SAMPLE_ROWS",
    "PROFILE_FILE",
    "PROFILE_VERSION",
    "SAMPLE_FILE",
    "CategoricalCounts",
    "ColumnKind",
    "ColumnProfile",
    "NumericSketch",
    "ReferenceProfile",
    "build_profile",
    "iter_source",
    "profile_source",
]

ColumnKind = Literal["numeric", "categorical"]

DEFAULT_SAMPLE_ROWS = 5_000
"""Rows in a profile's uniform sample unless told otherwise."""

PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"
SAMPLE_FILE = "sample.parquet"


# --------------------------------------------------------------------------- profiles


@dataclass
class ColumnProfile:
    """The summary of one column.

    Attributes:
        name: the column name.
        kind: ``"numeric"`` (a :class:`NumericSketch`) or ``"categorical"`` (a
            :class:`CategoricalCounts`).
        stats: the sketch or the counts.
    """

    name: str
    kind: ColumnKind
    stats: NumericSketch | CategoricalCounts

    @property
    def numeric(self) -> NumericSketch:
        """The numeric sketch; ConfigError for a categorical column."""
        if not isinstance(self.stats, NumericSketch):
            raise ConfigError(f"column {self.name!r} is {self.kind}, not numeric")
        return self.stats

    @property
    def categorical(self) -> CategoricalCounts:
        """The categorical counts; ConfigError for a numeric column."""
        if not isinstance(self.stats, CategoricalCounts):
            raise ConfigError(f"column {self.name!r} is {self.kind}, not categorical")
        return self.stats

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """Merge ``other`` (same kind) into this profile; returns ``self``."""
        if other.kind != self.kind:
            raise ConfigError(
                f"column {self.name!r} is {self.kind} in one profile and {other.kind} in the "
                f"other; pass categorical= with the same columns to both"
            )
        if isinstance(self.stats, NumericSketch):
            self.stats.merge(other.numeric)
        else:
            self.stats.merge(other.categorical)
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., "stats": ...}``, JSON-ready."""
        return {"kind": self.kind, "stats": self.stats.to_dict()}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild from :meth:`to_dict` output."""
        kind = data.get("kind")
        if kind == "numeric":
            return cls(name, "numeric", NumericSketch.from_dict(data["stats"]))
        if kind == "categorical":
            return cls(name, "categorical", CategoricalCounts.from_dict(data["stats"]))
        raise ConfigError(
            f"column {name!r} has kind={kind!r} in the profile; expected 'numeric' or 'categorical'"
        )


@dataclass
class ReferenceProfile:
    """Per-column summaries of a table plus a uniform sample of its rows.

    Attributes:
        rows: rows summarised.
        columns: per-column profiles, in table order.
        sample: a uniform random sample of up to ``sample_rows`` rows (reservoir sampling;
            merged by drawing from each side in proportion to the rows it saw).
        sample_rows: the sample's capacity.
        seed: seed for the sample draws.
        relative_accuracy: relative accuracy of the numeric sketches.
    """

    rows: int
    columns: dict[str, ColumnProfile]
    sample: pd.DataFrame = field(repr=False)
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    seed: int = 0
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        """``{column: kind}``."""
        return {name: c.kind for name, c in self.columns.items()}

    def categorical_columns(self) -> list[str]:
        """Names of the categorical columns, in table order."""
        return [n for n, c in self.columns.items() if c.kind == "categorical"]

    def numeric_columns(self) -> list[str]:
        """Names of the numeric columns, in table order."""
        return [n for n, c in self.columns.items() if c.kind == "numeric"]

    def select(self, columns: Sequence[str]) -> ReferenceProfile:
        """A new profile of only ``columns`` (statistics shared, sample subset copied).

        Raises:
            ConfigError: a column is not in the profile.
        """
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ConfigError(
                f"columns {missing!r} are not in the profile; profile columns are "
                f"{list(self.columns)!r}"
            )
        keep = [c for c in columns if c in self.sample.columns]
        return ReferenceProfile(
            self.rows,
            {c: self.columns[c] for c in columns},
            self.sample[keep].copy(),
            self.sample_rows,
            self.seed,
            self.relative_accuracy,
        )

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """Merge ``other`` (same columns and kinds) into this profile; returns ``self``.

        Raises:
            ConfigError: the profiles have different columns or kinds.
        """
        mine, theirs = set(self.columns), set(other.columns)
        if mine != theirs:
            raise ConfigError(
                f"cannot merge profiles with different columns: only in this profile "
                f"{sorted(mine - theirs)!r}, only in the other {sorted(theirs - mine)!r}; "
                f"profile the same columns (categorical=, exclude=) in both"
            )
        for name, col in self.columns.items():
            col.merge(other.columns[name])
        rng = np.random.default_rng([self.seed, self.rows, other.rows])
        self.sample = _merge_samples(
            self.sample, self.rows, other.sample, other.rows, self.sample_rows, rng
        )
        self.rows += other.rows
        return self

    def to_dict(self) -> dict[str, Any]:
        """The profile without its sample, JSON-ready."""
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "sample_rows": self.sample_rows,
            "seed": self.seed,
            "relative_accuracy": self.relative_accuracy,
            "column_order": list(self.columns),
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], sample: pd.DataFrame | None = None
    ) -> ReferenceProfile:
        """Rebuild from :meth:`to_dict` output (and an optional sample).

        Raises:
            ConfigError: the dict is not a profile of a version this code reads.
        """
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ConfigError(
                f"profile version={version!r} is not supported; rebuild the profile with "
                f"this kfgpu (version {PROFILE_VERSION})"
            )
        try:
            cols_data = data["columns"]
            order = list(data.get("column_order") or cols_data)
            columns = {name: ColumnProfile.from_dict(name, cols_data[name]) for name in order}
            rows = int(data["rows"])
            sample_rows = int(data["sample_rows"])
            seed = int(data["seed"])
            accuracy = float(data["relative_accuracy"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"profile dict is invalid ({type(e).__name__}: {e}); pass the output of "
                f"ReferenceProfile.to_dict()"
            ) from e
        if sample is None:
            sample = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
        return cls(rows, columns, sample, sample_rows, seed, accuracy)

    def save(self, directory: str | os.PathLike[str]) -> dict[str, str]:
        """Write ``profile.json`` (sorted keys, compact) and ``sample.parquet`` atomically.

        Returns:
            ``{"profile": path, "sample": path}``.
        """
        from kfgpu.data._atomic import atomic_write_text
        from kfgpu.data.io import write_parquet

        d = os.fspath(directory)
        os.makedirs(d, exist_ok=True)
        profile_path = os.path.join(d, PROFILE_FILE)
        sample_path = os.path.join(d, SAMPLE_FILE)
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        atomic_write_text(profile_path, text)
        write_parquet(self.sample, sample_path)
        return {"profile": profile_path, "sample": sample_path}

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ReferenceProfile:
        """Read a profile written by :meth:`save` (the sample is optional).

        Raises:
            DataNotFoundError: there is no ``profile.json`` in ``directory``.
            ConfigError: the file is not a profile.
        """
        from kfgpu.errors import DataNotFoundError

        d = os.fspath(directory)
        profile_path = os.path.join(d, PROFILE_FILE)
        if not os.path.exists(profile_path):
            raise DataNotFoundError(
                f"profile directory {d!r} has no {PROFILE_FILE}; pass a directory written by "
                f"ReferenceProfile.save()"
            )
        try:
            with open(profile_path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"profile file {profile_path!r} is not JSON ({e}); rewrite it with "
                f"ReferenceProfile.save()"
            ) from e
        sample_path = os.path.join(d, SAMPLE_FILE)
        sample = None
        if os.path.exists(sample_path):
            import pyarrow.parquet as pq

            sample = pq.read_table(sample_path).to_pandas()
        return cls.from_dict(data, sample)


def _merge_samples(
    a: pd.DataFrame, seen_a: int, b: pd.DataFrame, seen_b: int, k: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Merge two uniform reservoirs of ``seen_a`` and ``seen_b`` rows into one of ``k``.

    Each input is a uniform sample of ``min(k, seen)`` rows; drawing the number taken from
    ``a`` from the hypergeometric law over the seen counts keeps the result uniform.
    """
    if seen_b == 0 or len(b) == 0:
        return a
    if seen_a == 0 or len(a) == 0:
        return b
    if len(a) + len(b) <= k:
        return pd.concat([a, b], ignore_index=True)
    n = min(k, seen_a + seen_b)
    take_a = int(rng.hypergeometric(seen_a, seen_b, n))
    take_a = min(take_a, len(a))
    take_b = min(n - take_a, len(b))
    ia = np.sort(rng.choice(len(a), take_a, replace=False))
    ib = np.sort(rng.choice(len(b), take_b, replace=False))
    return pd.concat([a.iloc[ia], b.iloc[ib]], ignore_index=True)


def _infer_kinds(
    frame: pd.DataFrame, categorical: Sequence[str] | None, exclude: Sequence[str]
) -> dict[str, ColumnKind]:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(f"columns {dup!r} appear more than once; give every column a unique name")
    unknown = [c for c in exclude if c not in names]
    if unknown:
        raise SchemaError(
            f"exclude={unknown!r} names columns the data does not have; available columns are "
            f"{names!r}"
        )
    if categorical is not None:
        cat = [str(c) for c in categorical]
        unknown = [c for c in cat if c not in names]
        if unknown:
            raise SchemaError(
                f"categorical={unknown!r} names columns the data does not have; available "
                f"columns are {names!r}"
            )
    kinds: dict[str, ColumnKind] = {}
    for col, name in zip(frame.columns, names, strict=True):
        if name in exclude:
            continue
        if categorical is not None:
            kinds[name] = "categorical" if name in cat else "numeric"
        else:
            dtype = frame[col].dtype
            is_num = pd.api.types.is_bool_dtype(dtype) or (
                pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
            )
            kinds[name] = "numeric" if is_num else "categorical"
    return kinds


def _profile_chunk(
    frame: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    sample_rows: int,
    seed: int,
    relative_accuracy: float,
    max_values: int,
    chunk_index: int,
) -> ReferenceProfile:
    columns: dict[str, ColumnProfile] = {}
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"chunk {chunk_index} has no column(s) {missing!r} that the first chunk had; "
            f"every chunk must have the same columns (available: {list(map(str, frame.columns))!r})"
        )
    for name, kind in kinds.items():
        s = frame[name]
        if kind == "numeric":
            try:
                columns[name] = ColumnProfile(
                    name, "numeric", NumericSketch(relative_accuracy).add(s)
                )
            except (TypeError, ValueError) as e:
                raise SchemaError(
                    f"column {name!r} (dtype {s.dtype}) in chunk {chunk_index} is not numeric "
                    f"({e}); list it in categorical= or clean the data"
                ) from e
        else:
            columns[name] = ColumnProfile(name, "categorical", CategoricalCounts(max_values).add(s))
    n = len(frame)
    rng = np.random.default_rng([seed, chunk_index, n])
    cols = list(kinds)
    if n > sample_rows:
        # Rows first, then columns: never copy the whole chunk.
        idx = np.sort(rng.choice(n, sample_rows, replace=False))
        sample = frame.iloc[idx][cols].reset_index(drop=True)
    else:
        sample = frame[cols].reset_index(drop=True)
    return ReferenceProfile(n, columns, sample, sample_rows, seed, relative_accuracy)


def _select_columns(
    frames: Iterable[pd.DataFrame], wanted: list[str], categorical: Sequence[str] | None
) -> tuple[Iterator[pd.DataFrame], list[str] | None]:
    """Keep the wanted columns the first chunk has; later chunks must have them too."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return iter(()), None if categorical is None else list(categorical)
    keep = [c for c in wanted if c in first.columns]
    if not keep:
        raise SchemaError(
            f"the data has none of the columns {wanted[:10]} (it has "
            f"{[str(c) for c in first.columns][:10]}); compare data of the same kind"
        )
    if categorical is not None:
        categorical = [c for c in categorical if c in keep]

    def chunks() -> Iterator[pd.DataFrame]:
        yield first[keep]
        for i, frame in enumerate(it, start=1):
            missing = [c for c in keep if c not in frame.columns]
            if missing:
                raise SchemaError(
                    f"chunk {i} lacks column(s) {missing} that the first chunk had; every "
                    "chunk of one table needs the same columns"
                )
            yield frame[keep]

    return chunks(), None if categorical is None else list(categorical)


def build_profile(
    frames: Iterable[pd.DataFrame] | pd.DataFrame,
    *,
    categorical: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
    max_values: int = DEFAULT_MAX_VALUES,
) -> ReferenceProfile:
    """Profile a table given as chunks (or as one frame), in memory bounded by one chunk.

    Args:
        frames: DataFrames with the same columns (a single DataFrame is accepted too).
        categorical: the columns to treat as categorical (every other one is numeric);
            ``None`` infers from the first chunk: numeric and bool dtypes are numeric,
            everything else categorical.
        exclude: columns not to profile.
        columns: profile only those of these columns the data has (e.g. a reference
            profile's columns, when the current data has more or fewer); ``None`` keeps all.
        sample_rows: capacity of the uniform row sample (0 keeps none).
        seed: seed of the sample draws.
        relative_accuracy: relative accuracy of the numeric quantile sketches.
        max_values: distinct values kept per categorical column.

    Returns:
        The merged profile.

    Raises:
        ConfigError: an argument is out of range.
        EmptyDataError: ``frames`` is empty.
        SchemaError: a later chunk lacks a column of the first, or a named column does not
            exist.
    """
    check_relative_accuracy(relative_accuracy)
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 0:
        raise ConfigError(
            f"sample_rows={sample_rows!r} is not a non-negative integer; pass e.g. "
            f"{DEFAULT_SAMPLE_ROWS}"
        )
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    if columns is not None:
        frames, categorical = _select_columns(frames, [str(c) for c in columns], categorical)
    exclude = [str(c) for c in exclude]
    profile: ReferenceProfile | None = None
    kinds: dict[str, ColumnKind] = {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(
                f"chunk {i} is a {type(frame).__name__}, not a pandas DataFrame; pass an "
                f"iterable of DataFrames"
            )
        if profile is None:
            kinds = _infer_kinds(frame, categorical, exclude)
            if not kinds:
                raise EmptyDataError("no column left to profile; exclude fewer columns")
        part = _profile_chunk(frame, kinds, sample_rows, seed, relative_accuracy, max_values, i)
        profile = part if profile is None else profile.merge(part)
    if profile is None:
        raise EmptyDataError("no chunk to profile; pass at least one DataFrame")
    return profile


def _iter_source(uri: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    from kfgpu.data.io import read_table

    path = uri[len("file://") :] if uri.startswith("file://") else uri
    lower = path.lower()
    is_local = "://" not in path
    if is_local and os.path.isdir(path):
        files = sorted(
            os.path.join(path, f)
            for f in os.listdir(path)
            if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_"))
        )
        if not files:
            raise DataFormatError(
                f"directory {uri!r} holds no .parquet files; pass a Parquet file, a CSV file "
                f"or a directory of Parquet files"
            )
    elif is_local and lower.endswith((".parquet", ".pq")):
        files = [path]
    else:
        files = []
    if files:
        for f in files:
            if not os.path.exists(f):
                from kfgpu.errors import DataNotFoundError

                raise DataNotFoundError(f"data file {uri!r} does not exist; pass a path to data")
            try:
                pf = pq.ParquetFile(f)
                # One row group at a time: iter_batches over the whole file keeps every
                # decoded row group alive until the end (pyarrow 25: 1.9 GB for a 1.6 GB
                # file), per row group peak memory stays at one group.
                for group in range(pf.num_row_groups):
                    for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                        yield batch.to_pandas()
            except OSError as e:
                raise DataFormatError(
                    f"data file {f!r} is not a Parquet file kfgpu can read ({e}); pass a "
                    f"valid Parquet file"
                ) from e
        return
    if is_local and lower.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        if not os.path.exists(path):
            from kfgpu.errors import DataNotFoundError

            raise DataNotFoundError(f"data file {uri!r} does not exist; pass a path to data")
        sep = "\t" if ".tsv" in lower else ","
        try:
            with pd.read_csv(path, sep=sep, chunksize=chunk_rows, low_memory=False) as reader:
                yield from reader
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataFormatError(
                f"data file {uri!r} cannot be parsed as CSV ({e}); pass a CSV with a header row"
            ) from e
        return
    yield read_table(uri)


def iter_source(uri: str, chunk_rows: int = 250_000) -> Iterator[pd.DataFrame]:
    """The rows of a data source as DataFrame chunks, streamed as :func:`profile_source`
    streams them (local Parquet and CSV in chunks, anything else read whole)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    return _iter_source(uri, chunk_rows)


def profile_source(uri: str, *, chunk_rows: int = 250_000, **kw: Any) -> ReferenceProfile:
    """Profile a data source in bounded memory.

    A local Parquet file (or a directory of them) is streamed with
    ``pyarrow.parquet.ParquetFile.iter_batches``, one row group at a time (peak memory is
    about one decoded row group plus one chunk), a local CSV/TSV with
    ``pandas.read_csv(chunksize=...)``; anything else (JSON lines, remote URIs, built-in
    ``kfgpu://`` data sets) is read whole with :func:`kfgpu.data.read_table`.

    Args:
        uri: a path or URI.
        chunk_rows: rows per streamed chunk.
        **kw: passed to :func:`build_profile`.

    Returns:
        The profile of the whole source.

    Raises:
        ConfigError: ``chunk_rows`` is not positive, or a :func:`build_profile` argument.
        DataError: the source cannot be read (see :func:`kfgpu.data.read_table`).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    try:
        return build_profile(_iter_source(uri, chunk_rows), **kw)
    except EmptyDataError as e:
        if "no chunk" in str(e):
            raise EmptyDataError(f"data source {uri!r} has no rows; pass a non-empty table") from e
        raise
