"""The engineer_features step: split, fit the transform on train, hand on transformed splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.features.spec import FeatureSpec
    from kfgpu.features.transform import FittedTransform

__all__ = ["engineer_features_step", "load_feature_spec", "transformed_frame"]


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
) -> StepResult:
    """Split the validated data, fit the feature transform on the training split, and write
    the transformed train and validation splits, the raw test split, the fitted transform,
    the spec, the training data's reference profile and a report.

    Args:
        feature_spec: a feature spec as JSON or YAML text, or a path to one; empty infers
            a spec from the training split.
        time_column: split by this column's time instead of at random.

    Raises:
        ConfigError: bad fractions or spec.
        DataError: too few rows or classes to split.
    """
    from kfgpu.data import artifact_metadata, read_parquet, write_parquet
    from kfgpu.features.spec import infer_feature_spec
    from kfgpu.features.split import split_frame
    from kfgpu.features.transform import fit_transform
    from kfgpu.validation.profile import build_profile

    if task not in ("classification", "regression"):
        raise ConfigError(f"task={task!r} is invalid: use 'classification' or 'regression'")
    df = read_parquet(dataset_path)
    train, val, test = split_frame(
        df,
        target,
        task=task,  # type: ignore[arg-type]
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        time_column=time_column,
    )
    spec = (
        load_feature_spec(feature_spec)
        if feature_spec
        else infer_feature_spec(
            train.drop(columns=[time_column]) if time_column else train,
            target,
            max_categories=max_categories,
        )
    )
    missing = [c for c in spec.columns if c not in train.columns]
    if missing:
        raise ConfigError(
            f"feature spec names column(s) {missing} that the data does not have; "
            f"the data has {[c for c in train.columns if c != target][:20]}"
        )
    fitted = fit_transform(train, spec)
    for path in (transform_path, spec_path, report_path):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    fitted.save(transform_path)
    if spec_path:
        Path(spec_path).write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n")
    sizes = {"train": len(train), "validation": len(val), "test": len(test)}
    if report_path:
        Path(report_path).write_text(_report(fitted, sizes, time_column))
    if profile_path:
        # The training data's reference profile, on raw inputs (and the label), for drift
        # and skew checks later; timestamps always move, so they are left out.
        numeric = set(fitted.numeric)
        columns = [c for c in fitted.input_columns if c in numeric or c in fitted.categorical]
        datetime_inputs = set(fitted.datetime_inputs)
        columns = [c for c in columns if c not in datetime_inputs]
        label = [target] if task == "classification" else []
        build_profile(
            train[[*columns, target]],
            categorical=[*[c for c in columns if c not in numeric], *label],
            seed=seed,
        ).save(profile_path)

    metadata: dict[str, dict[str, Any]] = {}
    source = artifact_metadata(df)["fingerprint"]
    for name, frame, path, transformed in (
        ("train", train, train_path, True),
        ("validation", val, val_path, True),
        ("test", test, test_path, False),
    ):
        out = transformed_frame(fitted, frame, target) if transformed else frame
        write_parquet(out, path)
        metadata[name] = {
            **artifact_metadata(out),
            "split": name,
            "transformed": transformed,
            "raw_fingerprint": artifact_metadata(frame)["fingerprint"],
            "source_fingerprint": source,
        }
    metadata["transform"] = {
        "n_dense": fitted.n_dense,
        "n_embedding": len(fitted.cardinalities),
        "inputs": list(fitted.input_columns),
    }
    return StepResult(
        metrics={
            "train_rows": float(len(train)),
            "validation_rows": float(len(val)),
            "test_rows": float(len(test)),
            "dense_features": float(fitted.n_dense),
            "embedding_features": float(len(fitted.cardinalities)),
        },
        metadata=metadata,
        summary=(
            f"train/val/test {len(train)}/{len(val)}/{len(test)} rows; {len(fitted.input_columns)} "
            f"inputs -> {fitted.n_dense} dense + {len(fitted.cardinalities)} embedding features"
        ),
    )
