"""Data validation stage: infer a schema, validate a table, report the anomalies.

Like TFX SchemaGen + ExampleValidator: :func:`infer_schema` records each column's kind and
statistics (and the target's task and label distribution) as a :class:`Schema` that
round-trips through JSON; :func:`validate` runs small checks over a table, optionally
against a pinned schema, and returns a :class:`ValidationResult` of :class:`Anomaly`
objects; :func:`render_markdown` turns the result into a report for the Kubeflow UI.

Importing this package is cheap: pandas is imported only when a function runs.
"""

from __future__ import annotations

from kfgpu.validation.checks import (
    DEFAULT_CHECKS,
    Anomaly,
    Check,
    CheckContext,
    Severity,
    TaskOption,
    ValidationOptions,
    ValidationResult,
    validate,
)
from kfgpu.validation.report import render_markdown
from kfgpu.validation.schema import (
    ColumnKind,
    ColumnSchema,
    Schema,
    TaskKind,
    infer_schema,
    infer_task,
)

__all__ = [
    "DEFAULT_CHECKS",
    "Anomaly",
    "Check",
    "CheckContext",
    "ColumnKind",
    "ColumnSchema",
    "Schema",
    "Severity",
    "TaskKind",
    "TaskOption",
    "ValidationOptions",
    "ValidationResult",
    "infer_schema",
    "infer_task",
    "render_markdown",
    "validate",
]
