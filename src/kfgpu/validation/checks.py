"""Validate a table before training (the ExampleValidator half of the validation stage).

:func:`validate` runs a list of checks over a :class:`CheckContext` and collects their
:class:`Anomaly` objects into a :class:`ValidationResult`. A check is any callable taking a
:class:`CheckContext` and returning a list of anomalies, so adding one means writing a small
function and appending it to :data:`DEFAULT_CHECKS` (or passing ``checks=`` to
:func:`validate`).

Error-level anomalies make the table unusable for training (``result.ok`` is False and
:meth:`ValidationResult.raise_for_errors` raises); warnings are reported but let the
pipeline go on.

The default checks, by the anomaly name they report:

* errors: ``unique_column_names``, ``target_present``, ``non_empty``, ``has_features``,
  ``target_not_null``, ``class_count``, ``target_kind``, ``schema_missing_column``,
  ``schema_kind_mismatch``, ``label_leakage`` (one feature predicts the target almost
  perfectly on held-out rows);
* warnings: ``target_nulls``, ``rare_classes``, ``schema_extra_column``, ``null_fraction``,
  ``all_null`` (a feature with no value), ``constant_feature``, ``infinite_values``
  (+/-inf in a numeric column), ``mixed_types`` (numbers and text in one column),
  ``high_cardinality`` (an ID-like categorical feature), ``duplicate_rows``,
  ``schema_unseen_categories``, ``schema_out_of_range``.

Errors raised while reading a table (:class:`kfgpu.errors.DataError`) carry the anomaly
name in ``.check`` (``not_found``, ``binary_content``, ``encoding``, ``parse``, ``empty``
...), so a report can file read failures under the same names.

Thresholds are keyword options of :func:`validate`, gathered in :class:`ValidationOptions`.

pandas is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError, ValidationError
from kfgpu.validation.schema import (
    Schema,
    TaskKind,
    column_kind,
    infer_schema,
    infer_task,
    label_distribution,
    stringify,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "DEFAULT_CHECKS",
    "LEAKAGE_BINS",
    "LEAKAGE_MIN_ROWS",
    "LEAKAGE_SEED",
    "MAX_LISTED_COLUMNS",
    "Anomaly",
    "Check",
    "CheckContext",
    "Severity",
    "TaskOption",
    "ValidationOptions",
    "ValidationResult",
    "check_all_null",
    "check_class_count",
    "check_constant_features",
    "check_duplicate_rows",
    "check_has_features",
    "check_high_cardinality",
    "check_infinite_values",
    "check_label_leakage",
    "check_mixed_types",
    "check_non_empty",
    "check_null_fraction",
    "check_rare_classes",
    "check_schema_columns",
    "check_schema_kinds",
    "check_schema_ranges",
    "check_target_kind",
    "check_target_nulls",
    "check_target_present",
    "check_unique_column_names",
    "check_unseen_categories",
    "validate",
]

Severity = Literal["error", "warning"]
TaskOption = Literal["auto", "classification", "regression"]

#: How many available columns a "target missing" message lists.
MAX_LISTED_COLUMNS = 20
#: The leakage check needs at least this many rows with a target.
LEAKAGE_MIN_ROWS = 50
#: The leakage check cuts a numeric feature into at most this many quantile bins.
LEAKAGE_BINS = 32
#: Seed of the permutation that splits rows into the leakage check's fit and score halves.
LEAKAGE_SEED = 0

_TASK_OPTIONS: tuple[str, ...] = get_args(TaskOption)
#: The leakage check scores only when at least two classes have this many held-out rows.
_LEAKAGE_MIN_CLASS_ROWS = 5
_MAX_EXAMPLES = 3


@dataclass(frozen=True)
class ValidationOptions:
    """Thresholds of the default checks (the keyword options of :func:`validate`).

    Attributes:
        max_null_fraction: a feature with a larger null fraction draws a ``null_fraction``
            warning; in [0, 1].
        max_unseen_fraction: a categorical column with a larger fraction of values outside
            the pinned domain draws a ``schema_unseen_categories`` warning; in [0, 1].
        leakage_threshold: a feature whose held-out score (balanced accuracy, or R^2 for
            regression) reaches this draws a ``label_leakage`` error; > 0, and 1.0 or more
            turns the check off.
        max_categories: a categorical feature with more distinct values than this (and
            more than ``max_category_fraction`` of its non-null rows) draws a
            ``high_cardinality`` warning; a whole number >= 1.
        max_category_fraction: see ``max_categories``; in [0, 1].

    Raises:
        ConfigError: an option has an unusable value; the message names it.
    """

    max_null_fraction: float = 0.5
    max_unseen_fraction: float = 0.0
    leakage_threshold: float = 0.99
    max_categories: int = 50
    max_category_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_null_fraction", "max_unseen_fraction", "max_category_fraction"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} is {value!r}; pass a number between 0 and 1")
        t = self.leakage_threshold
        if not (_is_number(t) and t > 0.0):
            raise ConfigError(
                f"leakage_threshold is {t!r}; pass a number above 0 (e.g. 0.99); 1.0 or more "
                "turns the leakage check off"
            )
        k = self.max_categories
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ConfigError(f"max_categories is {k!r}; pass a whole number of at least 1")


def _is_number(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and not math.isnan(float(value))
    )


@dataclass(frozen=True)
class Anomaly:
    """One finding of one check.

    Attributes:
        column: the column it concerns, or None for the whole table.
        check: name of the check that found it (``"target_present"``, ``"null_fraction"`` ...).
        severity: ``"error"`` (the table cannot be used) or ``"warning"``.
        message: one line saying what is wrong, with the value and how to fix it.
        value: the measured value (a count, a fraction, a list of values), JSON-ready.
    """

    column: str | None
    check: str
    severity: Severity
    message: str
    value: object = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of this anomaly."""
        return {
            "column": self.column,
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
        }

    def one_line(self) -> str:
        """Return ``column: message`` on one line (``table`` when no column)."""
        text = " ".join(self.message.split())
        return f"{self.column if self.column is not None else 'table'}: {text}"


@dataclass(frozen=True)
class CheckContext:
    """Everything a check may look at.

    Attributes:
        df: the table, with column names as strings.
        target: name of the target column (may be missing from ``df``).
        task: the task the target is validated for, or None when the target is missing.
        stats: schema and statistics inferred from ``df``.
        pinned: the schema the table must match, or None.
        max_null_fraction: a feature with a larger null fraction draws a warning (wins over
            ``options.max_null_fraction``, which is set to it).
        options: every threshold of the default checks.
    """

    df: pd.DataFrame
    target: str
    task: TaskKind | None
    stats: Schema
    pinned: Schema | None
    max_null_fraction: float
    options: ValidationOptions = field(default_factory=ValidationOptions)

    def __post_init__(self) -> None:
        if self.options.max_null_fraction != self.max_null_fraction:
            synced = replace(self.options, max_null_fraction=self.max_null_fraction)
            object.__setattr__(self, "options", synced)

    @property
    def has_target(self) -> bool:
        """Whether the target column is in the table."""
        return self.target in self.stats

    @property
    def features(self) -> list[str]:
        """Names of the feature columns (every column but the target), in table order."""
        return [n for n in self.stats.names if n != self.target]

    def series(self, name: str) -> pd.Series:
        """Return column ``name`` (the first one, if the name is duplicated)."""
        return self.df.iloc[:, self.stats.names.index(name)]


Check = Callable[[CheckContext], list[Anomaly]]
"""A check: takes the context, returns its anomalies (empty when all is well)."""


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of :func:`validate`.

    Attributes:
        schema: the pinned schema when one was given, else the one inferred from the table.
        statistics: schema and statistics inferred from the validated table.
        anomalies: every anomaly found, errors and warnings, in check order.
        target: name of the target column.
        task: the task the target was validated for (None when the target is missing).
    """

    schema: Schema
    statistics: Schema
    anomalies: tuple[Anomaly, ...]
    target: str
    task: TaskKind | None

    @property
    def errors(self) -> list[Anomaly]:
        """Error-level anomalies."""
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        """Warning-level anomalies."""
        return [a for a in self.anomalies if a.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no error-level anomaly was found (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of the whole result."""
        return {
            "ok": self.ok,
            "target": self.target,
            "task": self.task,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "anomalies": [a.to_dict() for a in self.anomalies],
            "schema": self.schema.to_dict(),
            "statistics": self.statistics.to_dict(),
        }

    def raise_for_errors(self) -> None:
        """Raise if any error-level anomaly was found.

        Raises:
            ValidationError: one line listing every error as ``column: message`` joined by
                ``"; "``; ``.anomalies`` holds each error as a mapping.
        """
        errors = self.errors
        if not errors:
            return
        listed = "; ".join(a.one_line() for a in errors)
        raise ValidationError(
            f"data validation found {len(errors)} error(s): {listed}",
            [a.to_dict() for a in errors],
        )


# --- checks ---------------------------------------------------------------------------------


def _fmt(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_unique_column_names(ctx: CheckContext) -> list[Anomaly]:
    """Error: two columns share a name (after stringifying)."""
    seen: dict[str, int] = {}
    for n in ctx.stats.names:
        seen[n] = seen.get(n, 0) + 1
    dups = sorted(n for n, k in seen.items() if k > 1)
    return [
        Anomaly(
            n,
            "unique_column_names",
            "error",
            f"column name {n!r} appears {seen[n]} times; rename the columns so every name "
            "is unique",
            seen[n],
        )
        for n in dups
    ]


def check_target_present(ctx: CheckContext) -> list[Anomaly]:
    """Error: the target column is not in the table."""
    if ctx.has_target:
        return []
    names = ctx.stats.names
    shown = ", ".join(names[:MAX_LISTED_COLUMNS])
    if len(names) > MAX_LISTED_COLUMNS:
        shown += f" (and {len(names) - MAX_LISTED_COLUMNS} more)"
    if names:
        fix = f"pass --target with one of {shown}"
        available = f"available columns ({len(names)}): {shown}"
    else:
        fix = "pass data that has a target column"
        available = "the table has no columns"
    return [
        Anomaly(
            ctx.target,
            "target_present",
            "error",
            f"target column {ctx.target!r} not found; {available}; {fix}",
            names[:MAX_LISTED_COLUMNS],
        )
    ]


def check_non_empty(ctx: CheckContext) -> list[Anomaly]:
    """Error: the table has no rows."""
    if ctx.stats.n_rows > 0:
        return []
    return [
        Anomaly(
            None,
            "non_empty",
            "error",
            f"the table has 0 rows (columns: {len(ctx.stats.columns)}); point the data path "
            "at a table with rows",
            0,
        )
    ]


def check_has_features(ctx: CheckContext) -> list[Anomaly]:
    """Error: no column is left to learn from besides the target."""
    if ctx.features:
        return []
    return [
        Anomaly(
            None,
            "has_features",
            "error",
            f"the table has no feature columns besides the target {ctx.target!r}; "
            "add feature columns to the data",
            0,
        )
    ]


def check_target_nulls(ctx: CheckContext) -> list[Anomaly]:
    """Error when the target is entirely null; warning when some rows have a null target."""
    n_rows = ctx.stats.n_rows
    if not ctx.has_target or n_rows == 0:
        return []
    n_null = int(ctx.series(ctx.target).isna().sum())
    if n_null == n_rows:
        return [
            Anomaly(
                ctx.target,
                "target_not_null",
                "error",
                f"target {ctx.target!r} is null in all {n_rows} rows; pass --target with a "
                "column that has labels, or fix the data",
                n_null,
            )
        ]
    if n_null:
        return [
            Anomaly(
                ctx.target,
                "target_nulls",
                "warning",
                f"target {ctx.target!r} is null in {n_null} of {n_rows} rows "
                f"({n_null / n_rows:.1%}); those rows will be dropped before training",
                n_null,
            )
        ]
    return []


def _labels(ctx: CheckContext) -> dict[str, int] | None:
    if not ctx.has_target or ctx.task != "classification":
        return None
    return ctx.stats.label_distribution


def check_class_count(ctx: CheckContext) -> list[Anomaly]:
    """Error: a classification target has fewer than 2 classes (but some labels)."""
    labels = _labels(ctx)
    if not labels or len(labels) >= 2:
        return []
    ((value, count),) = labels.items()
    return [
        Anomaly(
            ctx.target,
            "class_count",
            "error",
            f"classification target {ctx.target!r} has a single class {value!r} "
            f"({count} rows); classification needs at least 2 classes; add examples of "
            "other classes or set task=regression (kfgpu run --param task=regression)",
            {value: count},
        )
    ]


def check_rare_classes(ctx: CheckContext) -> list[Anomaly]:
    """Warning: some classes have fewer than 2 examples (a stratified split cannot hold them)."""
    labels = _labels(ctx)
    if not labels or len(labels) < 2:
        return []
    rare = {k: v for k, v in labels.items() if v < 2}
    if not rare:
        return []
    shown = ", ".join(repr(k) for k in list(rare)[:10]) + (" ..." if len(rare) > 10 else "")
    return [
        Anomaly(
            ctx.target,
            "rare_classes",
            "warning",
            f"{len(rare)} class(es) of target {ctx.target!r} have fewer than 2 examples "
            f"({shown}); a stratified split cannot place them; add examples or merge classes",
            rare,
        )
    ]


def check_target_kind(ctx: CheckContext) -> list[Anomaly]:
    """Error: a regression target that is not numeric."""
    if not ctx.has_target or ctx.task != "regression":
        return []
    col = ctx.stats.column(ctx.target)
    if col is None or col.kind == "numeric":
        return []
    return [
        Anomaly(
            ctx.target,
            "target_kind",
            "error",
            f"regression target {ctx.target!r} is {col.kind} (dtype {col.dtype}), not numeric; "
            "set task=classification (kfgpu run --param task=classification) or convert the column to numbers",
            col.kind,
        )
    ]


def check_null_fraction(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature's null fraction is above ``max_null_fraction``."""
    out = []
    for name in ctx.features:
        col = ctx.stats.column(name)
        if col is None or col.null_fraction <= ctx.max_null_fraction:
            continue
        out.append(
            Anomaly(
                name,
                "null_fraction",
                "warning",
                f"feature {name!r} is null in {col.null_fraction:.1%} of rows, above "
                f"max_null_fraction={ctx.max_null_fraction:g}; impute it, drop it, or raise "
                "max_null_fraction",
                round(col.null_fraction, 6),
            )
        )
    return out


def check_constant_features(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature has exactly one distinct non-null value (none: see all_null)."""
    if ctx.stats.n_rows == 0:
        return []
    out = []
    for name in ctx.features:
        col = ctx.stats.column(name)
        if col is None or col.n_unique != 1:
            continue  # n_unique == 0: no value at all, reported by check_all_null
        value: object
        if col.domain:
            only = next(iter(col.domain))
            what = f"has the single value {_fmt(only)}"
            value = only
        else:
            only = ctx.series(name).dropna().iloc[0]
            what = f"has the single value {_fmt(only)}"
            value = _fmt(only)
        out.append(
            Anomaly(
                name,
                "constant_feature",
                "warning",
                f"feature {name!r} {what}; it carries no signal; drop it",
                value,
            )
        )
    return out


def check_duplicate_rows(ctx: CheckContext) -> list[Anomaly]:
    """Warning: some rows are exact duplicates of an earlier row."""
    df = ctx.df
    if len(df) < 2 or df.shape[1] == 0:
        return []
    try:
        n_dup = int(df.duplicated().sum())
    except TypeError:  # unhashable cells (lists, dicts): compare their string forms
        n_dup = int(df.astype(str).duplicated().sum())
    if not n_dup:
        return []
    return [
        Anomaly(
            None,
            "duplicate_rows",
            "warning",
            f"{n_dup} of {len(df)} rows ({n_dup / len(df):.1%}) duplicate an earlier row; "
            "deduplicate the data if they are not genuine repeats",
            n_dup,
        )
    ]


def check_schema_columns(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: error for a missing column, warning for an extra one."""
    if ctx.pinned is None:
        return []
    have = set(ctx.stats.names)
    pinned = set(ctx.pinned.names)
    out = [
        Anomaly(
            name,
            "schema_missing_column",
            "error",
            f"column {name!r} of the pinned schema is missing from the data; add it to the "
            "data or regenerate the schema",
            None,
        )
        for name in ctx.pinned.names
        if name not in have
    ]
    out += [
        Anomaly(
            name,
            "schema_extra_column",
            "warning",
            f"column {name!r} is not in the pinned schema; it will be treated as a new "
            "feature; drop it or regenerate the schema",
            None,
        )
        for name in ctx.stats.names
        if name not in pinned
    ]
    return out


def check_schema_kinds(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: error when a column's kind differs."""
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if got is None or got.kind == want.kind:
            continue
        out.append(
            Anomaly(
                want.name,
                "schema_kind_mismatch",
                "error",
                f"column {want.name!r} is {got.kind} (dtype {got.dtype}) but the pinned schema "
                f"says {want.kind} (dtype {want.dtype}); fix the column's type or regenerate "
                "the schema",
                {"expected": want.kind, "actual": got.kind},
            )
        )
    return out


def check_unseen_categories(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: warning when categorical values are outside the domain.

    Warns when the fraction of non-null values outside the pinned domain is above
    ``options.max_unseen_fraction`` (0 by default: any unseen value). Skipped for a column whose pinned domain was truncated (more than ``MAX_DOMAIN_SIZE``
    values), where a value missing from it may still have been seen.
    """
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if (
            got is None
            or want.kind not in ("categorical", "boolean")
            or got.kind != want.kind
            or not want.domain_complete
        ):
            continue
        values = stringify(ctx.series(want.name))
        if values.empty:
            continue
        domain = set(want.domain or {})
        unseen_mask = ~values.isin(domain)
        n_unseen = int(unseen_mask.sum())
        fraction = n_unseen / len(values)
        limit = ctx.options.max_unseen_fraction
        if not n_unseen or fraction <= limit:
            continue
        examples = sorted(set(values[unseen_mask]))[:5]
        above = f" (above max_unseen_fraction={limit:g})" if limit > 0 else ""
        out.append(
            Anomaly(
                want.name,
                "schema_unseen_categories",
                "warning",
                f"{fraction:.1%} of non-null values of {want.name!r} ({n_unseen}) are not in "
                f"the pinned domain{above}, e.g. {', '.join(_fmt(v, 30) for v in examples)}; "
                "the model has not seen them; regenerate the schema if they are expected",
                round(fraction, 6),
            )
        )
    return out


def check_schema_ranges(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: warning when numeric values fall outside its min/max."""
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if (
            got is None
            or want.kind != "numeric"
            or got.kind != "numeric"
            or want.min is None
            or want.max is None
        ):
            continue
        s = ctx.series(want.name)
        below = int((s < want.min).sum())
        above = int((s > want.max).sum())
        if not (below or above):
            continue
        n = int(s.notna().sum())
        out.append(
            Anomaly(
                want.name,
                "schema_out_of_range",
                "warning",
                f"{below + above} of {n} values of {want.name!r} are outside the pinned range "
                f"[{want.min:g}, {want.max:g}] ({below} below, {above} above; observed "
                f"[{got.min:g}, {got.max:g}]); check the data or regenerate the schema",
                {"below": below, "above": above, "fraction": round((below + above) / n, 6)},
            )
        )
    return out


def check_all_null(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature column holds no non-null value at all."""
    n_rows = ctx.stats.n_rows
    if n_rows == 0:
        return []
    out = []
    for name in _unique(ctx.features):
        col = ctx.stats.column(name)
        if col is None or col.null_fraction < 1.0:
            continue
        out.append(
            Anomaly(
                name,
                "all_null",
                "warning",
                f"feature {name!r} is null in all {n_rows} rows; it carries no signal; drop "
                "it or fix the export that should fill it",
                n_rows,
            )
        )
    return out


def check_infinite_values(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a numeric column (target included) holds +inf or -inf."""
    import numpy as np

    n_rows = ctx.stats.n_rows
    out = []
    for name in _unique(ctx.stats.names):
        col = ctx.stats.column(name)
        if col is None or col.kind != "numeric" or n_rows == 0:
            continue
        arr = ctx.series(name).to_numpy(dtype=float, na_value=np.nan)
        pos = int(np.isposinf(arr).sum())
        neg = int(np.isneginf(arr).sum())
        if not (pos or neg):
            continue
        count = pos + neg
        fraction = count / n_rows
        out.append(
            Anomaly(
                name,
                "infinite_values",
                "warning",
                f"column {name!r} holds {count} infinite value(s) ({pos} +inf, {neg} -inf; "
                f"{fraction:.1%} of rows); replace them with nulls or clip them to finite "
                "values",
                {"count": count, "fraction": round(fraction, 6), "pos": pos, "neg": neg},
            )
        )
    return out


def check_mixed_types(ctx: CheckContext) -> list[Anomaly]:
    """Warning: an object or string column mixes numbers and text (or Python types).

    Fires when some but not all non-null values are numbers (numeric Python values, or
    strings that parse as numbers, like ``"12"`` or ``"7.5"``), the typical CSV column with
    junk such as ``"abc"`` in it, and when Python values of different types (``int`` and
    ``str``) share a column. Target included.
    """
    out = []
    for name in _unique(ctx.stats.names):
        col = ctx.stats.column(name)
        if col is None or col.kind != "categorical" or col.n_unique == 0:
            continue
        series = ctx.series(name)
        found = _mixed(series)
        if found is None:
            continue
        fraction, n, examples, types = found
        listed = ", ".join(f"{t}: {k}" for t, k in types.items())
        if 0.0 < fraction < 1.0:
            shown = ", ".join(_fmt(v, 30) for v in examples)
            message = (
                f"column {name!r} mixes numbers and text: {fraction:.1%} of its {n} non-null "
                f"values parse as numbers, the others do not (e.g. {shown})"
            )
            if types:
                message += f"; its values have {len(types)} Python types ({listed})"
            fix = "replace the non-numeric values with numbers or nulls so the column reads as numeric"
        else:
            message = f"column {name!r} holds values of {len(types)} Python types ({listed})"
            fix = "convert the column to one type"
        out.append(
            Anomaly(
                name,
                "mixed_types",
                "warning",
                f"{message}; {fix}",
                {"numeric_fraction": round(fraction, 6), "examples": examples, "types": types},
            )
        )
    return out


def check_high_cardinality(ctx: CheckContext) -> list[Anomaly]:
    """Warning: an ID-like categorical feature (too many distinct values to generalise).

    Fires when the distinct count is above ``options.max_categories`` and above
    ``options.max_category_fraction`` of the feature's non-null rows.
    """
    opts = ctx.options
    out = []
    for name in _unique(ctx.features):
        col = ctx.stats.column(name)
        if col is None or col.kind != "categorical":
            continue
        k = col.n_unique
        if k <= opts.max_categories:
            continue
        n = int(ctx.series(name).notna().sum())
        if k <= opts.max_category_fraction * n:
            continue
        out.append(
            Anomaly(
                name,
                "high_cardinality",
                "warning",
                f"categorical feature {name!r} has {k} distinct values in {n} non-null rows "
                f"({k / n:.0%}), above max_categories={opts.max_categories} and "
                f"max_category_fraction={opts.max_category_fraction:g}; an ID-like column "
                "will not generalise; drop it or hash it into a fixed number of buckets",
                {"n_unique": k, "fraction": round(k / n, 6)},
            )
        )
    return out


def check_label_leakage(ctx: CheckContext) -> list[Anomaly]:
    """Error: one feature alone predicts the target almost perfectly on held-out rows.

    The rows with a target are split in two halves by a permutation seeded with
    :data:`LEAKAGE_SEED`. Each feature is cut into buckets (a numeric feature with more than
    :data:`LEAKAGE_BINS` distinct values into quantile bins fitted on the first half, any
    other feature by value; nulls, and values unseen in the first half, are buckets of their
    own). On the first half each bucket is mapped to its majority class (classification)
    or its mean target (regression); an unseen bucket to the overall majority class or
    mean. The second half is scored by balanced accuracy (classification) or R^2
    (regression), and a score of at least ``options.leakage_threshold`` is an error.

    Skipped with fewer than :data:`LEAKAGE_MIN_ROWS` rows with a target, with a threshold
    of 1.0 or more, and for classification unless two classes have at least 5 held-out
    rows each (else a constant guess would score perfectly).
    """
    import numpy as np

    threshold = ctx.options.leakage_threshold
    if threshold >= 1.0 or not ctx.has_target or ctx.task is None or not ctx.features:
        return []
    prepared = _leakage_target(ctx)
    if prepared is None:
        return []
    y, rows, fit, held = prepared
    n_classes = int(y.max()) + 1 if ctx.task == "classification" else 0
    if n_classes:
        held_counts = np.bincount(y[held], minlength=n_classes)
        if int((held_counts >= _LEAKAGE_MIN_CLASS_ROWS).sum()) < 2:
            return []
    out = []
    for name in _unique(ctx.features):
        buckets = _leakage_buckets(ctx, name, rows, fit)
        if buckets is None:
            continue
        if n_classes:
            score = _balanced_accuracy(buckets, y, fit, held, n_classes)
            metric, label = "balanced_accuracy", "balanced accuracy"
        else:
            score = _bucket_r2(buckets, y, fit, held)
            metric, label = "r2", "R^2"
        if score is None or score < threshold:
            continue
        out.append(
            Anomaly(
                name,
                "label_leakage",
                "error",
                f"feature {name!r} alone predicts target {ctx.target!r} with {label} "
                f"{score:.4f} on held-out rows (leakage_threshold={threshold:g}); if it is "
                "derived from the label or recorded after it, remove the column; if it is a "
                "legitimate feature, set leakage_threshold above the score (1.0 turns it off; "
                "kfgpu run --param leakage_threshold=1.0)",
                {"score": round(score, 6), "metric": metric},
            )
        )
    return out


# --- helpers of the checks ------------------------------------------------------------------


def _unique(names: list[str]) -> list[str]:
    """Names in order, each once (a duplicated name is reported by its own check)."""
    return list(dict.fromkeys(names))


def _number_kind(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _mixed(series: pd.Series) -> tuple[float, int, list[str], dict[str, int]] | None:
    """``(numeric fraction, non-null count, non-numeric examples, type counts)`` or None.

    None when the column is not object/string or holds one kind of value only.
    """
    import pandas as pd
    from pandas.api import types as pdt

    if not (pdt.is_object_dtype(series.dtype) or pdt.is_string_dtype(series.dtype)):
        return None
    values = series[series.notna()]
    n = len(values)
    if n == 0:
        return None
    inferred = pdt.infer_dtype(values, skipna=True)
    types: dict[str, int] = {}
    if inferred in ("string", "empty"):
        try:
            counts = values.value_counts(sort=False)
        except TypeError:  # pragma: no cover - strings are hashable
            return None
        keys = pd.Series(counts.index.astype(str), index=counts.index)
        parsed = pd.to_numeric(keys, errors="coerce").notna().to_numpy()
        counts_arr = counts.to_numpy()
        n_numeric = int(counts_arr[parsed].sum())
        junk = [
            (str(k), int(c)) for k, c, ok in zip(keys, counts_arr, parsed, strict=True) if not ok
        ]
    else:
        type_names = values.map(lambda v: type(v).__name__)
        is_number = values.map(_number_kind).to_numpy(dtype=bool)
        is_str = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        numeric = is_number.copy()
        if is_str.any():
            parsed = pd.to_numeric(values[is_str].astype(str), errors="coerce")
            numeric[is_str] = parsed.notna().to_numpy()
        n_numeric = int(numeric.sum())
        counts_junk = values[~numeric].map(_safe_text).value_counts()
        junk = [(str(k), int(c)) for k, c in counts_junk.items()]
        # ints and floats together are one kind (numbers); other types each their own
        kinds = type_names.where(~is_number, "number")
        if kinds.nunique() > 1:
            by_type = type_names.value_counts()
            types = {str(t): int(c) for t, c in by_type.items()}
            types = dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    fraction = n_numeric / n
    if not (0.0 < fraction < 1.0) and len(types) <= 1:
        return None
    junk.sort(key=lambda kv: (-kv[1], kv[0]))
    return fraction, n, [k for k, _ in junk[:_MAX_EXAMPLES]], types


def _safe_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not stop validation
        return f"<{type(value).__name__}>"


def _codes(series: pd.Series) -> np.ndarray:
    """Integer codes of a column's values, -1 for nulls (stringified when unhashable)."""
    import numpy as np
    import pandas as pd

    try:
        codes, _ = pd.factorize(series)
    except TypeError:  # unhashable values (lists, dicts): compare their string forms
        codes = np.full(len(series), -1, dtype=np.int64)
        codes[series.notna().to_numpy()] = pd.factorize(stringify(series))[0]
    return np.asarray(codes, dtype=np.int64)


def _leakage_target(
    ctx: CheckContext,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(y, rows, fit, held)``: the target of the usable rows, their positions, the split.

    For classification ``y`` holds class codes 0..K-1, for regression finite floats;
    ``fit`` and ``held`` index into ``rows`` / ``y``. None when too few rows are usable.
    """
    import numpy as np
    import pandas as pd

    target = ctx.series(ctx.target)
    if ctx.task == "classification":
        codes = _codes(target)
        rows = np.flatnonzero(codes >= 0)
        _, y = np.unique(codes[rows], return_inverse=True)
        y = y.astype(np.int64)
    else:
        values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        rows = np.flatnonzero(np.isfinite(values))
        y = values[rows]
    n = rows.size
    if n < LEAKAGE_MIN_ROWS:
        return None
    order = np.random.default_rng(LEAKAGE_SEED).permutation(n)
    return y, rows, order[: n // 2], order[n // 2 :]


def _leakage_buckets(
    ctx: CheckContext, name: str, rows: np.ndarray, fit: np.ndarray
) -> np.ndarray | None:
    """Bucket codes (>= 0) of feature ``name`` on ``rows``; nulls are bucket 0."""
    import numpy as np

    col = ctx.stats.column(name)
    series = ctx.series(name).iloc[rows]
    if col is None:
        return None
    if col.kind in ("numeric", "datetime") and col.n_unique > LEAKAGE_BINS:
        if col.kind == "datetime":
            values = series.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
            values[series.isna().to_numpy()] = np.nan
        else:
            values = series.to_numpy(dtype=float, na_value=np.nan)
        train = values[fit]
        train = train[np.isfinite(train)]
        if train.size == 0:
            return None
        qs = np.linspace(0.0, 1.0, LEAKAGE_BINS + 1)[1:-1]
        edges = np.unique(np.quantile(train, qs))
        buckets = np.searchsorted(edges, values, side="right") + 1
        buckets[np.isnan(values)] = 0
        return buckets.astype(np.int64)
    if column_kind(series) == "numeric":
        return _codes(series.astype(float)) + 1
    return _codes(series) + 1


def _balanced_accuracy(
    buckets: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray, k: int
) -> float | None:
    import numpy as np

    n_buckets = int(buckets.max()) + 1
    bf, yf = buckets[fit], y[fit]
    table = np.bincount(bf * k + yf, minlength=n_buckets * k).reshape(n_buckets, k)
    fallback = int(np.bincount(yf, minlength=k).argmax())
    mapping = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), fallback)
    yh = y[held]
    pred = mapping[buckets[held]]
    support = np.bincount(yh, minlength=k)
    hits = np.bincount(yh[pred == yh], minlength=k)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def _bucket_r2(
    buckets: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray
) -> float | None:
    import numpy as np

    n_buckets = int(buckets.max()) + 1
    bf, yf = buckets[fit], y[fit]
    counts = np.bincount(bf, minlength=n_buckets)
    sums = np.bincount(bf, weights=yf, minlength=n_buckets)
    means = np.full(n_buckets, float(yf.mean()))
    seen = counts > 0
    means[seen] = sums[seen] / counts[seen]
    yh = y[held]
    sst = float(((yh - yh.mean()) ** 2).sum())
    if sst <= 0.0:
        return None
    sse = float(((yh - means[buckets[held]]) ** 2).sum())
    return 1.0 - sse / sst


#: Checks :func:`validate` runs, in order. Append to add a check.
DEFAULT_CHECKS: tuple[Check, ...] = (
    check_unique_column_names,
    check_target_present,
    check_non_empty,
    check_has_features,
    check_target_nulls,
    check_class_count,
    check_rare_classes,
    check_target_kind,
    check_schema_columns,
    check_schema_kinds,
    check_null_fraction,
    check_all_null,
    check_constant_features,
    check_infinite_values,
    check_mixed_types,
    check_high_cardinality,
    check_duplicate_rows,
    check_unseen_categories,
    check_schema_ranges,
    check_label_leakage,
)


def validate(
    df: pd.DataFrame,
    target: str,
    *,
    schema: Schema | None = None,
    task: TaskOption = "auto",
    max_null_fraction: float = 0.5,
    max_unseen_fraction: float = 0.0,
    leakage_threshold: float = 0.99,
    max_categories: int = 50,
    max_category_fraction: float = 0.5,
    checks: Sequence[Check] | None = None,
) -> ValidationResult:
    """Validate a table for training on ``target``.

    Args:
        df: the table. Non-string column names are stringified.
        target: name of the target column.
        schema: a pinned schema the table must match (missing column or changed kind:
            error; extra column, unseen category, value out of range: warning).
        task: ``"classification"``, ``"regression"`` or ``"auto"``: the pinned schema's task
            when it has one for this target, else inferred from the target column.
        max_null_fraction: a feature with a larger null fraction draws a warning.
        max_unseen_fraction: a categorical column with a larger fraction of values outside
            the pinned schema's domain draws a warning (0: any unseen value).
        leakage_threshold: a feature that alone predicts the target on held-out rows with
            at least this score (balanced accuracy, or R^2 for regression) is an error;
            1.0 or more turns the leakage check off.
        max_categories: a categorical feature with more distinct values than this ...
        max_category_fraction: ... and more than this fraction of its non-null rows is
            ID-like and draws a ``high_cardinality`` warning.
        checks: the checks to run; :data:`DEFAULT_CHECKS` when None.

    Returns:
        The result; anomalies are reported, never raised. Call
        :meth:`ValidationResult.raise_for_errors` to stop on errors.

    Raises:
        ConfigError: ``target``, ``task`` or a threshold has an unusable value; the message
            names the option.
    """
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target is {target!r}; pass --target with the name of a column")
    if task not in _TASK_OPTIONS:
        raise ConfigError(f"task is {task!r}; set task to one of {', '.join(_TASK_OPTIONS)}")
    options = ValidationOptions(
        max_null_fraction=max_null_fraction,
        max_unseen_fraction=max_unseen_fraction,
        leakage_threshold=leakage_threshold,
        max_categories=max_categories,
        max_category_fraction=max_category_fraction,
    )

    names = [str(c) for c in df.columns]
    if names != list(df.columns):
        df = df.copy(deep=False)
        df.columns = names
    has_target = target in names
    stats = infer_schema(df, target if has_target else None)

    resolved: TaskKind | None = None
    if has_target:
        if task != "auto":
            resolved = task
        elif schema is not None and schema.target == target and schema.task is not None:
            resolved = schema.task
        else:
            resolved = infer_task(df.iloc[:, names.index(target)])
        if resolved != stats.task:  # keep the statistics consistent with the task used
            labels = (
                label_distribution(df.iloc[:, names.index(target)])
                if resolved == "classification"
                else None
            )
            stats = Schema(
                columns=stats.columns,
                n_rows=stats.n_rows,
                target=stats.target,
                task=resolved,
                label_distribution=labels,
            )

    ctx = CheckContext(
        df=df,
        target=target,
        task=resolved,
        stats=stats,
        pinned=schema,
        max_null_fraction=float(max_null_fraction),
        options=options,
    )
    anomalies: list[Anomaly] = []
    for check in DEFAULT_CHECKS if checks is None else checks:
        anomalies.extend(check(ctx))
    return ValidationResult(
        schema=schema if schema is not None else stats,
        statistics=stats,
        anomalies=tuple(anomalies),
        target=target,
        task=resolved,
    )
