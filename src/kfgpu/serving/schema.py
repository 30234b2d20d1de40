"""Strict decoding of prediction requests into the bundle's raw input columns.

The served model reads the raw columns the fitted transform reads (its input signature).
This module turns a V1 body (``instances`` as records or as lists in signature order) or
the tensors of a V2 (Open Inference Protocol) request into :class:`Rows`: one list of
values per column. Every check names the field, the value and the fix, and raises
:class:`~kfgpu.errors.RequestError` (the server answers 400, or 413 for too many rows):

* every column present once, no unknown ones; records and lists of the right length;
* numeric columns hold numbers (booleans count); categorical and datetime columns hold
  strings or numbers, never objects or lists; datetimes must parse;
* a missing value (null, NaN, ±inf) only where the column may be missing: a numeric
  column with a missing indicator or with missing values in training, a categorical
  column with missing values in training or an imputation other than ``oov``, any
  datetime column (its parts code a missing timestamp as 0);
* V2: one tensor per column, shape ``[n]`` or ``[n, 1]``, the same ``n`` for all,
  BYTES for categorical and datetime columns, a numeric datatype for numeric ones;
* at least one row and at most ``max_rows``.

No torch, no kserve: the same rules serve tests, batch tools and the predictor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kfgpu.errors import RequestError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.features.transform import FittedTransform

__all__ = [
    "NUMERIC_DATATYPES",
    "InputField",
    "RequestSchema",
    "Rows",
    "smoke_instance",
]

Kind = Literal["numeric", "categorical", "datetime"]

#: V2 datatypes a numeric column accepts.
NUMERIC_DATATYPES = frozenset(
    {
        "BOOL",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "FP16",
        "FP32",
        "FP64",
    }
)
_NUMBER_TYPES = (int, float)
_SCALAR_TYPES = (str, int, float)
_FLOAT_INT = 2**1023


@dataclass(frozen=True)
class InputField:
    """One raw input column.

    Attributes:
        name: the column name (V1 record key, V2 tensor name).
        kind: ``numeric``, ``categorical`` or ``datetime``.
        nullable: whether a missing value is accepted.
    """

    name: str
    kind: Kind
    nullable: bool

    @property
    def v2_datatype(self) -> str:
        """The datatype this column's V2 tensor is advertised with."""
        return "FP64" if self.kind == "numeric" else "BYTES"


@dataclass
class Rows:
    """Validated raw values of one request: column -> values (None for missing)."""

    columns: dict[str, list[Any]]
    n: int
    meta: dict[str, Any] = field(default_factory=dict)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class RequestSchema:
    """The raw inputs one bundle accepts, and the request checks.

    Build with :meth:`from_transform`.
    """

    fields: tuple[InputField, ...]
    max_rows: int = 10_000

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise RequestError(f"max_rows={self.max_rows!r} is invalid; use an integer >= 1")

    @classmethod
    def from_transform(cls, transform: FittedTransform, *, max_rows: int = 10_000) -> RequestSchema:
        """The request schema of a fitted transform (its raw input columns, in order)."""
        from kfgpu.features.spec import CategoricalSpec, NumericSpec

        fields: list[InputField] = []
        for name, spec in transform.spec.columns.items():
            summary = getattr(transform.params[name], "summary", {}) or {}
            seen_missing = bool(summary.get("missing", 0))
            if isinstance(spec, NumericSpec):
                fields.append(InputField(name, "numeric", spec.missing_indicator or seen_missing))
            elif isinstance(spec, CategoricalSpec):
                fields.append(InputField(name, "categorical", seen_missing or spec.impute != "oov"))
            else:
                fields.append(InputField(name, "datetime", True))
        return cls(fields=tuple(fields), max_rows=max_rows)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    # ---- shared checks -------------------------------------------------------------------
    def _check_rows(self, n: int, where: str) -> None:
        if n == 0:
            raise RequestError(f"{where} is empty; send at least one row", field=where, status=400)
        if n > self.max_rows:
            raise RequestError(
                f"{where} has {n} rows; this server takes at most {self.max_rows} per request "
                "(--max-rows): split the batch, or use batch_predict for bulk scoring",
                field=where,
                status=413,
            )

    def _value(self, f: InputField, v: Any, where: str) -> Any:
        """One checked value (None for missing)."""
        if f.kind == "numeric":
            if type(v) in _NUMBER_TYPES or isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    return self._missing(f, v, where)
                if type(v) is int and not -_FLOAT_INT <= v <= _FLOAT_INT:
                    raise RequestError(
                        f"{where} is {_show(v)}, beyond what a float64 holds; send a number "
                        "within ±1.8e308",
                        field=where,
                    )
                return v
            if v is None:
                return self._missing(f, v, where)
            if isinstance(v, _NUMBER_TYPES) or getattr(getattr(v, "dtype", None), "kind", "") in (
                "i",
                "u",
                "f",
                "b",
            ):  # int/float subclasses and numpy scalars (in-process callers)
                fv = float(v)
                return fv if math.isfinite(fv) else self._missing(f, v, where)
            raise RequestError(
                f"{where} must be a number, got {_show(v)}; send a JSON number"
                + (" or null" if f.nullable else ""),
                field=where,
            )
        if v is None:
            return self._missing(f, v, where)
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RequestError(f"{where} is not valid UTF-8; send text", field=where) from e
        if isinstance(v, float) and not math.isfinite(v):
            return self._missing(f, v, where)
        if isinstance(v, _SCALAR_TYPES):
            return v
        raise RequestError(
            f"{where} must be a {'string' if f.kind == 'categorical' else 'timestamp string'}, "
            f"got {type(v).__name__} {_show(v)}",
            field=where,
        )

    def _missing(self, f: InputField, v: Any, where: str) -> None:
        if f.nullable:
            return None
        raise RequestError(
            f"{where} is {_show(v)} (missing), but {f.name!r} had no missing values in training "
            f"and has no missing indicator; send a {'number' if f.kind == 'numeric' else 'value'}",
            field=where,
        )

    def _absent(self, f: InputField, where: str, what: str) -> None:
        """A key or tensor left out: a missing value, refused like null where not nullable."""
        if not f.nullable:
            raise RequestError(
                f"{where} is missing ({what} not sent), but {f.name!r} had no missing values "
                f"in training and has no missing indicator; send a "
                f"{'number' if f.kind == 'numeric' else 'value'} (this model reads "
                f"{list(self.names)})",
                field=where,
            )

    def _check_datetimes(self, rows: Rows, where: str) -> None:
        import pandas as pd

        for f in self.fields:
            if f.kind != "datetime":
                continue
            values = rows.columns[f.name]
            ts = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
            bad = ts.isna().to_numpy() & pd.Series(values, dtype=object).notna().to_numpy()
            if bad.any():
                i = int(bad.argmax())
                raise RequestError(
                    f"{where.format(i=i, name=f.name)} is {_show(values[i])}, not a timestamp; "
                    "send ISO 8601 text such as '2026-01-31T12:00:00Z'",
                    field=f.name,
                )

    # ---- V1 ------------------------------------------------------------------------------
    def parse_v1(self, body: Any) -> Rows:
        """``{"instances": [...]}`` -> rows; records (objects keyed by column) or lists in
        signature order, all rows of one kind."""
        if not isinstance(body, Mapping):
            raise RequestError(
                f"the request body must be a JSON object, got {type(body).__name__}; send "
                '{"instances": [...]}',
                field="body",
            )
        if "instances" not in body:
            raise RequestError(
                'field "instances" is missing; send {"instances": [{...}, ...]}'
                + (f" (got fields {sorted(map(str, body))})" if body else ""),
                field="instances",
            )
        extra = sorted(str(k) for k in body if k != "instances")
        if extra:
            raise RequestError(
                f"unknown field {extra[0]!r} in the request body; V1 takes only "
                '"instances" (records or lists)',
                field=extra[0],
            )
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RequestError(
                f'"instances" must be a list of rows, got {type(instances).__name__}',
                field="instances",
            )
        n = len(instances)
        self._check_rows(n, "instances")
        fields = self.fields
        cols: dict[str, list[Any]] = {f.name: [None] * n for f in fields}
        lists = [cols[f.name] for f in fields]
        names = set(self.names)
        first = instances[0]
        if isinstance(first, Mapping):
            for i, rec in enumerate(instances):
                if not isinstance(rec, Mapping):
                    raise RequestError(
                        f"instances[{i}] is a {type(rec).__name__}; every instance must be a "
                        "record like instances[0]",
                        field=f"instances[{i}]",
                    )
                if len(rec) != len(fields) or rec.keys() != names:
                    unknown = sorted(str(k) for k in rec if k not in names)
                    if unknown:
                        raise RequestError(
                            f"instances[{i}] has unknown field {unknown[0]!r}; this model reads "
                            f"only {list(self.names)}",
                            field=f"instances[{i}].{unknown[0]}",
                        )
                    # A missing key is a missing value: accepted where null is.
                    for f, out in zip(fields, lists, strict=True):
                        if f.name in rec:
                            out[i] = self._value(f, rec[f.name], f"instances[{i}].{f.name}")
                        else:
                            self._absent(f, f"instances[{i}].{f.name}", f"field {f.name!r}")
                    continue
                for f, out in zip(fields, lists, strict=True):
                    out[i] = self._value(f, rec[f.name], f"instances[{i}].{f.name}")
        elif isinstance(first, list):
            width = len(fields)
            for i, row in enumerate(instances):
                if not isinstance(row, list):
                    raise RequestError(
                        f"instances[{i}] is a {type(row).__name__}; every instance must be a "
                        "list like instances[0]",
                        field=f"instances[{i}]",
                    )
                if len(row) != width:
                    raise RequestError(
                        f"instances[{i}] has {len(row)} values; send {width}, in the order "
                        f"{list(self.names)}",
                        field=f"instances[{i}]",
                    )
                for j, (f, out) in enumerate(zip(fields, lists, strict=True)):
                    out[i] = self._value(f, row[j], f"instances[{i}][{j}] ({f.name})")
        else:
            raise RequestError(
                f"instances[0] is a {type(first).__name__}; send each row as a record "
                f"(object keyed by column) or a list of {len(fields)} values",
                field="instances[0]",
            )
        rows = Rows(columns=cols, n=n)
        self._check_datetimes(rows, "instances[{i}].{name}")
        return rows

    # ---- V2 ------------------------------------------------------------------------------
    def parse_v2(self, inputs: Sequence[Any]) -> Rows:
        """V2 input tensors (objects with ``name``, ``datatype``, ``shape``, ``data``) ->
        rows; one tensor per column."""
        import numpy as np

        seen: dict[str, Any] = {}
        by_name = {f.name: f for f in self.fields}
        for t in inputs:
            name = str(t.name)
            if name in seen:
                raise RequestError(f"input tensor {name!r} is sent twice", field=f"inputs.{name}")
            if name not in by_name:
                raise RequestError(
                    f"unknown input tensor {name!r}; this model takes one tensor per column: "
                    f"{list(self.names)}",
                    field=f"inputs.{name}",
                )
            seen[name] = t
        if not seen:
            raise RequestError(
                f"the request has no input tensors; send one tensor per column: {list(self.names)}",
                field="inputs",
            )
        for c in self.names:
            # A tensor left out is a column of missing values: accepted where null is.
            if c not in seen:
                self._absent(by_name[c], f"inputs.{c}", f"input tensor {c!r}")
        n: int | None = None
        cols: dict[str, list[Any]] = {}
        for f in self.fields:
            if f.name not in seen:
                continue
            t = seen[f.name]
            where = f"inputs.{f.name}"
            shape = list(t.shape or [])
            if (
                len(shape) not in (1, 2)
                or not all(type(d) is int and d >= 0 for d in shape)
                or (len(shape) == 2 and shape[1] != 1)
            ):
                raise RequestError(
                    f"{where} has shape {shape}; send shape [n] or [n, 1] (one value per row)",
                    field=where,
                )
            if n is None:
                n = shape[0]
                self._check_rows(n, where)
            elif shape[0] != n:
                raise RequestError(
                    f"{where} has {shape[0]} rows but {self.fields[0].name!r} has {n}; send "
                    "the same number of rows in every tensor",
                    field=where,
                )
            dtype = str(t.datatype).upper()
            if f.kind == "numeric" and dtype not in NUMERIC_DATATYPES:
                raise RequestError(
                    f"{where} has datatype {dtype}; {f.name!r} is numeric: send FP32, FP64 "
                    "or INT64",
                    field=where,
                )
            if f.kind != "numeric" and dtype != "BYTES":
                raise RequestError(
                    f"{where} has datatype {dtype}; {f.name!r} is {f.kind}: send BYTES "
                    "(UTF-8 strings)",
                    field=where,
                )
            data = t.data
            if isinstance(data, np.ndarray):
                flat = data.reshape(-1).tolist()
            else:
                try:
                    arr = np.asarray(data if data is not None else [], dtype=object)
                except ValueError as e:
                    raise RequestError(
                        f"{where} data is ragged; send {n} values", field=where
                    ) from e
                flat = arr.reshape(-1).tolist()
            if len(flat) != n:
                raise RequestError(
                    f"{where} holds {len(flat)} values but its shape {shape} says {n}; send "
                    "one value per row",
                    field=where,
                )
            if f.kind == "numeric" and not isinstance(data, np.ndarray):
                _check_datatype_values(flat, dtype, where)
            cols[f.name] = [self._value(f, v, f"{where}[{i}]") for i, v in enumerate(flat)]
        assert n is not None
        for c in self.names:
            if c not in cols:
                cols[c] = [None] * n
        rows = Rows(columns={c: cols[c] for c in self.names}, n=n)
        self._check_datetimes(rows, "inputs.{name}[{i}]")
        return rows

    # ---- to the transform's input -----------------------------------------------------
    def merged(self, parts: Sequence[Rows]) -> tuple[dict[str, list[Any]], int]:
        """The columns of one or more requests, concatenated in order, and their rows."""
        if len(parts) == 1:
            return parts[0].columns, parts[0].n
        cols = {f.name: [v for p in parts for v in p.columns[f.name]] for f in self.fields}
        return cols, sum(p.n for p in parts)

    # ---- to a frame ----------------------------------------------------------------------
    def frame(self, parts: Sequence[Rows]) -> pd.DataFrame:
        """One raw frame from the rows of one or more requests, in order."""
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {}
        for f in self.fields:
            if len(parts) == 1:
                values = parts[0].columns[f.name]
            else:
                values = [v for p in parts for v in p.columns[f.name]]
            if f.kind == "numeric":
                data[f.name] = np.array(values, dtype=np.float64)
            else:
                data[f.name] = np.array(values, dtype=object)
        return pd.DataFrame(data)


#: Inclusive value range of each V2 integer datatype.
_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}


def _check_datatype_values(flat: Sequence[Any], dtype: str, where: str) -> None:
    """JSON tensor values must be what the datatype says: integers in range for INT*/UINT*,
    booleans for BOOL, numbers (or null) for FP*."""
    bounds = _INT_RANGES.get(dtype)
    for i, v in enumerate(flat):
        if v is None:
            continue
        if dtype == "BOOL":
            ok = isinstance(v, bool)
        elif isinstance(v, bool):
            ok = False
        elif bounds is not None:
            ok = isinstance(v, int) and bounds[0] <= v <= bounds[1]
        else:
            ok = isinstance(v, (int, float))
        if not ok:
            want = (
                "true or false"
                if dtype == "BOOL"
                else f"integers in [{bounds[0]}, {bounds[1]}]"
                if bounds is not None
                else "numbers"
            )
            raise RequestError(
                f"{where}[{i}] is {_show(v)}, not a valid {dtype} value; send {want} in a {dtype} "
                "tensor (or declare the datatype that fits the values)",
                field=where,
            )


def smoke_instance(transform: FittedTransform) -> dict[str, Any]:
    """One valid V1 record for this transform: numeric fill values, the first vocabulary
    entry (or a constant for hashing), a fixed timestamp. For warm-up and smoke requests."""
    from kfgpu.features.transform import CategoricalParams, NumericParams

    rec: dict[str, Any] = {}
    for name in transform.spec.columns:
        p = transform.params[name]
        if isinstance(p, NumericParams):
            rec[name] = float(p.fill)
        elif isinstance(p, CategoricalParams):
            rec[name] = p.vocabulary[0] if p.vocabulary else (p.fill or "x")
        else:
            rec[name] = "2026-01-01T00:00:00Z"
    return rec
