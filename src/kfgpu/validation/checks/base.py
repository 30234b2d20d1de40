"""The types every check shares: options, the context a check reads, anomalies, the result."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError, ValidationError
from kfgpu.validation.schema import Schema, TaskKind

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TASK_OPTIONS",
    "Anomaly",
    "Check",
    "CheckContext",
    "Severity",
    "TaskOption",
    "ValidationOptions",
    "ValidationResult",
    "format_value",
    "unique_names",
]

Severity = Literal["error", "warning"]
TaskOption = Literal["auto", "classification", "regression"]

TASK_OPTIONS: tuple[str, ...] = get_args(TaskOption)


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


def format_value(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unique_names(names: list[str]) -> list[str]:
    """Names in order, each once (a duplicated name is reported by its own check)."""
    return list(dict.fromkeys(names))
