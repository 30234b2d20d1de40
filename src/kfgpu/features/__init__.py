"""Feature engineering: a declarative spec, fitted once, exported into the served model."""

from __future__ import annotations

from kfgpu.features.transform import (
    FeatureSpec,
    FittedTransform,
    fit_transform,
    infer_feature_spec,
)

__all__ = [
    "FeatureSpec",
    "FittedTransform",
    "engineer_features_step",
    "fit_transform",
    "infer_feature_spec",
    "split_frame",
]


def __getattr__(name: str) -> object:
    # Deferred: the step pulls in pandas, scikit-learn and the data layer.
    if name == "engineer_features_step":
        from kfgpu.features.step import engineer_features_step

        return engineer_features_step
    if name == "split_frame":
        from kfgpu.features.split import split_frame

        return split_frame
    raise AttributeError(name)
