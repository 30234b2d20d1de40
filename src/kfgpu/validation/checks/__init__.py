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

The checks live by kind in :mod:`.target`, :mod:`.quality`, :mod:`.pinned` (against a
pinned schema) and :mod:`.leakage`; the shared types in :mod:`.base`. Every public name is
re-exported here.

pandas is imported inside the functions that need it, so importing this package is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kfgpu.errors import ConfigError
from kfgpu.validation.checks.base import (
    TASK_OPTIONS,
    Anomaly,
    Check,
    CheckContext,
    Severity,
    TaskOption,
    ValidationOptions,
    ValidationResult,
)
from kfgpu.validation.checks.leakage import (
    LEAKAGE_BINS,
    LEAKAGE_MIN_ROWS,
    LEAKAGE_SEED,
    check_label_leakage,
)
from kfgpu.validation.checks.pinned import (
    check_schema_columns,
    check_schema_kinds,
    check_schema_ranges,
    check_unseen_categories,
)
from kfgpu.validation.checks.quality import (
    check_all_null,
    check_constant_features,
    check_duplicate_rows,
    check_high_cardinality,
    check_infinite_values,
    check_mixed_types,
    check_null_fraction,
)
from kfgpu.validation.checks.target import (
    MAX_LISTED_COLUMNS,
    check_class_count,
    check_has_features,
    check_non_empty,
    check_rare_classes,
    check_target_kind,
    check_target_nulls,
    check_target_present,
    check_unique_column_names,
)
from kfgpu.validation.schema import Schema, TaskKind, infer_schema, infer_task, label_distribution

if TYPE_CHECKING:
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
    "check_target_and_task",
    "check_target_kind",
    "check_target_nulls",
    "check_target_present",
    "check_unique_column_names",
    "check_unseen_categories",
    "validate",
]

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


def check_target_and_task(target: object, task: object) -> None:
    """Refuse an unusable ``target`` or ``task`` option, naming it and the fix.

    Raises:
        ConfigError: ``target`` is not a non-empty string, or ``task`` is not one of
            ``TASK_OPTIONS``.
    """
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target is {target!r}; pass --target with the name of a column")
    if task not in TASK_OPTIONS:
        raise ConfigError(f"task is {task!r}; set task to one of {', '.join(TASK_OPTIONS)}")


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
    check_target_and_task(target, task)
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
