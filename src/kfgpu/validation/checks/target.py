"""Checks of the table's shape and its target column."""

from __future__ import annotations

from kfgpu.validation.checks.base import Anomaly, CheckContext

__all__ = [
    "MAX_LISTED_COLUMNS",
    "check_class_count",
    "check_has_features",
    "check_non_empty",
    "check_rare_classes",
    "check_target_kind",
    "check_target_nulls",
    "check_target_present",
    "check_unique_column_names",
]

#: How many available columns a "target missing" message lists.
MAX_LISTED_COLUMNS = 20


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
