"""The validation step validate_data (read, check, hand on Parquet) and reference loading.

The drift check lives in :mod:`kfgpu.monitoring.drift_check` (it needs the model bundle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._step import StepResult, step
from kfgpu.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.data.shards import Manifest, ShardSet
    from kfgpu.validation.checks import Anomaly, ValidationResult
    from kfgpu.validation.schema import TaskKind

__all__ = ["ValidatedData", "skew_anomalies", "validate_data_step"]


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

    Parquet is validated in one streamed pass while its files are copied; CSV/TSV and
    JSON lines (also compressed) are first parsed chunk by chunk into Parquet shards, then
    validated the same way, so memory stays bounded whatever the table's size (see
    :func:`kfgpu.validation.stream.validate_source`). A JSON array, a ``kfgpu://`` data set,
    and a text file whose column holds numbers in some rows and text in others are read
    whole.

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

    import kfgpu.validation.stream as streaming
    from kfgpu.data import read_table
    from kfgpu.data.shards import open_shards, write_shards
    from kfgpu.data.stream import MixedTypesError, stream_to_shards
    from kfgpu.errors import EmptyDataError
    from kfgpu.validation.checks import validate
    from kfgpu.validation.schema import Schema
    from kfgpu.validation.stream import validate_source

    pinned = Schema.read_json(schema_uri) if schema_uri else None
    options = {
        "schema": pinned,
        "task": task,
        "max_null_fraction": max_null_fraction,
        "max_unseen_fraction": max_unseen_fraction,
        "leakage_threshold": leakage_threshold,
    }
    meta = {"source_uri": data_uri}
    shards = None
    df = None
    staging = None
    try:
        if _is_parquet(data_uri):
            # Parquet streams: one pass to validate while the files are copied.
            shards = open_shards(data_uri)
        elif _is_text(data_uri):
            # CSV/TSV/JSON lines stream too: parsed chunk by chunk into staging shards.
            staging = _staging_dir(dataset_path)
            try:
                stream_to_shards(data_uri, staging, metadata=meta)
                shards = open_shards(staging)
            except (MixedTypesError, EmptyDataError):
                # A column of numbers and text, or no rows: read whole, as always.
                df = read_table(data_uri)
        else:
            df = read_table(data_uri)
    except DataError as e:
        _remove(staging)
        _write_reports(_unreadable(target, e), report_path, anomalies_path)
        raise
    # The byte copy runs beside the validation pass; it is put in place only if the
    # data passes (a failure discards it and leaves dataset_path as it was).
    copy = _ShardCopy(shards, dataset_path, meta) if shards is not None else None
    try:
        if shards is not None:
            found = validate_source(
                shards,
                target,
                sample_rows=streaming.DEFAULT_SAMPLE_ROWS,  # read now: tests lower it
                **options,  # type: ignore[arg-type]
            )
            result, sample, n_rows = found.result, found.sample, found.rows
        else:
            assert df is not None
            result = validate(df, target, **options)  # type: ignore[arg-type]
            sample, n_rows = df, len(df)
        if reference_uri:
            # A streamed table is compared through its uniform row sample.
            skew = skew_anomalies(sample, reference_uri, target=target)
            result = replace(result, anomalies=(*result.anomalies, *skew))
        _write_reports(result, report_path, anomalies_path)
        result.schema.to_json(schema_path)
        result.raise_for_errors()
    except BaseException:
        if copy is not None:
            copy.abort()
        _remove(staging)
        raise

    validated = result.schema.task
    assert validated is not None  # raise_for_errors(): a table without its target is an error
    if copy is not None:
        try:
            manifest = copy.commit()
        finally:
            _remove(staging)
    else:
        manifest = write_shards(df, dataset_path, metadata=meta)
    n_cols = len(manifest.schema)
    n_err, n_warn = len(result.errors), len(result.warnings)
    return StepResult(
        metrics={"rows": float(n_rows), "columns": float(n_cols), "warnings": float(n_warn)},
        metadata={
            "dataset": {
                "source_uri": data_uri,
                "fingerprint": manifest.fingerprint,
                "rows": manifest.rows,
                "columns": n_cols,
                "schema": manifest.schema,
                "files": len(manifest.files),
            },
            "schema": {"task": result.schema.task, "target": target},
        },
        summary=(
            f"{n_rows} rows x {n_cols} columns, task {result.schema.task}, "
            f"{n_err} errors, {n_warn} warnings"
        ),
        output=ValidatedData(task=validated),
    )


class _ShardCopy:
    """Copy a shard set to ``uri`` in a background thread, as
    :func:`kfgpu.data.shards.copy_shards` does (files of bounded row groups byte for
    byte, others rewritten), but put in place only by :meth:`commit`."""

    def __init__(self, shards: ShardSet, uri: str, metadata: dict[str, Any]) -> None:
        import threading

        from kfgpu.data.shards import ShardWriter

        self._shards = shards
        self._writer = ShardWriter(uri, schema=shards.schema, metadata=metadata)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kfgpu-validate-copy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kfgpu.data.shards import DEFAULT_ROW_GROUP_ROWS

        shards, writer = self._shards, self._writer
        try:
            for i, f in enumerate(shards.files):
                if self._stop.is_set():
                    return
                if f.rows and max(f.row_groups, default=0) <= 4 * DEFAULT_ROW_GROUP_ROWS:
                    writer.add_file(shards.filesystem, f.path, f.rows, f.row_groups)
                else:
                    groups = [g for g in shards.row_groups() if g.file == i]
                    for batch in shards.iter_batches(row_groups=groups):
                        if self._stop.is_set():
                            return
                        writer.write(batch)
        except BaseException as e:  # raised by commit()
            self._error = e

    def commit(self) -> Manifest:
        """Wait for the copy, put it in place and return its manifest (or raise its error)."""
        self._thread.join()
        if self._error is not None:
            self._writer.abort()
            raise self._error
        return self._writer.close()

    def abort(self) -> None:
        """Stop the copy and discard what it wrote."""
        self._stop.set()
        self._thread.join()
        self._writer.abort()


def _is_parquet(uri: str) -> bool:
    """Whether ``uri`` is a Parquet file or a directory of them (streamed, not read whole)."""
    from kfgpu.data.shards import open_filesystem

    if uri.startswith("kfgpu://"):
        return False
    try:
        fs, path = open_filesystem(uri)
        if fs.isdir(path):
            return True
    except (OSError, DataError, ValueError):
        return False
    return path.lower().endswith((".parquet", ".pq"))


def _is_text(uri: str) -> bool:
    """Whether ``uri`` is a CSV/TSV or JSON (lines) file, optionally compressed."""
    import posixpath

    if uri.startswith("kfgpu://"):
        return False
    name = posixpath.basename(uri.split("?", 1)[0].rstrip("/")).lower()
    for codec in (".gz", ".bz2", ".zst", ".xz"):
        name = name.removesuffix(codec)
    return name.endswith((".csv", ".tsv", ".jsonl", ".ndjson", ".json"))


def _staging_dir(dataset_path: str) -> str:
    """A fresh folder for the parsed shards: beside a local ``dataset_path`` (same disk)."""
    import tempfile
    import uuid

    from kfgpu.data.shards import open_filesystem

    fs, path = open_filesystem(dataset_path)
    local = "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol))
    parent = str(Path(path).absolute().parent) if local else None
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix=f".kfgpu-validate-{uuid.uuid4().hex[:8]}-", dir=parent)
    return str(Path(base) / "shards")


def _remove(staging: str | None) -> None:
    import shutil

    if staging is not None:
        shutil.rmtree(Path(staging).parent, ignore_errors=True)


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
    from kfgpu.bundle import load_reference
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
