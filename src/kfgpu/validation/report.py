"""Render a validation result as Markdown for the Kubeflow UI's Markdown artifact viewer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kfgpu.validation.checks import ValidationResult
    from kfgpu.validation.schema import ColumnSchema

__all__ = ["render_markdown"]

_MAX_TOP_VALUES = 3
_MAX_LABELS = 50


def render_markdown(result: ValidationResult) -> str:
    """Render a human report of a validation result.

    The report has a title, a PASSED/FAILED verdict with counts, a table of anomalies
    (severity, column, check, message), the label distribution for a classification target
    and a table of column statistics of the validated data.

    Args:
        result: what :func:`kfgpu.validation.validate` returned.

    Returns:
        The Markdown text, ending with a newline.
    """
    stats = result.statistics
    errors, warnings = result.errors, result.warnings
    verdict = "PASSED" if result.ok else "FAILED"
    lines = [
        "# Data validation report",
        "",
        f"**Verdict: {verdict}** — {len(errors)} error(s), {len(warnings)} warning(s).",
        "",
        f"- Rows: {stats.n_rows}",
        f"- Columns: {len(stats.columns)}",
        f"- Target: `{_cell(result.target)}`",
        f"- Task: {result.task or 'unknown'}",
        f"- Schema: {'pinned' if result.schema is not stats else 'inferred from this data'}",
        "",
        "## Anomalies",
        "",
    ]
    if result.anomalies:
        lines += ["| Severity | Column | Check | Message |", "| --- | --- | --- | --- |"]
        ordered = sorted(result.anomalies, key=lambda a: a.severity != "error")  # stable
        for a in ordered:
            severity = "**error**" if a.severity == "error" else "warning"
            column = f"`{_cell(a.column)}`" if a.column is not None else "(table)"
            lines.append(f"| {severity} | {column} | {a.check} | {_cell(a.message)} |")
    else:
        lines.append("No anomalies found.")
    if stats.label_distribution:
        total = sum(stats.label_distribution.values())
        lines += [
            "",
            "## Label distribution",
            "",
            "| Class | Count | Share |",
            "| --- | ---: | ---: |",
        ]
        for cls, count in list(stats.label_distribution.items())[:_MAX_LABELS]:
            lines.append(f"| {_cell(cls)} | {count} | {count / total:.1%} |")
        if len(stats.label_distribution) > _MAX_LABELS:
            lines.append(f"| … {len(stats.label_distribution) - _MAX_LABELS} more | | |")
    lines += [
        "",
        "## Column statistics",
        "",
        "| Column | Kind | dtype | Nulls | Unique | Min | Max | Mean | Std | Top values |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for col in stats.columns:
        lines.append(_stats_row(col, is_target=col.name == result.target))
    return "\n".join(lines) + "\n"


def _stats_row(col: ColumnSchema, *, is_target: bool) -> str:
    name = f"`{_cell(col.name)}`" + (" (target)" if is_target else "")
    top = ""
    if col.domain:
        top = ", ".join(f"{_cell(v)} ({n})" for v, n in list(col.domain.items())[:_MAX_TOP_VALUES])
    cells = [
        name,
        col.kind,
        _cell(col.dtype),
        f"{col.null_fraction:.1%}",
        str(col.n_unique),
        _num(col.min),
        _num(col.max),
        _num(col.mean),
        _num(col.std),
        top,
    ]
    return "| " + " | ".join(cells) + " |"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _cell(value: object) -> str:
    """Make a value safe inside a Markdown table cell: one line, pipes escaped, bounded."""
    text = " ".join(str(value).split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= 120 else text[:117] + "..."
