"""The validate_data step: read raw data, check it, and hand on a Parquet copy."""

from __future__ import annotations

from pathlib import Path

from kfgpu._step import StepResult, step
from kfgpu.errors import DataError, KfgpuError

__all__ = ["validate_data_step"]


def _write_failure_report(path: str, data_uri: str, error: KfgpuError) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        f"# Data validation: FAILED\n\nSource: `{data_uri}`\n\n"
        f"The data could not be read or used:\n\n> {error}\n"
    )


@step("validate_data")
def validate_data_step(
    *,
    data_uri: str,
    target: str,
    dataset_path: str,
    schema_path: str,
    report_path: str,
    task: str = "auto",
    max_null_fraction: float = 0.5,
    schema_uri: str = "",
) -> StepResult:
    """Read ``data_uri``, validate it against an inferred or pinned schema, write outputs.

    The Markdown report is written in every case, failure included; the Parquet copy only
    when validation passed.

    Raises:
        DataError: the data cannot be read.
        ValidationError: error-level anomalies, every one listed in the message.
    """
    from kfgpu.data import artifact_metadata, read_table, write_parquet
    from kfgpu.validation.checks import validate
    from kfgpu.validation.report import render_markdown
    from kfgpu.validation.schema import Schema

    try:
        df = read_table(data_uri)
    except DataError as e:
        _write_failure_report(report_path, data_uri, e)
        raise
    pinned = Schema.read_json(schema_uri) if schema_uri else None
    result = validate(
        df,
        target,
        schema=pinned,
        task=task,  # type: ignore[arg-type]  # validate() names a bad value itself
        max_null_fraction=max_null_fraction,
    )
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(render_markdown(result))
    result.schema.to_json(schema_path)
    result.raise_for_errors()

    write_parquet(df, dataset_path)
    n_err, n_warn = len(result.errors), len(result.warnings)
    return StepResult(
        metrics={"rows": float(len(df)), "columns": float(df.shape[1]), "warnings": float(n_warn)},
        metadata={
            "dataset": {"source_uri": data_uri, **artifact_metadata(df)},
            "schema": {"task": result.schema.task, "target": target},
        },
        summary=(
            f"{len(df)} rows x {df.shape[1]} columns, task {result.schema.task}, "
            f"{n_err} errors, {n_warn} warnings"
        ),
        extra={"task": result.schema.task},
    )
