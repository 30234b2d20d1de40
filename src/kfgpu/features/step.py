"""The engineer_features step: split, fit the transform on train, hand on transformed splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import pyarrow as pa

    from kfgpu.features.spec import FeatureSpec
    from kfgpu.features.transform import FittedTransform

__all__ = [
    "SPEC_SAMPLE_ROWS",
    "engineer_features_step",
    "load_feature_spec",
    "transformed_frame",
]

SPEC_SAMPLE_ROWS = 262_144
"""Training rows a spec is inferred from when none is given (all of them when fewer)."""


def load_feature_spec(value: str) -> FeatureSpec:
    """A feature spec from JSON or YAML text, or from a ``.json``/``.yaml`` file path.

    Raises:
        ConfigError: the text or file is not a valid spec (the message names the key).
    """
    from kfgpu.features.spec import FeatureSpec

    text = value.strip()
    if text.startswith("{"):
        return FeatureSpec.from_json(text)
    if "\n" not in text and Path(text).suffix.lower() in (".json", ".yaml", ".yml"):
        if not Path(text).is_file():
            raise ConfigError(
                f"feature spec file {text!r} does not exist; pass a path or inline JSON"
            )
        return FeatureSpec.read(text)
    return FeatureSpec.from_yaml(text)


def transformed_frame(fitted: FittedTransform, df: pd.DataFrame, target: str) -> pd.DataFrame:
    """The model-ready table: one float column per dense feature, one int column per
    embedding index, and the raw target, as Parquet between steps."""
    import pandas as pd

    dense, emb = fitted.transform(df)
    out = pd.DataFrame(dense, columns=list(fitted.dense_names))
    for j, name in enumerate(fitted.emb_names):
        out[name] = emb[:, j]
    out[target] = df[target].to_numpy()
    return out


def _transformed_table(fitted: FittedTransform, df: pd.DataFrame, target: str) -> pa.Table:
    """:func:`transformed_frame` as an Arrow table, built from the arrays without a pandas
    frame in between (the same columns, types and values)."""
    import numpy as np
    import pyarrow as pa

    dense, emb = fitted.transform(df)
    names = [*fitted.dense_names, *fitted.emb_names, target]
    cols: list[Any] = [pa.array(c, from_pandas=True) for c in np.ascontiguousarray(dense.T)]
    cols += [pa.array(c, from_pandas=True) for c in np.ascontiguousarray(emb.T)]
    cols.append(pa.array(df[target].to_numpy(), from_pandas=True))
    return pa.Table.from_arrays(cols, names=[str(n) for n in names])


def _report(fitted: FittedTransform, sizes: dict[str, int], time_column: str) -> str:
    lines = [
        "# Feature engineering",
        "",
        f"Split: train {sizes['train']}, validation {sizes['validation']}, test "
        f"{sizes['test']} rows, "
        + (
            f"by time column `{time_column}` (latest rows held out)."
            if time_column
            else "seeded, stratified for classification."
        ),
        "",
        f"Model inputs: {fitted.n_dense} dense features, {len(fitted.cardinalities)} embedding "
        "indices. Fitted on the training split only; the same transform is in the model bundle.",
        "",
        "| column | kind | what was done | outputs |",
        "|---|---|---|---|",
    ]
    for row in fitted.describe():
        outputs = row.get("outputs", [])
        shown = ", ".join(f"`{o}`" for o in outputs[:4]) + (" …" if len(outputs) > 4 else "")
        lines.append(f"| `{row['column']}` | {row['kind']} | {row.get('summary', '')} | {shown} |")
    return "\n".join(lines) + "\n"


@step("engineer_features")
def engineer_features_step(
    *,
    dataset_path: str,
    target: str,
    task: str,
    train_path: str,
    val_path: str,
    test_path: str,
    transform_path: str,
    spec_path: str = "",
    profile_path: str = "",
    report_path: str = "",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    max_categories: int = 1000,
    feature_spec: str = "",
    time_column: str = "",
    batch_rows: int = 65_536,
) -> StepResult:
    """Split the validated data, fit the feature transform on the training split, and write
    the transformed train and validation splits, the raw test split, the fitted transform,
    the spec, the training data's reference profile and a report.

    Streams: the data set (a Parquet file or a directory of shards) is read one record
    batch at a time, twice (fit, then transform and write) after the split's few column
    passes (:class:`~kfgpu.features.split.SplitPlan`), and every split is written as
    sharded Parquet with a manifest of row counts and fingerprints. Memory holds a batch,
    the fitted statistics and, when the spec is inferred, the first
    :data:`SPEC_SAMPLE_ROWS` training rows.

    Args:
        feature_spec: a feature spec as JSON or YAML text, or a path to one; empty infers
            a spec from the training split.
        time_column: split by this column's time instead of at random.
        batch_rows: rows per record batch read (memory, not results).

    Raises:
        ConfigError: bad fractions or spec.
        DataError: too few rows or classes to split.
    """
    import itertools

    import pandas as pd

    from kfgpu.data.shards import ShardWriter, open_shards
    from kfgpu.features.spec import infer_feature_spec
    from kfgpu.features.split import SplitConfig, SplitPlan, split_indices
    from kfgpu.features.stats import fit_stats
    from kfgpu.features.transform import FittedTransform
    from kfgpu.validation.profile import build_profile

    if task not in ("classification", "regression"):
        raise ConfigError(f"task={task!r} is invalid: use 'classification' or 'regression'")
    config = SplitConfig(
        target=target,
        task=task,  # type: ignore[arg-type]
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        time_column=time_column,
    )
    shards = open_shards(dataset_path)
    plan = SplitPlan(shards, config, batch_rows=batch_rows)

    def train_frames() -> Iterator[pd.DataFrame]:
        for batch, which in plan.iter_splits():
            idx = split_indices(which, 0)
            if len(idx):
                yield batch.take(idx).to_pandas()

    # Pass 1: the spec (given, or inferred from the first training rows) and the fit.
    frames = train_frames()
    head: list[pd.DataFrame] = []
    if feature_spec:
        spec = load_feature_spec(feature_spec)
    else:
        seen = 0
        for frame in frames:
            head.append(frame)
            seen += len(frame)
            if seen >= SPEC_SAMPLE_ROWS:
                break
        if not head:
            raise DataError(f"the training split of {dataset_path!r} has no rows; add rows")
        sample = head[0] if len(head) == 1 else pd.concat(head, ignore_index=True)
        spec = infer_feature_spec(
            sample.drop(columns=[time_column]) if time_column else sample,
            target,
            max_categories=max_categories,
        )
        del sample
    missing = [c for c in spec.columns if c not in shards.columns]
    if missing:
        raise ConfigError(
            f"feature spec names column(s) {missing} that the data does not have; "
            f"the data has {[c for c in shards.columns if c != target][:20]}"
        )
    fitted = FittedTransform.from_stats(spec, fit_stats(itertools.chain(head, frames), spec))
    del head
    for path in (transform_path, spec_path, report_path):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    fitted.save(transform_path)
    if spec_path:
        Path(spec_path).write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n")

    # Pass 2: transform and write the splits shard by shard; profile the raw training rows.
    numeric = set(fitted.numeric)
    profiled = [c for c in fitted.input_columns if c in numeric or c in fitted.categorical]
    datetime_inputs = set(fitted.datetime_inputs)
    profiled = [c for c in profiled if c not in datetime_inputs]
    source = shards.fingerprint
    base = {"source_fingerprint": source, "split_by": config.by, "seed": seed}
    # One writer thread per output: encoding and hashing overlap the next batch's transform.
    writers = {
        "train": ShardWriter(train_path, metadata={**base, "split": "train"}, background=True),
        "validation": ShardWriter(
            val_path, metadata={**base, "split": "validation"}, background=True
        ),
        "test": ShardWriter(
            test_path,
            schema=shards.schema,
            metadata={**base, "split": "test"},
            background=True,
        ),
    }

    def write_all() -> Iterator[pd.DataFrame]:
        for batch, which in plan.iter_splits():
            test_idx = split_indices(which, 2)
            if len(test_idx):
                writers["test"].write(batch.take(test_idx))
            val_idx = split_indices(which, 1)
            if len(val_idx):
                val = batch.take(val_idx).to_pandas()
                writers["validation"].write(_transformed_table(fitted, val, target))
            train_idx = split_indices(which, 0)
            if len(train_idx):
                train = batch.take(train_idx).to_pandas()
                writers["train"].write(_transformed_table(fitted, train, target))
                yield train[[*profiled, target]]

    try:
        if profile_path:
            # The training data's reference profile, on raw inputs (and the label), for
            # drift and skew checks later; timestamps always move, so they are left out.
            label = [target] if task == "classification" else []
            build_profile(
                write_all(),
                categorical=[*[c for c in profiled if c not in numeric], *label],
                seed=seed,
            ).save(profile_path)
        else:
            for _ in write_all():
                pass
        manifests = {name: w.close() for name, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise

    sizes = {name: m.rows for name, m in manifests.items()}
    if report_path:
        Path(report_path).write_text(_report(fitted, sizes, time_column))
    metadata: dict[str, dict[str, Any]] = {}
    for name, transformed in (("train", True), ("validation", True), ("test", False)):
        m = manifests[name]
        metadata[name] = {
            "fingerprint": m.fingerprint,
            "rows": m.rows,
            "columns": len(m.schema),
            "schema": m.schema,
            "files": len(m.files),
            "split": name,
            "transformed": transformed,
            "source_fingerprint": source,
        }
    metadata["transform"] = {
        "n_dense": fitted.n_dense,
        "n_embedding": len(fitted.cardinalities),
        "inputs": list(fitted.input_columns),
    }
    n_train, n_val, n_test = sizes["train"], sizes["validation"], sizes["test"]
    return StepResult(
        metrics={
            "train_rows": float(n_train),
            "validation_rows": float(n_val),
            "test_rows": float(n_test),
            "dense_features": float(fitted.n_dense),
            "embedding_features": float(len(fitted.cardinalities)),
        },
        metadata=metadata,
        summary=(
            f"train/val/test {n_train}/{n_val}/{n_test} rows; {len(fitted.input_columns)} "
            f"inputs -> {fitted.n_dense} dense + {len(fitted.cardinalities)} embedding features"
        ),
    )
