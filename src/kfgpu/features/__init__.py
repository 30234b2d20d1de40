"""Feature engineering: a declarative spec, fitted once, exported into the served model.

Importing this package is cheap (no NumPy, pandas or torch): the spec classes load
eagerly, everything else on first use.
"""

from __future__ import annotations

from typing import Any

from kfgpu.features.spec import (
    CategoricalSpec,
    CrossSpec,
    DatetimeSpec,
    FeatureSpec,
    NumericSpec,
    infer_feature_spec,
    infer_feature_spec_from_schema,
)

__all__ = [
    "CategoricalSpec",
    "CrossSpec",
    "DatetimeSpec",
    "FeatureSpec",
    "FeatureStats",
    "FittedTransform",
    "NumericSpec",
    "SplitConfig",
    "engineer_features_step",
    "fit_source",
    "fit_stats",
    "fit_transform",
    "infer_feature_spec",
    "infer_feature_spec_from_schema",
    "split_frame",
    "split_source",
]

_LAZY = {
    "FeatureStats": "kfgpu.features.stats",
    "FittedTransform": "kfgpu.features.transform",
    "engineer_features_step": "kfgpu.features.step",
    "fit_source": "kfgpu.features.transform",
    "fit_stats": "kfgpu.features.stats",
    "fit_transform": "kfgpu.features.transform",
    "SplitConfig": "kfgpu.features.split",
    "split_frame": "kfgpu.features.split",
    "split_source": "kfgpu.features.split",
}


def __getattr__(name: str) -> Any:
    # Deferred: these pull in NumPy and pandas (the step also the data layer).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kfgpu.features' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
