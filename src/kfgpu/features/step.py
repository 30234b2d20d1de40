"""The engineer_features step: split, fit the transform on train, hand on both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfgpu._step import StepResult, step
from kfgpu.errors import ConfigError

__all__ = ["engineer_features_step"]


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
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    max_categories: int = 1000,
    feature_spec_json: str = "",
) -> StepResult:
    """Split the validated data and fit the feature transform on the training split.

    Args:
        feature_spec_json: a :class:`FeatureSpec` as JSON; empty infers one from the data.

    Raises:
        ConfigError: bad fractions or spec.
        DataError: too few rows or classes to split.
    """
    from kfgpu.data import artifact_metadata, read_parquet, write_parquet
    from kfgpu.features.split import split_frame
    from kfgpu.features.transform import FeatureSpec, fit_transform, infer_feature_spec

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
    )
    if feature_spec_json:
        try:
            raw = json.loads(feature_spec_json)
            fields: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()
            }
            spec = FeatureSpec(**fields)
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(
                f"feature_spec_json is not a valid feature spec ({e}); give JSON like "
                '{"numeric": ["age"], "categorical": ["city"]}'
            ) from e
    else:
        spec = infer_feature_spec(train, target, max_categories=max_categories)
    fitted = fit_transform(train, spec)
    Path(transform_path).parent.mkdir(parents=True, exist_ok=True)
    fitted.save(transform_path)

    metadata: dict[str, dict[str, object]] = {}
    for name, frame, path in (
        ("train", train, train_path),
        ("validation", val, val_path),
        ("test", test, test_path),
    ):
        write_parquet(frame, path)
        metadata[name] = {**artifact_metadata(frame), "split": name}
    source = artifact_metadata(df)["fingerprint"]
    for meta in metadata.values():
        meta["source_fingerprint"] = source
    metadata["transform"] = {
        "numeric": list(fitted.numeric),
        "categorical": list(fitted.categorical),
    }
    return StepResult(
        metrics={
            "train_rows": float(len(train)),
            "validation_rows": float(len(val)),
            "test_rows": float(len(test)),
            "numeric_features": float(len(fitted.numeric)),
            "categorical_features": float(len(fitted.categorical)),
        },
        metadata=metadata,
        summary=(
            f"train/val/test {len(train)}/{len(val)}/{len(test)} rows; "
            f"{len(fitted.numeric)} numeric, {len(fitted.categorical)} categorical features"
        ),
    )
