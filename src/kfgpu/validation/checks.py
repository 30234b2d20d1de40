"""Validate a table before training (the ExampleValidator half of the validation stage).

:func:`validate` runs a list of checks over a :class:`CheckContext` and collects their
:class:`Anomaly` objects into a :class:`ValidationResult`. A check is any callable taking a
:class:`CheckContext` and returning a list of anomalies, so adding one means writing a small
function and appending it to :data:`DEFAULT_CHECKS` (or passing ``checks=`` to
:func:`validate`).

Error-level anomalies make the table unusable for training (``result.ok`` is False and
:meth:`ValidationResult.raise_for_errors` raises); warnings are reported but let the
pipeline go on.

pandas is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError, ValidationError
from kfgpu.validation.schema import (
    Schema,
    TaskKind,
    infer_schema,
    infer_task,
    label_distribution,
    stringify,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_CHECKS",
    "MAX_LISTED_COLUMNS",
    "Anomaly",
    "Check",
    "CheckContext",
    "Severity",
    "TaskOption",
    "ValidationResult",
    "check_class_count",
    "check_constant_features",
    "check_duplicate_rows",
    "check_has_features",
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

_TASK_OPTIONS: tuple[str, ...] = get_args(TaskOption)


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
        max_null_fraction: a feature with a larger null fraction draws a warning.
    """

    df: pd.DataFrame
    target: str
    task: TaskKind | None
    stats: Schema
    pinned: Schema | None
    max_null_fraction: float

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
    """Warning: a feature has at most one distinct non-null value."""
    if ctx.stats.n_rows == 0:
        return []
    out = []
    for name in ctx.features:
        col = ctx.stats.column(name)
        if col is None or col.n_unique > 1:
            continue
        if col.n_unique == 0:
            what = "has no non-null values"
            value: object = None
        elif col.domain:
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

    Skipped for a column whose pinned domain was truncated (more than ``MAX_DOMAIN_SIZE``
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
        if not n_unseen:
            continue
        fraction = n_unseen / len(values)
        examples = sorted(set(values[unseen_mask]))[:5]
        out.append(
            Anomaly(
                want.name,
                "schema_unseen_categories",
                "warning",
                f"{fraction:.1%} of non-null values of {want.name!r} ({n_unseen}) are not in "
                f"the pinned domain, e.g. {', '.join(_fmt(v, 30) for v in examples)}; the "
                "model has not seen them; regenerate the schema if they are expected",
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
    check_constant_features,
    check_duplicate_rows,
    check_unseen_categories,
    check_schema_ranges,
)


def validate(
    df: pd.DataFrame,
    target: str,
    *,
    schema: Schema | None = None,
    task: TaskOption = "auto",
    max_null_fraction: float = 0.5,
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
        checks: the checks to run; :data:`DEFAULT_CHECKS` when None.

    Returns:
        The result; anomalies are reported, never raised. Call
        :meth:`ValidationResult.raise_for_errors` to stop on errors.

    Raises:
        ConfigError: ``target``, ``task`` or ``max_null_fraction`` has an unusable value.
    """
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target is {target!r}; pass --target with the name of a column")
    if task not in _TASK_OPTIONS:
        raise ConfigError(f"task is {task!r}; set task to one of {', '.join(_TASK_OPTIONS)}")
    if isinstance(max_null_fraction, bool) or not (
        isinstance(max_null_fraction, int | float) and 0.0 <= max_null_fraction <= 1.0
    ):
        raise ConfigError(
            f"max_null_fraction is {max_null_fraction!r}; pass a number between 0 and 1"
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
