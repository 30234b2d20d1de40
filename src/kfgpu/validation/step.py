"""The validation step validate_data (read, check, hand on Parquet) and reference loading.

The drift check lives in :mod:`kfgpu.monitoring.drift_check` (it needs the model bundle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kfgpu._step import StepResult, step
from kfgpu.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.validation.checks import Anomaly, ValidationResult
    from kfgpu.validation.profile import ReferenceProfile
    from kfgpu.validation.schema import TaskKind

__all__ = ["ValidatedData", "load_reference", "skew_anomalies", "validate_data_step"]


@dataclass(frozen=True)
class ValidatedData:
    """What :func:`validate_data_step` returns beside its files.

    Attributes:
        task: the task the target was validated for (a table without its target fails
            validation, so there always is one).
    """

    task: TaskKind


@step("validate_data")
def validate_data_step(
    *,
    data_uri: str,
    target: str,
    dataset_path: str,
    schema_path: str,
    report_path: str,
    anomalies_path: str = "",
    task: str = "auto",
    max_null_fraction: float = 0.5,
    max_unseen_fraction: float = 0.0,
    leakage_threshold: float = 0.99,
    schema_uri: str = "",
    reference_uri: str = "",
) -> StepResult[ValidatedData]:
    """Read ``data_uri``, validate it against an inferred or pinned schema, write outputs.

    The Markdown report and the anomalies JSON are written in every case, failure
    included (a file that cannot be read is itself an anomaly: ``not_found``,
    ``encoding``, ``parse`` ...); the Parquet copy only when validation passed.

    Args:
        schema_uri: a pinned schema JSON to check against; empty infers one.
        reference_uri: a bundle, profile or dataset to compare with for train/serving
            skew (warnings); empty skips the comparison.

    Raises:
        DataError: the data cannot be read.
        ValidationError: error-level anomalies, every one listed in the message.
    """
    from dataclasses import replace

    from kfgpu.data import artifact_metadata, read_table, write_parquet
    from kfgpu.validation.checks import validate
    from kfgpu.validation.schema import Schema

    try:
        df = read_table(data_uri)
    except DataError as e:
        _write_reports(_unreadable(target, e), report_path, anomalies_path)
        raise
    pinned = Schema.read_json(schema_uri) if schema_uri else None
    result = validate(
        df,
        target,
        schema=pinned,
        task=task,  # type: ignore[arg-type]  # validate() names a bad value itself
        max_null_fraction=max_null_fraction,
        max_unseen_fraction=max_unseen_fraction,
        leakage_threshold=leakage_threshold,
    )
    if reference_uri:
        skew = skew_anomalies(df, reference_uri, target=target)
        result = replace(result, anomalies=(*result.anomalies, *skew))
    _write_reports(result, report_path, anomalies_path)
    result.schema.to_json(schema_path)
    result.raise_for_errors()

    validated = result.schema.task
    assert validated is not None  # raise_for_errors(): a table without its target is an error
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
        output=ValidatedData(task=validated),
    )


def _unreadable(target: str, error: DataError) -> ValidationResult:
    """A validation result holding the one error that stopped the data being read."""
    from kfgpu.validation.checks import Anomaly, ValidationResult
    from kfgpu.validation.schema import Schema

    empty = Schema(columns=())
    anomaly = Anomaly(None, error.check, "error", " ".join(str(error).split()), None)
    return ValidationResult(
        schema=empty, statistics=empty, anomalies=(anomaly,), target=target, task=None
    )


def _write_reports(result: ValidationResult, report_path: str, anomalies_path: str) -> None:
    from kfgpu.validation.report import render_markdown

    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(render_markdown(result))
    if anomalies_path:
        data = {k: v for k, v in result.to_dict().items() if k not in ("schema", "statistics")}
        Path(anomalies_path).parent.mkdir(parents=True, exist_ok=True)
        Path(anomalies_path).write_text(
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        )


def skew_anomalies(df: pd.DataFrame, reference_uri: str, *, target: str) -> list[Anomaly]:
    """Train/serving skew: one warning per feature whose distribution differs from the
    reference (a bundle's training profile, a saved profile, or another dataset)."""
    from kfgpu.validation.checks import Anomaly
    from kfgpu.validation.drift import DriftConfig, frame_drift

    reference = load_reference(reference_uri)
    result = frame_drift(reference, df, DriftConfig(), exclude=[target])
    if result is None:
        return [
            Anomaly(
                None,
                "train_serving_skew",
                "warning",
                f"no column of reference {reference_uri!r} is in this data; cannot compare",
                None,
            )
        ]
    return [
        Anomaly(
            col.column,
            "train_serving_skew",
            "warning",
            f"distribution differs from the reference ({col.method} {col.statistic:.3g} >= "
            f"{col.threshold:.3g}, adjusted p {col.p_adjusted or 0.0:.3g}); check that serving "
            "computes this feature as training did",
            round(float(col.statistic), 6),
        )
        for col in result.columns
        if col.drifted
    ]


def load_reference(uri: str) -> ReferenceProfile:
    """A reference profile from a model bundle, a saved profile, or raw data.

    Args:
        uri: a kfgpu model bundle directory (its ``reference/`` profile, checksums verified),
            a profile directory (``profile.json`` + ``sample.parquet``) or its
            ``profile.json``, or any data URI ``read_table`` accepts (profiled in chunks).
    """
    from kfgpu.bundle import DESCRIPTION_FILE, REFERENCE_DIR, verify_bundle
    from kfgpu.errors import BundleError
    from kfgpu.validation.profile import ReferenceProfile, profile_source

    path = Path(uri)
    if "://" not in uri and path.is_dir() and (path / DESCRIPTION_FILE).is_file():
        verify_bundle(path)
        if not (path / REFERENCE_DIR / "profile.json").is_file():
            raise BundleError(
                f"model bundle {uri!r} holds no reference profile (written before kfgpu 0.1.1?); "
                "retrain, or pass the training data as the reference instead"
            )
        return ReferenceProfile.load(path / REFERENCE_DIR)
    if "://" not in uri and path.is_dir() and (path / "profile.json").is_file():
        return ReferenceProfile.load(path)
    if "://" not in uri and path.name == "profile.json" and path.is_file():
        return ReferenceProfile.load(path.parent)
    return profile_source(uri)
