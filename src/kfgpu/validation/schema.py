"""Infer a table's schema and statistics (the SchemaGen half of the validation stage).

A :class:`Schema` records, per column, its kind, dtype, null fraction and summary
statistics, plus the target column, the task it implies and the label distribution. It
round-trips through JSON (:meth:`Schema.to_json` / :meth:`Schema.read_json`) so a schema
inferred from a reference data set can be pinned and later data validated against it.

pandas is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import DataNotFoundError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_CLASSIFICATION_CLASSES",
    "MAX_DOMAIN_SIZE",
    "SCHEMA_VERSION",
    "ColumnKind",
    "ColumnSchema",
    "Schema",
    "TaskKind",
    "column_kind",
    "infer_schema",
    "infer_task",
    "label_distribution",
    "stringify",
]

ColumnKind = Literal["numeric", "categorical", "boolean", "datetime"]
TaskKind = Literal["classification", "regression"]

#: Version written into every serialised schema; :meth:`Schema.from_dict` refuses newer ones.
SCHEMA_VERSION = 1
#: At most this many of a categorical column's most frequent values are kept as its domain.
MAX_DOMAIN_SIZE = 1000
#: An integer-valued numeric target with at most this many distinct values is a class label.
MAX_CLASSIFICATION_CLASSES = 20

_KINDS: tuple[str, ...] = get_args(ColumnKind)
_TASKS: tuple[str, ...] = get_args(TaskKind)
_QUANTILES: tuple[tuple[str, float], ...] = (("p01", 0.01), ("p50", 0.50), ("p99", 0.99))


@dataclass(frozen=True)
class ColumnSchema:
    """Schema and statistics of one column.

    Attributes:
        name: column name (always a string; non-string names are stringified).
        kind: ``"numeric"``, ``"categorical"``, ``"boolean"`` or ``"datetime"``.
        dtype: the pandas dtype, as a string (``"int64"``, ``"object"`` ...).
        nullable: whether the column held any null.
        null_fraction: fraction of rows that are null (0.0 for an empty table).
        n_unique: number of distinct non-null values (stringified for categorical columns).
        min: smallest finite value (numeric only).
        max: largest finite value (numeric only).
        mean: mean of the finite values (numeric only).
        std: population standard deviation of the finite values (numeric only).
        quantiles: ``{"p01", "p50", "p99"}`` of the finite values (numeric only).
        domain: value -> count of the ``MAX_DOMAIN_SIZE`` most frequent values, values
            stringified (categorical and boolean only). The domain is complete when
            ``len(domain) == n_unique``.
    """

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool
    null_fraction: float
    n_unique: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = None
    domain: dict[str, int] | None = None

    @property
    def domain_complete(self) -> bool:
        """Whether :attr:`domain` holds every value seen (False when truncated or absent)."""
        return self.domain is not None and len(self.domain) >= self.n_unique

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of this column's fields."""
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "nullable": self.nullable,
            "null_fraction": self.null_fraction,
            "n_unique": self.n_unique,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "quantiles": None if self.quantiles is None else dict(self.quantiles),
            "domain": None if self.domain is None else dict(self.domain),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "column") -> ColumnSchema:
        """Build a column schema from :meth:`to_dict` output.

        Args:
            data: the mapping.
            where: how to name this column in error messages (``"columns[3]"``).

        Raises:
            SchemaError: a field is missing or has a value of the wrong kind.
        """
        if not isinstance(data, dict):
            raise SchemaError(
                f"schema field {where!r} is {type(data).__name__}, expected an object; "
                "regenerate the schema with kfgpu.validation.infer_schema"
            )
        try:
            name = data["name"]
            kind = data["kind"]
            dtype = data["dtype"]
            nullable = data["nullable"]
            null_fraction = data["null_fraction"]
            n_unique = data["n_unique"]
        except KeyError as e:
            raise SchemaError(
                f"schema field '{where}.{e.args[0]}' is missing; "
                "regenerate the schema with kfgpu.validation.infer_schema"
            ) from e
        if not isinstance(name, str) or not name:
            raise SchemaError(
                f"schema field '{where}.name' is {name!r}, expected a non-empty string"
            )
        if kind not in _KINDS:
            raise SchemaError(
                f"schema field '{where}.kind' of column {name!r} is {kind!r}; "
                f"expected one of {', '.join(_KINDS)}"
            )
        try:
            return cls(
                name=name,
                kind=kind,
                dtype=str(dtype),
                nullable=bool(nullable),
                null_fraction=float(null_fraction),
                n_unique=int(n_unique),
                min=_opt_float(data.get("min")),
                max=_opt_float(data.get("max")),
                mean=_opt_float(data.get("mean")),
                std=_opt_float(data.get("std")),
                quantiles=_opt_mapping(data.get("quantiles"), float),
                domain=_opt_mapping(data.get("domain"), int),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise SchemaError(
                f"schema field {where!r} (column {name!r}) has a value of the wrong type: {e}; "
                "regenerate the schema with kfgpu.validation.infer_schema"
            ) from e


@dataclass(frozen=True)
class Schema:
    """Schema of a table: its columns in order, the target and the task it implies.

    Attributes:
        columns: one :class:`ColumnSchema` per column, in table order.
        n_rows: number of rows of the table the schema was inferred from.
        target: name of the target column, or None.
        task: ``"classification"`` or ``"regression"`` for the target, or None.
        label_distribution: class (stringified) -> count, for a classification target.
        version: serialisation format version.
    """

    columns: tuple[ColumnSchema, ...]
    n_rows: int = 0
    target: str | None = None
    task: TaskKind | None = None
    label_distribution: dict[str, int] | None = None
    version: int = field(default=SCHEMA_VERSION)

    @property
    def names(self) -> list[str]:
        """Column names, in table order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema | None:
        """Return the schema of column ``name``, or None if the schema has no such column."""
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping (columns stay in table order)."""
        return {
            "version": self.version,
            "n_rows": self.n_rows,
            "target": self.target,
            "task": self.task,
            "label_distribution": (
                None if self.label_distribution is None else dict(self.label_distribution)
            ),
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        """Build a schema from :meth:`to_dict` output.

        Raises:
            SchemaError: the mapping is not a schema kfgpu wrote, or is from a newer kfgpu.
        """
        if not isinstance(data, dict):
            raise SchemaError(
                f"schema is {type(data).__name__}, expected an object; "
                "regenerate it with kfgpu.validation.infer_schema"
            )
        version = data.get("version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SchemaError(
                f"schema field 'version' is {version!r}; this kfgpu reads versions up to "
                f"{SCHEMA_VERSION}; upgrade kfgpu or regenerate the schema"
            )
        columns = data.get("columns")
        if not isinstance(columns, list):
            raise SchemaError(
                f"schema field 'columns' is {columns!r:.80}, expected a list of columns; "
                "regenerate the schema with kfgpu.validation.infer_schema"
            )
        cols = tuple(
            ColumnSchema.from_dict(c, where=f"columns[{i}]") for i, c in enumerate(columns)
        )
        task = data.get("task")
        if task is not None and task not in _TASKS:
            raise SchemaError(
                f"schema field 'task' is {task!r}; expected one of {', '.join(_TASKS)} or null"
            )
        target = data.get("target")
        if target is not None and not isinstance(target, str):
            raise SchemaError(f"schema field 'target' is {target!r}, expected a string or null")
        try:
            labels = _opt_mapping(data.get("label_distribution"), int)
            n_rows = int(data.get("n_rows", 0))
        except (TypeError, ValueError, AttributeError) as e:
            raise SchemaError(
                f"schema field 'label_distribution' or 'n_rows' has a value of the wrong type: "
                f"{e}; regenerate the schema with kfgpu.validation.infer_schema"
            ) from e
        return cls(
            columns=cols,
            n_rows=n_rows,
            target=target,
            task=task,
            label_distribution=labels,
            version=version,
        )

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the schema as JSON (sorted keys, indent 2, trailing newline) to ``path``.

        Parent folders are created.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False)
        p.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def read_json(cls, path: str | os.PathLike[str]) -> Schema:
        """Read a schema written by :meth:`to_json`.

        Raises:
            DataNotFoundError: ``path`` does not exist.
            SchemaError: the file is not valid JSON or not a schema.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise DataNotFoundError(
                f"schema file {str(p)!r} does not exist; pass the path a validation run wrote "
                "with Schema.to_json"
            ) from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(
                f"schema file {str(p)!r} is not valid JSON ({e.msg} at line {e.lineno}); "
                "regenerate it with kfgpu.validation.infer_schema"
            ) from e
        return cls.from_dict(data)


def column_kind(series: pd.Series) -> ColumnKind:
    """Return the kind of a column from its dtype.

    bool dtypes are ``"boolean"``; real numeric dtypes are ``"numeric"``; datetime dtypes
    (with or without a time zone) are ``"datetime"``; everything else (object, string,
    category, complex, timedelta ...) is ``"categorical"``.
    """
    from pandas.api import types as pdt

    dtype = series.dtype
    if pdt.is_bool_dtype(dtype):
        return "boolean"
    if pdt.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pdt.is_numeric_dtype(dtype) and not pdt.is_complex_dtype(dtype):
        return "numeric"
    return "categorical"


def infer_task(series: pd.Series) -> TaskKind:
    """Infer the learning task implied by a target column.

    Non-numeric or boolean targets are classification; an integer-valued numeric target
    with at most ``MAX_CLASSIFICATION_CLASSES`` distinct values is classification; any other
    numeric target is regression.
    """
    import numpy as np

    if column_kind(series) != "numeric":
        return "classification"
    values = _finite_values(series)
    if values.size != int(series.notna().sum()):
        return "regression"  # infinities are not class labels
    if not np.all(np.mod(values, 1.0) == 0.0):
        return "regression"
    n_distinct = int(np.unique(values).size)
    return "classification" if n_distinct <= MAX_CLASSIFICATION_CLASSES else "regression"


def infer_schema(df: pd.DataFrame, target: str | None = None) -> Schema:
    """Infer the schema and statistics of a table.

    Args:
        df: the table. Non-string column names are stringified.
        target: name of the target column, or None for a table without one.

    Returns:
        The schema. With a target, ``task`` is inferred with :func:`infer_task` and, for
        classification, ``label_distribution`` counts each class.

    Raises:
        SchemaError: ``target`` is not a column of ``df``.
    """
    names = [str(c) for c in df.columns]
    if target is not None and target not in names:
        shown = ", ".join(names[:20]) + (
            f" ... and {len(names) - 20} more" if len(names) > 20 else ""
        )
        raise SchemaError(
            f"target column {target!r} not found in the table's {len(names)} columns "
            f"({shown or 'none'}); pass a target that is one of them"
        )
    n_rows = len(df)
    columns = tuple(_column_schema(name, df.iloc[:, i], n_rows) for i, name in enumerate(names))
    task: TaskKind | None = None
    labels: dict[str, int] | None = None
    if target is not None:
        series = df.iloc[:, names.index(target)]
        task = infer_task(series)
        if task == "classification":
            labels = label_distribution(series)
    return Schema(
        columns=columns, n_rows=n_rows, target=target, task=task, label_distribution=labels
    )


def label_distribution(series: pd.Series) -> dict[str, int]:
    """Count each class of a target column (nulls left out), classes stringified.

    Integer-valued floats are written without the ``.0`` (``1.0`` -> ``"1"``). The mapping is
    ordered by count, most frequent first, ties by class.
    """
    keys = series.dropna().map(_label_key)
    return _ordered_counts(keys)


# --- helpers --------------------------------------------------------------------------------


def _column_schema(name: str, series: pd.Series, n_rows: int) -> ColumnSchema:
    kind = column_kind(series)
    null_count = int(series.isna().sum())
    null_fraction = null_count / n_rows if n_rows else 0.0
    base: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "dtype": str(series.dtype),
        "nullable": null_count > 0,
        "null_fraction": float(null_fraction),
    }
    if kind == "numeric":
        import numpy as np

        values = _finite_values(series)
        n_unique = int(series.nunique(dropna=True))
        if values.size == 0:
            return ColumnSchema(**base, n_unique=n_unique)
        qs = np.quantile(values, [q for _, q in _QUANTILES])
        return ColumnSchema(
            **base,
            n_unique=n_unique,
            min=float(values.min()),
            max=float(values.max()),
            mean=float(values.mean()),
            std=float(values.std()),
            quantiles={k: float(v) for (k, _), v in zip(_QUANTILES, qs, strict=True)},
        )
    if kind == "datetime":
        return ColumnSchema(**base, n_unique=int(series.nunique(dropna=True)))
    # categorical and boolean: count stringified values
    strings = stringify(series)
    counts = _ordered_counts(strings)
    domain = dict(list(counts.items())[:MAX_DOMAIN_SIZE])
    return ColumnSchema(**base, n_unique=len(counts), domain=domain)


def stringify(series: pd.Series) -> pd.Series:
    """Return the non-null values of ``series`` as strings.

    Works for values pandas cannot hash or compare (lists, dicts, mixed types): each value is
    passed through ``str``, and one whose ``__str__`` fails is written as its type name.
    """
    import pandas as pd

    values = series[series.notna()]
    try:
        return values.astype(str).astype(object)
    except Exception:  # a value whose __str__ fails: fall back to one value at a time
        return pd.Series([_safe_str(v) for v in values], index=values.index, dtype=object)


def _safe_str(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # a broken __str__ must not stop validation
        return f"<{type(value).__name__}>"


def _label_key(value: object) -> str:
    import numpy as np

    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return _safe_str(value)


def _ordered_counts(strings: pd.Series) -> dict[str, int]:
    """Count string values: most frequent first, ties by value (stable across runs)."""
    counts = strings.astype(object).value_counts(dropna=True, sort=False)
    pairs = ((str(k), int(v)) for k, v in counts.items())
    return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def _finite_values(series: pd.Series) -> Any:
    import numpy as np

    arr = series.to_numpy(dtype=float, na_value=np.nan)
    return arr[np.isfinite(arr)]


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _opt_mapping(value: Any, cast: type) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return {str(k): cast(v) for k, v in value.items()}
