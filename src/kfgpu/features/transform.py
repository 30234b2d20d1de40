"""The fitted feature transform: fitted once on the training data, applied identically
offline (NumPy) and inside the served model (torch).

The transform runs in two halves:

* the shared **front half**, :meth:`FittedTransform.raw_arrays`: a raw frame -> ``(num,
  codes)``. ``num`` is float32 ``[n, len(numeric)]`` with NaN for missing and non-finite
  values (finite values beyond float32 capped to its max); ``codes`` is int64 ``[n,
  len(code_inputs)]``: per categorical column its vocabulary (or hash) index and per
  datetime part its code, 0 = missing or unseen.
* the **back half**, the same arithmetic twice: :meth:`FittedTransform.transform_arrays`
  (NumPy, offline, fast) and :meth:`FittedTransform.to_module` (a torch module inside the
  served model). Both map ``(num, codes)`` to ``(dense float32 [n, n_dense], emb int64
  [n, len(cardinalities)])`` and agree within 1e-5.

Dense outputs, in this order:

1. per numeric column (spec order) its scaled value, then its missing indicator if any;
2. one-hot blocks (spec order, then crosses): onehot categoricals, onehot bucket indices,
   onehot datetime parts, onehot crosses; each block is ``cardinality`` wide (index 0,
   missing/unseen, included);
3. ordinal categoricals as float codes.

Embedding outputs (spec order, then crosses): embedding and hashing categoricals, bucket
indices with ``bucket_encode="embedding"``, datetime parts with ``encode="embedding"``,
embedding crosses; :attr:`FittedTransform.cardinalities` gives each table's size.

The fitted state is plain JSON (``version: 2``; version-1 files still load), so a bundle
never holds a pickle, and the torch module is rebuilt from that JSON.

The pieces live at their seams: each column's fitted values and their fitting in
:mod:`kfgpu.features.params`, the output layout both back halves read in
:mod:`kfgpu.features.layout`, the version-1 reader in :mod:`kfgpu.features.transform_v1`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, EmptyDataError, SchemaError
from kfgpu.features.layout import CROSS_MOD, CROSS_PRIME, Layout, build_layout, check_arrays
from kfgpu.features.params import (
    PARAM_TYPES,
    CategoricalParams,
    ColumnParams,
    DatetimeParams,
    NumericParams,
    describe_categorical,
    describe_numeric,
    fit_categorical,
    fit_numeric,
    params_from_dict,
    params_to_dict,
)
from kfgpu.features.spec import (
    CategoricalSpec,
    DatetimeSpec,
    FeatureSpec,
    NumericSpec,
    infer_feature_spec,
)
from kfgpu.features.transform_v1 import read_v1

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from kfgpu.features.stats import FeatureStats

__all__ = [
    "TRANSFORM_VERSION",
    "CategoricalParams",
    "DatetimeParams",
    "FeatureSpec",
    "FittedTransform",
    "NumericParams",
    "fit_source",
    "fit_transform",
    "infer_feature_spec",
]

TRANSFORM_VERSION = 2


@dataclass(frozen=True)
class FittedTransform:
    """A :class:`FeatureSpec` with its fitted values: JSON-serialisable, no pickle.

    Build one with :func:`fit_transform`, :func:`fit_source` or :meth:`from_stats`.

    Attributes:
        spec: the spec that was fitted.
        params: column -> its fitted values (:class:`NumericParams`,
            :class:`CategoricalParams` or :class:`DatetimeParams`), for every spec column.
        version: serialisation format version.
    """

    spec: FeatureSpec
    params: Mapping[str, ColumnParams]
    version: int = TRANSFORM_VERSION

    def __post_init__(self) -> None:
        if set(self.params) != set(self.spec.columns):
            raise SchemaError(
                f"fitted transform is malformed: fitted columns {sorted(self.params)} differ "
                f"from spec columns {sorted(self.spec.columns)}; re-run engineer_features"
            )
        for name, s in self.spec.columns.items():
            if not isinstance(self.params[name], PARAM_TYPES[type(s)]):
                raise SchemaError(
                    f"fitted transform is malformed: column {name!r} is "
                    f"{type(s).__name__} but was fitted as {type(self.params[name]).__name__}; "
                    "re-run engineer_features"
                )
        # One fixed order: the spec's.
        object.__setattr__(self, "params", {n: self.params[n] for n in self.spec.columns})

    # ---- fitting ---------------------------------------------------------------------
    @classmethod
    def from_stats(cls, spec: FeatureSpec, stats: FeatureStats) -> FittedTransform:
        """Fit ``spec`` from one-pass :class:`~kfgpu.features.stats.FeatureStats`.

        Raises:
            ConfigError: the stats were collected for another spec.
        """
        if stats.spec != spec:
            raise ConfigError(
                "feature stats were collected for a different feature spec; collect them with "
                "fit_stats(frames, spec) for this spec"
            )
        params: dict[str, ColumnParams] = {}
        for name, s in spec.columns.items():
            if isinstance(s, NumericSpec):
                params[name] = fit_numeric(s, stats.numeric[name], stats.log1p.get(name), spec.clip)
            elif isinstance(s, CategoricalSpec):
                params[name] = fit_categorical(s, stats.categorical[name].to_dict())
            else:
                years = stats.years[name]
                params[name] = (
                    DatetimeParams()
                    if years is None
                    else DatetimeParams(min_year=years[0], year_span=years[1] - years[0] + 1)
                )
        return cls(spec=spec, params=params)

    # ---- shape -----------------------------------------------------------------------
    @cached_property
    def layout(self) -> Layout:
        return build_layout(self.spec, self.params)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every raw column the transform reads, in spec order."""
        return tuple(self.spec.columns)

    @property
    def columns(self) -> tuple[str, ...]:
        """Alias of :attr:`input_columns` (the version-1 name)."""
        return self.input_columns

    @property
    def numeric(self) -> tuple[str, ...]:
        """Raw numeric inputs: the columns of ``raw_arrays``'s ``num``, in order."""
        return self.layout.numeric

    @property
    def categorical(self) -> tuple[str, ...]:
        """Raw categorical and datetime inputs, in spec order."""
        return tuple(n for n, s in self.spec.columns.items() if not isinstance(s, NumericSpec))

    @property
    def datetime_inputs(self) -> tuple[str, ...]:
        """Raw datetime inputs (a subset of :attr:`categorical`), in spec order."""
        return self.spec.datetime

    @property
    def code_inputs(self) -> tuple[str, ...]:
        """The columns of ``raw_arrays``'s ``codes``: categorical columns and datetime
        parts (``"<column>__<part>"``), in spec order."""
        return self.layout.code_inputs

    @property
    def n_dense(self) -> int:
        """Width of the dense output."""
        return len(self.dense_names)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Table size of each embedding output (index 0 = missing/unseen included)."""
        return tuple(o.cardinality for o in self.layout.embedding)

    @cached_property
    def dense_names(self) -> tuple[str, ...]:
        """Names of the dense outputs, in order."""
        return tuple(name for _, name in self._dense_owners)

    @property
    def emb_names(self) -> tuple[str, ...]:
        """Names of the embedding outputs, in order."""
        return tuple(o.name for o in self.layout.embedding)

    @cached_property
    def _dense_owners(self) -> tuple[tuple[str, str], ...]:
        lay = self.layout
        out = list(lay.base_names)
        for o in lay.onehot:
            labels = o.labels or tuple(str(i) for i in range(1, o.cardinality))
            out.append((o.owner, f"{o.name}=<other>"))
            out.extend((o.owner, f"{o.name}={v}") for v in labels)
        out.extend((o.owner, o.name) for o in lay.ordinal)
        return tuple(out)

    def input_signature(self) -> list[dict[str, Any]]:
        """The raw inputs a caller sends, one entry per column, for a model signature."""
        out: list[dict[str, Any]] = []
        for name, s in self.spec.columns.items():
            p = self.params[name]
            if isinstance(s, NumericSpec):
                out.append({"name": name, "kind": "numeric"})
            elif isinstance(s, CategoricalSpec):
                assert isinstance(p, CategoricalParams)
                entry: dict[str, Any] = {"name": name, "kind": "categorical", "encode": s.encode}
                if s.encode == "hashing":
                    entry["hash_buckets"] = s.hash_buckets
                else:
                    entry["vocabulary_size"] = len(p.vocabulary)
                out.append(entry)
            else:
                out.append({"name": name, "kind": "datetime", "parts": list(s.parts)})
        return out

    def describe(self) -> list[dict[str, Any]]:
        """What was done to each input column (and each cross), for the step's report.

        Returns:
            One dict per column, then one per cross, with ``column``, ``kind``
            (numeric/categorical/datetime/cross), ``steps`` (what was done, in order),
            ``summary`` (the steps as one line), ``fitted`` (fill, center, scale,
            clip range, vocabulary size, bucket count, OOV share, training counts ...),
            ``dense_outputs``, ``embedding_outputs`` (name and cardinality) and
            ``outputs`` (every output name).
        """
        lay = self.layout
        dense: dict[str, list[str]] = {}
        for owner, name in self._dense_owners:
            dense.setdefault(owner, []).append(name)
        emb: dict[str, list[dict[str, Any]]] = {}
        for o in lay.embedding:
            emb.setdefault(o.owner, []).append({"name": o.name, "cardinality": o.cardinality})
        rows: list[dict[str, Any]] = []
        for name, s in self.spec.columns.items():
            p = self.params[name]
            row: dict[str, Any] = {"column": name}
            if isinstance(s, NumericSpec):
                assert isinstance(p, NumericParams)
                row.update(describe_numeric(s, p, self.spec.clip))
            elif isinstance(s, CategoricalSpec):
                assert isinstance(p, CategoricalParams)
                row.update(describe_categorical(s, p))
            else:
                assert isinstance(p, DatetimeParams)
                row.update(
                    kind="datetime",
                    steps=[f"UTC parts {', '.join(s.parts)} as {s.encode} indices"],
                    fitted=(
                        {"min_year": p.min_year, "year_span": p.year_span}
                        if "year" in s.parts
                        else {}
                    ),
                )
            row["dense_outputs"] = dense.get(name, [])
            row["embedding_outputs"] = emb.get(name, [])
            rows.append(row)
        for row in rows[: len(self.spec.columns)]:
            row["summary"] = "; ".join(row["steps"])
            row["outputs"] = row["dense_outputs"] + [e["name"] for e in row["embedding_outputs"]]
        for c in self.spec.crosses:
            rows.append(
                {
                    "column": c.name,
                    "kind": "cross",
                    "steps": [f"cross of {', '.join(c.columns)} into {c.buckets} buckets"],
                    "fitted": {"buckets": c.buckets},
                    "dense_outputs": dense.get(c.name, []),
                    "embedding_outputs": emb.get(c.name, []),
                }
            )
            rows[-1]["summary"] = "; ".join(rows[-1]["steps"])
            rows[-1]["outputs"] = rows[-1]["dense_outputs"] + [
                e["name"] for e in rows[-1]["embedding_outputs"]
            ]
        return rows

    # ---- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"version": 2, "spec": ..., "fitted": [per column ...]}``."""
        fitted = [{"column": name, **params_to_dict(p)} for name, p in self.params.items()]
        return {"version": TRANSFORM_VERSION, "spec": self.spec.to_dict(), "fitted": fitted}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FittedTransform:
        """Rebuild a transform from :meth:`to_dict` output (or a version-1 dict).

        Raises:
            SchemaError: the dict is malformed or from a newer kfgpu.
        """
        try:
            version = int(d.get("version", 1))
            if version == 1 or "vocabularies" in d:
                v1_spec, v1_params = read_v1(d)
                return cls(spec=v1_spec, params=v1_params)
            if version != TRANSFORM_VERSION:
                raise SchemaError(
                    f"fitted transform has version {version}, newer than this kfgpu reads "
                    f"({TRANSFORM_VERSION}); upgrade kfgpu"
                )
            spec = FeatureSpec.from_dict(d["spec"])
            params: dict[str, ColumnParams] = {}
            for entry in d["fitted"]:
                params[str(entry["column"])] = params_from_dict(entry)
            # The fitted list fixes the order, whatever a JSON tool did to the spec's keys.
            order = [n for n in params if n in spec.columns]
            if len(order) == len(spec.columns):
                spec = FeatureSpec(
                    columns={n: spec.columns[n] for n in order},
                    crosses=spec.crosses,
                    clip=spec.clip,
                )
            return cls(spec=spec, params=params)
        except SchemaError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SchemaError(
                f"fitted transform is malformed ({e!r}); re-run engineer_features"
            ) from e

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (key order kept: it is the input order)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FittedTransform:
        """Read a transform written by :meth:`save` (any version)."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise SchemaError(
                f"fitted transform {str(path)!r} is not valid JSON ({e.msg}); re-run "
                "engineer_features"
            ) from e
        return cls.from_dict(data)

    # ---- the shared front half: raw frame -> raw arrays --------------------------------
    @cached_property
    def _vocab_index(self) -> dict[str, Any]:
        import pandas as pd

        return {
            n: pd.Index(list(p.vocabulary), dtype=object)
            for n, p in self.params.items()
            if isinstance(p, CategoricalParams)
        }

    def raw_arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Pull the model's raw inputs out of a frame, checking every column.

        Returns:
            ``(num, codes)``: float32 ``[n, len(numeric)]`` with NaN where missing or
            non-finite, and int64 ``[n, len(code_inputs)]`` indices (0 = missing/unseen).

        Raises:
            SchemaError: a column is missing, or a numeric column holds non-numbers.
        """
        import numpy as np

        from kfgpu.features._frame import (
            datetime_part_codes,
            datetime_values,
            hashed_codes,
            numeric_values,
            require_columns,
            vocabulary_codes,
        )

        require_columns(df, self.input_columns)
        lay = self.layout
        n = len(df)
        num = np.empty((n, len(lay.numeric)), dtype=np.float32)
        for j, name in enumerate(lay.numeric):
            num[:, j] = numeric_values(df, name)
        codes = np.zeros((n, len(lay.code_inputs)), dtype=np.int64)
        j = 0
        for name, s in self.spec.columns.items():
            p = self.params[name]
            if isinstance(s, CategoricalSpec):
                assert isinstance(p, CategoricalParams)
                if s.encode == "hashing":
                    codes[:, j] = hashed_codes(df[name], s.hash_buckets, p.fill)
                else:
                    codes[:, j] = vocabulary_codes(df[name], self._vocab_index[name], p.fill)
                j += 1
            elif isinstance(s, DatetimeSpec):
                assert isinstance(p, DatetimeParams)
                ts = datetime_values(df, name)
                for part in s.parts:
                    codes[:, j] = datetime_part_codes(
                        ts, part, min_year=p.min_year, year_span=p.year_span
                    )
                    j += 1
        return num, codes

    @cached_property
    def _vocab_codes(self) -> dict[str, dict[str, int]]:
        return {
            n: {v: i + 1 for i, v in enumerate(p.vocabulary)}
            for n, p in self.params.items()
            if isinstance(p, CategoricalParams)
        }

    def column_arrays(
        self, columns: Mapping[str, Sequence[Any]], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`raw_arrays` of decoded columns, without building a frame.

        ``columns`` maps every input column to ``n`` plain values (numbers, strings, None
        for missing), as a request decoder produces them. The result equals
        ``raw_arrays`` of the same values in a frame: a categorical value is looked up as
        ``str(value)``, a numeric one is NaN where missing or non-finite and capped to
        float32's range.

        Raises:
            SchemaError: a column is missing or holds a value of the wrong kind.
        """
        import numpy as np

        from kfgpu.features._frame import F32_MAX, datetime_part_codes, datetime_values, hash_codes

        missing = [c for c in self.input_columns if c not in columns]
        if missing:
            raise SchemaError(
                f"input is missing column(s) {missing} that the feature transform reads; "
                f"send all of {list(self.input_columns)}"
            )
        lay = self.layout
        nan = float("nan")
        try:
            # One array for every numeric column: one conversion, one clip.
            matrix = np.array(
                [[nan if v is None else v for v in columns[name]] for name in lay.numeric],
                dtype=np.float64,
            ).reshape(len(lay.numeric), n)
        except (TypeError, ValueError, OverflowError) as e:
            bad = (
                next(
                    name
                    for name in lay.numeric
                    if not all(v is None or isinstance(v, (int, float)) for v in columns[name])
                )
                if lay.numeric
                else ""
            )
            raise SchemaError(
                f"column {bad!r} must be numeric; send numbers (or null for missing)"
            ) from e
        with np.errstate(invalid="ignore", over="ignore"):
            num = np.where(
                np.isfinite(matrix), np.clip(matrix, -F32_MAX, F32_MAX), np.nan
            ).T.astype(np.float32)
        codes = np.zeros((n, len(lay.code_inputs)), dtype=np.int64)
        j = 0
        for name, s in self.spec.columns.items():
            p = self.params[name]
            values = columns[name]
            if isinstance(s, CategoricalSpec):
                assert isinstance(p, CategoricalParams)
                if s.encode == "hashing":
                    strings = np.array(
                        [p.fill if v is None else str(v) for v in values], dtype=object
                    )
                    codes[:, j] = hash_codes(strings, s.hash_buckets)
                else:
                    lut = self._vocab_codes[name]
                    fill = lut.get(p.fill, 0) if p.fill is not None else 0
                    codes[:, j] = [fill if v is None else lut.get(str(v), 0) for v in values]
                j += 1
            elif isinstance(s, DatetimeSpec):
                import pandas as pd

                assert isinstance(p, DatetimeParams)
                ts = datetime_values({name: pd.Series(list(values), dtype=object)}, name)
                for part in s.parts:
                    codes[:, j] = datetime_part_codes(
                        ts, part, min_year=p.min_year, year_span=p.year_span
                    )
                    j += 1
        return num, codes

    # ---- the offline back half: NumPy --------------------------------------------------
    def transform_arrays(self, num: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The back half in NumPy (float32): ``(num, codes) -> (dense, emb)``.

        Non-finite ``num`` values are missing; codes outside ``[0, cardinality)`` are 0.
        """
        import numpy as np

        lay = self.layout
        num = np.asarray(num, dtype=np.float32)
        codes = np.asarray(codes, dtype=np.int64)
        check_arrays(num.shape, codes.shape, lay)
        n = num.shape[0]
        f32 = np.float32
        card = np.asarray(lay.code_card, dtype=np.int64)
        codes = np.where((codes < 0) | (codes >= card), 0, codes)
        missing = ~np.isfinite(num)
        # In place, on one float32 copy, and only where a step applies: the same arithmetic
        # as the torch module, without a temporary per step and column.
        y = np.array(num, dtype=f32, copy=True)
        np.copyto(y, np.broadcast_to(np.asarray(lay.fill, f32), y.shape), where=missing)
        lo, hi = np.asarray(lay.lo, f32), np.asarray(lay.hi, f32)
        if np.isfinite(lo).any() or np.isfinite(hi).any():
            np.clip(y, lo, hi, out=y)
        log_cols = np.flatnonzero(np.asarray(lay.log, bool))
        if log_cols.size:
            part = y[:, log_cols]
            y[:, log_cols] = np.sign(part) * np.log1p(np.abs(part))
        y -= np.asarray(lay.center, f32)
        y /= np.asarray(lay.scale, f32)
        clip = np.asarray(lay.outclip, f32)
        np.clip(y, -clip, clip, out=y)
        ind = missing[:, list(lay.indicator_cols)].astype(f32)
        base = np.concatenate([y, ind], axis=1)[:, list(lay.dense_perm)]

        raw = np.where(missing, f32(0), num)
        index: dict[int, np.ndarray] = {}
        for k, o in enumerate(lay.outputs):
            if o.source == "code":
                index[k] = codes[:, o.index]
            elif o.source == "bucket":
                bounds = np.asarray(dict(lay.boundaries)[o.index], dtype=f32)
                b = np.searchsorted(bounds, raw[:, o.index], side="right").astype(np.int64) + 1
                index[k] = np.where(missing[:, o.index], 0, b)
            else:
                comps, buckets = lay.crosses[o.index]
                h = np.zeros(n, dtype=np.int64)
                any_zero = np.zeros(n, dtype=bool)
                for c in comps:
                    col = codes[:, c]
                    any_zero |= col == 0
                    h = (h * CROSS_PRIME + col % CROSS_MOD) % CROSS_MOD
                index[k] = np.where(any_zero, 0, 1 + h % buckets)

        blocks = [base]
        width = sum(o.cardinality for o in lay.onehot)
        if width:
            oh = np.zeros((n, width), dtype=f32)
            rows = np.arange(n)
            offset = 0
            for k, o in enumerate(lay.outputs):
                if o.encode == "onehot":
                    oh[rows, offset + index[k]] = 1.0
                    offset += o.cardinality
            blocks.append(oh)
        ordinal = [index[k].astype(f32) for k, o in enumerate(lay.outputs) if o.encode == "ordinal"]
        if ordinal:
            blocks.append(np.stack(ordinal, axis=1))
        dense = np.concatenate(blocks, axis=1).astype(f32, copy=False)
        emb_cols = [index[k] for k, o in enumerate(lay.outputs) if o.encode == "embedding"]
        emb = np.stack(emb_cols, axis=1) if emb_cols else np.zeros((n, 0), dtype=np.int64)
        return dense, emb

    def transform(
        self, df: pd.DataFrame, *, chunk_rows: int = 262_144
    ) -> tuple[np.ndarray, np.ndarray]:
        """The offline path: raw frame -> ``(dense, emb)``.

        Large frames are processed ``chunk_rows`` at a time into preallocated outputs, so
        the intermediates never exceed one chunk's worth of memory.
        """
        import numpy as np

        if len(df) <= chunk_rows:
            return self.transform_arrays(*self.raw_arrays(df))
        dense = np.empty((len(df), self.n_dense), dtype=np.float32)
        emb = np.empty((len(df), len(self.cardinalities)), dtype=np.int64)
        for start in range(0, len(df), chunk_rows):
            sl = slice(start, start + chunk_rows)
            dense[sl], emb[sl] = self.transform_arrays(*self.raw_arrays(df.iloc[sl]))
        return dense, emb

    # ---- the served back half: torch ---------------------------------------------------
    def to_module(self) -> torch.nn.Module:
        """The same arithmetic as :meth:`transform_arrays` as a torch module:
        ``forward(num, codes) -> (dense, emb)``."""
        from kfgpu.features._torch import TransformModule

        return TransformModule(self)


# ---- entry points -------------------------------------------------------------------------


def fit_transform(
    data: pd.DataFrame | Iterable[pd.DataFrame], spec: FeatureSpec
) -> FittedTransform:
    """Fit a :class:`FeatureSpec` on (training) data in one streaming pass.

    Args:
        data: a frame, or an iterable of chunks (read once).
        spec: what to fit.

    Raises:
        SchemaError: a spec column is missing or a numeric column holds non-numbers.
        EmptyDataError: there are no rows.
    """
    from kfgpu.features.stats import fit_stats

    return FittedTransform.from_stats(spec, fit_stats(data, spec))


def fit_source(
    uri: str,
    spec: FeatureSpec | None = None,
    *,
    target: str,
    chunk_rows: int = 250_000,
) -> FittedTransform:
    """Fit a spec on a data source in bounded memory.

    A local Parquet file (or directory of them) is streamed one row group at a time
    (``ParquetFile.iter_batches(row_groups=[g])``), a CSV/TSV in ``chunk_rows`` chunks;
    anything else is read whole (:func:`kfgpu.data.read_table`).

    Args:
        uri: a path or URI.
        spec: what to fit; None infers one from the first non-empty chunk.
        target: the label column, never a feature.
        chunk_rows: rows per streamed chunk.

    Raises:
        ConfigError: ``chunk_rows`` is not positive, or the spec uses the target.
        DataError: the source cannot be read, has no rows or lacks a spec column.
    """
    from kfgpu.data.shards import prefetched
    from kfgpu.features.stats import fit_stats
    from kfgpu.validation.profile import iter_source

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    if spec is not None and target in spec.columns:
        raise ConfigError(
            f"the feature spec uses target {target!r} as a feature; remove it from the spec"
        )
    # The next chunks are read and decoded in a thread while this one is sketched.
    chunks = prefetched(iter_source(uri, chunk_rows), depth=1)
    head: list[pd.DataFrame] = []
    for chunk in chunks:
        head.append(chunk)
        if len(chunk):
            break
    if not head or not any(len(c) for c in head):
        raise EmptyDataError(f"data source {uri!r} has no rows; pass a non-empty table")
    if spec is None:
        spec = infer_feature_spec(head[-1], target)
    return FittedTransform.from_stats(spec, fit_stats(itertools.chain(head, chunks), spec))
