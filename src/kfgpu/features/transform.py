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
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kfgpu.errors import ConfigError, EmptyDataError, SchemaError
from kfgpu.features.spec import (
    DEFAULT_CLIP,
    CategoricalSpec,
    ColumnSpec,
    DatetimeSpec,
    FeatureSpec,
    NumericSpec,
    infer_feature_spec,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from kfgpu.features.stats import FeatureStats
    from kfgpu.validation.profile import NumericSketch

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

#: float32's largest finite value: the "no clip" bound (raw values are capped to it).
_F32_MAX = 3.4028234663852886e38

#: Crosses combine component indices as ``h = (h * _CROSS_PRIME + c) % _CROSS_MOD``: every
#: intermediate stays below 2**52, so int64 arithmetic never wraps, in NumPy or torch.
_CROSS_PRIME = 1_000_003
_CROSS_MOD = 2_147_483_647

#: Quantile grid for the moments of a quantile-clipped column (see _clipped_moments).
_GRID = 4096


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class NumericParams:
    """Fitted values of a numeric column.

    ``y = clip((g(clip(impute(x), clip_low, clip_high)) - center) / scale)`` with ``g`` =
    ``sign(x) * log1p(|x|)`` for ``scale="log1p"``, else the identity.

    Attributes:
        fill: replaces missing and non-finite raw values.
        clip_low: raw values are clipped from below to this (``-3.4e38``: no clip).
        clip_high: raw values are clipped from above to this.
        center: subtracted after the optional log.
        scale: divides after centring (never 0).
        boundaries: bucket boundaries (float32-exact), None when not bucketized.
        summary: training statistics for reports (count, missing, mean, std, min, max).
    """

    fill: float
    clip_low: float = -_F32_MAX
    clip_high: float = _F32_MAX
    center: float = 0.0
    scale: float = 1.0
    boundaries: tuple[float, ...] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = (self.fill, self.clip_low, self.clip_high, self.center, self.scale)
        if not all(math.isfinite(v) for v in values) or self.scale == 0:
            raise SchemaError(
                f"fitted transform is malformed (numeric parameters {values}); re-run "
                "engineer_features"
            )


@dataclass(frozen=True)
class CategoricalParams:
    """Fitted values of a categorical column.

    Attributes:
        vocabulary: kept values; value ``i`` maps to index ``i + 1`` (empty for hashing).
        fill: the value missing values take (None: they map to index 0).
        summary: training statistics for reports (count, missing, distinct, oov_share).
    """

    vocabulary: tuple[str, ...] = ()
    fill: str | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatetimeParams:
    """Fitted values of a datetime column: the year code's range.

    Attributes:
        min_year: the year with code 1.
        year_span: years coded (later years take the last code).
    """

    min_year: int = 1970
    year_span: int = 1


ColumnParams = NumericParams | CategoricalParams | DatetimeParams
_PARAM_TYPES: dict[type, type] = {
    NumericSpec: NumericParams,
    CategoricalSpec: CategoricalParams,
    DatetimeSpec: DatetimeParams,
}


@dataclass(frozen=True)
class _Output:
    """One integer-index output of the back half."""

    name: str
    owner: str  # the input column (or cross name) it comes from
    source: Literal["code", "bucket", "cross"]
    index: int  # code column, numeric column or cross number
    cardinality: int
    encode: Literal["embedding", "onehot", "ordinal"]
    labels: tuple[str, ...] = ()  # names of indices 1.. for one-hot column names


@dataclass(frozen=True)
class _Layout:
    """Everything both back halves need, as plain tuples."""

    numeric: tuple[str, ...]
    code_inputs: tuple[str, ...]
    code_sources: tuple[tuple[str, str | None], ...]
    code_card: tuple[int, ...]
    fill: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    log: tuple[bool, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    outclip: tuple[float, ...]
    indicator_cols: tuple[int, ...]
    dense_perm: tuple[int, ...]
    boundaries: tuple[tuple[int, tuple[float, ...]], ...]
    crosses: tuple[tuple[tuple[int, ...], int], ...]
    outputs: tuple[_Output, ...]
    base_names: tuple[tuple[str, str], ...]  # (owner, name) of the numeric dense block

    @property
    def onehot(self) -> tuple[_Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "onehot")

    @property
    def ordinal(self) -> tuple[_Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "ordinal")

    @property
    def embedding(self) -> tuple[_Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "embedding")


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
            if not isinstance(self.params[name], _PARAM_TYPES[type(s)]):
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
                params[name] = _fit_numeric(
                    s, stats.numeric[name], stats.log1p.get(name), spec.clip
                )
            elif isinstance(s, CategoricalSpec):
                params[name] = _fit_categorical(s, stats.categorical[name].to_dict())
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
    def _layout(self) -> _Layout:
        return _build_layout(self.spec, self.params)

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
        return self._layout.numeric

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
        return self._layout.code_inputs

    @property
    def n_dense(self) -> int:
        """Width of the dense output."""
        return len(self.dense_names)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Table size of each embedding output (index 0 = missing/unseen included)."""
        return tuple(o.cardinality for o in self._layout.embedding)

    @cached_property
    def dense_names(self) -> tuple[str, ...]:
        """Names of the dense outputs, in order."""
        return tuple(name for _, name in self._dense_owners)

    @property
    def emb_names(self) -> tuple[str, ...]:
        """Names of the embedding outputs, in order."""
        return tuple(o.name for o in self._layout.embedding)

    @cached_property
    def _dense_owners(self) -> tuple[tuple[str, str], ...]:
        lay = self._layout
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
        lay = self._layout
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
                row.update(_describe_numeric(s, p, self.spec.clip))
            elif isinstance(s, CategoricalSpec):
                assert isinstance(p, CategoricalParams)
                row.update(_describe_categorical(s, p))
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
        fitted: list[dict[str, Any]] = []
        for name, p in self.params.items():
            if isinstance(p, NumericParams):
                d: dict[str, Any] = {
                    "kind": "numeric",
                    "fill": p.fill,
                    "clip_low": p.clip_low,
                    "clip_high": p.clip_high,
                    "center": p.center,
                    "scale": p.scale,
                    "boundaries": None if p.boundaries is None else list(p.boundaries),
                    "summary": dict(p.summary),
                }
            elif isinstance(p, CategoricalParams):
                d = {
                    "kind": "categorical",
                    "vocabulary": list(p.vocabulary),
                    "fill": p.fill,
                    "summary": dict(p.summary),
                }
            else:
                d = {"kind": "datetime", "min_year": p.min_year, "year_span": p.year_span}
            fitted.append({"column": name, **d})
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
                return _from_v1(d)
            if version != TRANSFORM_VERSION:
                raise SchemaError(
                    f"fitted transform has version {version}, newer than this kfgpu reads "
                    f"({TRANSFORM_VERSION}); upgrade kfgpu"
                )
            spec = FeatureSpec.from_dict(d["spec"])
            params: dict[str, ColumnParams] = {}
            for entry in d["fitted"]:
                name = str(entry["column"])
                kind = entry["kind"]
                if kind == "numeric":
                    b = entry.get("boundaries")
                    params[name] = NumericParams(
                        fill=float(entry["fill"]),
                        clip_low=float(entry["clip_low"]),
                        clip_high=float(entry["clip_high"]),
                        center=float(entry["center"]),
                        scale=float(entry["scale"]),
                        boundaries=None if b is None else tuple(float(x) for x in b),
                        summary=dict(entry.get("summary") or {}),
                    )
                elif kind == "categorical":
                    fill = entry.get("fill")
                    params[name] = CategoricalParams(
                        vocabulary=tuple(str(v) for v in entry["vocabulary"]),
                        fill=None if fill is None else str(fill),
                        summary=dict(entry.get("summary") or {}),
                    )
                elif kind == "datetime":
                    params[name] = DatetimeParams(
                        min_year=int(entry["min_year"]), year_span=int(entry["year_span"])
                    )
                else:
                    raise ValueError(f"unknown column kind {kind!r}")
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
        lay = self._layout
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
        lay = self._layout
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

        lay = self._layout
        num = np.asarray(num, dtype=np.float32)
        codes = np.asarray(codes, dtype=np.int64)
        _check_arrays(num.shape, codes.shape, lay)
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
                    h = (h * _CROSS_PRIME + col % _CROSS_MOD) % _CROSS_MOD
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


# ---- fitting helpers ----------------------------------------------------------------------


def _g(x: np.ndarray, log: bool) -> np.ndarray:
    import numpy as np

    return np.sign(x) * np.log1p(np.abs(x)) if log else x


def _fit_numeric(
    s: NumericSpec, sk: NumericSketch, log_sk: NumericSketch | None, clip: float
) -> NumericParams:
    import numpy as np

    n = sk.count
    n_miss = sk.total - n
    has = n > 0
    if s.impute == "mean":
        fill = sk.mean if has else 0.0
    elif s.impute == "median":
        fill = float(sk.quantile(0.5)) if has else 0.0
    elif s.impute == "constant":
        fill = float(s.fill_value or 0.0)
    else:
        fill = 0.0
    lo, hi = -_F32_MAX, _F32_MAX
    if s.clip_quantiles is not None and has:
        lo, hi = (float(v) for v in sk.quantile(list(s.clip_quantiles)))
    log = s.scale == "log1p"
    fill_c = float(_g(np.asarray(min(max(fill, lo), hi)), log))  # the fill, as scaled
    center, scale = 0.0, 1.0
    if s.scale in ("standard", "log1p"):
        if not has:
            center = fill_c
        else:
            if s.clip_quantiles is not None:
                m_obs, m2_obs = _clipped_moments(sk, lo, hi, log)
            else:
                src = log_sk if log and log_sk is not None else sk
                m_obs, m2_obs = src.mean, src.m2
            total = n + n_miss
            center = (n * m_obs + n_miss * fill_c) / total
            m2 = m2_obs + (n * n_miss * (m_obs - fill_c) ** 2 / total)
            std = math.sqrt(max(m2, 0.0) / total)
            scale = std if std > 1e-12 * max(1.0, abs(center)) else 1.0
    elif s.scale == "minmax":
        mn, mx = (max(sk.min, lo), min(sk.max, hi)) if has else (fill_c, fill_c)
        if n_miss:
            mn, mx = min(mn, fill_c), max(mx, fill_c)
        center = mn
        scale = mx - mn if mx - mn > 1e-12 * max(1.0, abs(mn)) else 1.0
    elif s.scale == "robust":
        if has:
            med, q1, q3 = np.clip(sk.quantile([0.5, 0.25, 0.75]), lo, hi)
            center = float(med)
            iqr = float(q3 - q1)
            scale = iqr if iqr > 1e-12 * max(1.0, abs(center)) else 1.0
        else:
            center = fill_c
    boundaries: tuple[float, ...] | None = None
    if s.boundaries is not None:
        boundaries = tuple(float(v) for v in np.unique(np.asarray(s.boundaries, np.float32)))
    elif s.bucketize > 0:
        if has:
            qs = sk.quantile(np.arange(1, s.bucketize) / s.bucketize)
            boundaries = tuple(float(v) for v in np.unique(np.asarray(qs, np.float32)))
        else:
            boundaries = ()
    summary = {
        "count": n,
        "missing": n_miss,
        "mean": _finite_or_none(sk.mean),
        "std": _finite_or_none(sk.std),
        "min": _finite_or_none(sk.min),
        "max": _finite_or_none(sk.max),
    }
    return NumericParams(
        fill=float(fill),
        clip_low=float(lo),
        clip_high=float(hi),
        center=float(center),
        scale=float(scale),
        boundaries=boundaries,
        summary=summary,
    )


def _clipped_moments(sk: NumericSketch, lo: float, hi: float, log: bool) -> tuple[float, float]:
    """Mean and sum of squared deviations of ``g(clip(x, lo, hi))`` over the finite values.

    Integrates over the sketch's quantile function on a midpoint grid of ``_GRID`` points:
    each quantile is within the sketch's relative accuracy, so the moments are too (plus a
    discretisation error of order ``1 / _GRID``).
    """
    import numpy as np

    u = (np.arange(_GRID) + 0.5) / _GRID
    v = _g(np.clip(np.asarray(sk.quantile(u), dtype=np.float64), lo, hi), log)
    mean = float(v.mean())
    return mean, float(((v - mean) ** 2).mean()) * sk.count


def _fit_categorical(s: CategoricalSpec, counts: Mapping[str, Any]) -> CategoricalParams:
    values: list[str] = counts["values"]  # most frequent first, ties by value
    freq: list[int] = counts["counts"]
    non_null = sum(freq) + int(counts["other_count"])
    if s.encode == "hashing":
        vocab: tuple[str, ...] = ()
        kept = non_null
    else:
        pairs = [(v, c) for v, c in zip(values, freq, strict=True) if c >= s.min_frequency]
        pairs = pairs[: s.max_categories]
        vocab = tuple(v for v, _ in pairs)
        kept = sum(c for _, c in pairs)
    fill: str | None = None
    if s.impute == "most_frequent" and values:
        fill = values[0]
    elif s.impute == "constant":
        fill = s.fill_value
        if s.encode != "hashing" and fill is not None and fill not in vocab:
            vocab = (*vocab, fill)
    summary = {
        "count": non_null,
        "missing": int(counts["null_count"]),
        "distinct": len(values),
        "distinct_truncated": bool(counts["truncated"]),
        "oov_share": (1.0 - kept / non_null) if non_null else 0.0,
    }
    return CategoricalParams(vocabulary=vocab, fill=fill, summary=summary)


def _build_layout(spec: FeatureSpec, params: Mapping[str, ColumnParams]) -> _Layout:
    from kfgpu.features._frame import PART_CARDINALITY

    numeric: list[str] = []
    fill: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    log: list[bool] = []
    center: list[float] = []
    scale: list[float] = []
    outclip: list[float] = []
    indicators: list[int] = []
    boundaries: list[tuple[int, tuple[float, ...]]] = []
    code_inputs: list[str] = []
    code_sources: list[tuple[str, str | None]] = []
    code_card: list[int] = []
    outputs: list[_Output] = []
    for name, s in spec.columns.items():
        p = params[name]
        if isinstance(s, NumericSpec):
            assert isinstance(p, NumericParams)
            j = len(numeric)
            numeric.append(name)
            fill.append(p.fill)
            lo.append(p.clip_low)
            hi.append(p.clip_high)
            log.append(s.scale == "log1p")
            center.append(p.center)
            scale.append(p.scale)
            outclip.append(_F32_MAX if s.scale == "none" else spec.clip)
            if s.missing_indicator:
                indicators.append(j)
            if p.boundaries is not None:
                boundaries.append((j, p.boundaries))
                outputs.append(
                    _Output(
                        f"{name}__bucket",
                        name,
                        "bucket",
                        j,
                        len(p.boundaries) + 2,
                        s.bucket_encode,
                    )
                )
        elif isinstance(s, CategoricalSpec):
            assert isinstance(p, CategoricalParams)
            card = s.hash_buckets + 1 if s.encode == "hashing" else len(p.vocabulary) + 1
            encode: Literal["embedding", "onehot", "ordinal"] = (
                "embedding" if s.encode == "hashing" else s.encode
            )
            outputs.append(
                _Output(name, name, "code", len(code_inputs), card, encode, p.vocabulary)
            )
            code_inputs.append(name)
            code_sources.append((name, None))
            code_card.append(card)
        else:
            assert isinstance(p, DatetimeParams)
            for part in s.parts:
                card = p.year_span + 1 if part == "year" else PART_CARDINALITY[part]
                outputs.append(
                    _Output(f"{name}__{part}", name, "code", len(code_inputs), card, s.encode)
                )
                code_inputs.append(f"{name}__{part}")
                code_sources.append((name, part))
                code_card.append(card)
    crosses: list[tuple[tuple[int, ...], int]] = []
    for i, c in enumerate(spec.crosses):
        comps = []
        for comp in c.columns:
            resolved = spec.resolve_component(comp)
            assert resolved is not None  # FeatureSpec checked it
            comps.append(code_sources.index(resolved))
        crosses.append((tuple(comps), c.buckets))
        outputs.append(_Output(c.name, c.name, "cross", i, c.buckets + 1, c.encode))
    k = len(numeric)
    perm: list[int] = []
    base_names: list[tuple[str, str]] = []
    for j, name in enumerate(numeric):
        perm.append(j)
        base_names.append((name, name))
        if j in indicators:
            perm.append(k + indicators.index(j))
            base_names.append((name, f"{name}__missing"))
    return _Layout(
        numeric=tuple(numeric),
        code_inputs=tuple(code_inputs),
        code_sources=tuple(code_sources),
        code_card=tuple(code_card),
        fill=tuple(fill),
        lo=tuple(lo),
        hi=tuple(hi),
        log=tuple(log),
        center=tuple(center),
        scale=tuple(scale),
        outclip=tuple(outclip),
        indicator_cols=tuple(indicators),
        dense_perm=tuple(perm),
        boundaries=tuple(boundaries),
        crosses=tuple(crosses),
        outputs=tuple(outputs),
        base_names=tuple(base_names),
    )


def _check_arrays(num_shape: tuple[int, ...], codes_shape: tuple[int, ...], lay: _Layout) -> None:
    k, c = len(lay.numeric), len(lay.code_inputs)
    if len(num_shape) != 2 or num_shape[1] != k or len(codes_shape) != 2 or codes_shape[1] != c:
        raise SchemaError(
            f"transform inputs have shapes {num_shape} and {codes_shape}; expected "
            f"[n, {k}] numerics and [n, {c}] codes as raw_arrays returns them"
        )
    if num_shape[0] != codes_shape[0]:
        raise SchemaError(
            f"transform inputs disagree on rows ({num_shape[0]} numeric, {codes_shape[0]} "
            "codes); pass both arrays from one raw_arrays call"
        )


def _describe_numeric(s: NumericSpec, p: NumericParams, clip: float) -> dict[str, Any]:
    steps = [f"impute missing with {s.impute} = {p.fill:.6g}"]
    if s.missing_indicator:
        steps.append("add a missing indicator")
    if s.clip_quantiles is not None:
        steps.append(
            f"clip to quantiles {list(s.clip_quantiles)} = [{p.clip_low:.6g}, {p.clip_high:.6g}]"
        )
    steps.append(
        {
            "standard": f"standardise: (x - {p.center:.6g}) / {p.scale:.6g}",
            "log1p": f"sign(x)*log1p(|x|), standardise: (x - {p.center:.6g}) / {p.scale:.6g}",
            "minmax": f"min-max: (x - {p.center:.6g}) / {p.scale:.6g}",
            "robust": f"robust: (x - median {p.center:.6g}) / IQR {p.scale:.6g}",
            "none": "no scaling",
        }[s.scale]
    )
    if s.scale != "none":
        steps.append(f"clip to ±{clip:g}")
    fitted: dict[str, Any] = {
        "fill": p.fill,
        "center": p.center,
        "scale": p.scale,
        **{k: v for k, v in p.summary.items()},
    }
    if s.clip_quantiles is not None:
        fitted["clip_range"] = [p.clip_low, p.clip_high]
    if p.boundaries is not None:
        steps.append(f"bucket into {len(p.boundaries) + 1} buckets ({s.bucket_encode})")
        fitted["buckets"] = len(p.boundaries) + 1
        fitted["boundaries"] = list(p.boundaries)
    return {"kind": "numeric", "steps": steps, "fitted": fitted}


def _describe_categorical(s: CategoricalSpec, p: CategoricalParams) -> dict[str, Any]:
    if s.encode == "hashing":
        steps = [f"hash into {s.hash_buckets} buckets"]
        fitted: dict[str, Any] = {"hash_buckets": s.hash_buckets}
    else:
        steps = [
            f"vocabulary of {len(p.vocabulary)} values (min_frequency {s.min_frequency}, "
            f"max {s.max_categories}); others -> 0",
            f"encode {s.encode}",
        ]
        fitted = {"vocabulary_size": len(p.vocabulary)}
    if s.impute != "oov":
        steps.insert(0, f"impute missing with {s.impute} = {p.fill!r}")
    fitted["fill"] = p.fill
    fitted.update(p.summary)
    return {"kind": "categorical", "steps": steps, "fitted": fitted}


def _from_v1(d: Mapping[str, Any]) -> FittedTransform:
    """A version-1 dict (flat numeric/fill/mean/scale + categorical/vocabularies) as v2."""
    numeric = [str(n) for n in d["numeric"]]
    fills = [float(x) for x in d["fill"]]
    means = [float(x) for x in d["mean"]]
    scales = [float(x) for x in d["scale"]]
    categorical = [str(n) for n in d["categorical"]]
    vocabularies = [tuple(str(v) for v in voc) for voc in d["vocabularies"]]
    if not (len(numeric) == len(fills) == len(means) == len(scales)) or len(categorical) != len(
        vocabularies
    ):
        raise ValueError("numeric/fill/mean/scale and categorical/vocabularies lengths differ")
    columns: dict[str, ColumnSpec] = {n: NumericSpec() for n in numeric}
    params: dict[str, ColumnParams] = {
        n: NumericParams(fill=f, center=m, scale=s)
        for n, f, m, s in zip(numeric, fills, means, scales, strict=True)
    }
    for name, voc in zip(categorical, vocabularies, strict=True):
        columns[name] = CategoricalSpec(max_categories=max(1, len(voc)))
        params[name] = CategoricalParams(vocabulary=voc)
    spec = FeatureSpec(columns=columns, clip=float(d.get("clip", DEFAULT_CLIP)))
    return FittedTransform(spec=spec, params=params)


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
    from kfgpu.features.stats import fit_stats
    from kfgpu.validation.profile import _iter_source

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    if spec is not None and target in spec.columns:
        raise ConfigError(
            f"the feature spec uses target {target!r} as a feature; remove it from the spec"
        )
    chunks = _iter_source(uri, chunk_rows)
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
