"""KFP components: thin adapters over the library (the only place, with pipelines/, that
imports kfp).

Every component is a lightweight Python component whose ``base_image`` is the kfgpu image
of this version and which installs nothing: in a cluster the image has kfgpu, under
``kfp.local`` the current environment has it. A body reads its inputs' paths, calls one
library step, and publishes the result.
"""

from __future__ import annotations

from kfgpu.components.launch import launch_training
from kfgpu.components.training import (
    detect_drift,
    engineer_features,
    evaluate_model,
    train_model,
    validate_data,
)

__all__ = [
    "COMPONENTS",
    "detect_drift",
    "engineer_features",
    "evaluate_model",
    "launch_training",
    "train_model",
    "validate_data",
]

#: Every component, by name, in pipeline order: what ``kfgpu compile`` writes out.
COMPONENTS = {
    "validate_data": validate_data,
    "engineer_features": engineer_features,
    "train_model": train_model,
    "launch_training": launch_training,
    "evaluate_model": evaluate_model,
    "detect_drift": detect_drift,
}
