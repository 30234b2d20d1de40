"""KFP components: thin adapters over the library (the only place, with pipelines/, that
imports kfp).

Every component is a lightweight Python component whose ``base_image`` is the kfgpu image
of this version and which installs nothing: in a cluster the image has kfgpu, under
``kfp.local`` the current environment has it. A body reads its inputs' paths, calls one
library step, and publishes the result.
"""

from __future__ import annotations

from kfgpu.components.launch import launch_training
from kfgpu.components.monitoring import (
    fetch_model,
    monitor_endpoint,
    trigger_retraining,
    validate_batch,
)
from kfgpu.components.ops import fingerprint_data
from kfgpu.components.registry import check_gate, register_model
from kfgpu.components.serving import (
    batch_predict,
    deploy_model,
    promote_canary,
    rollback_canary,
)
from kfgpu.components.training import (
    detect_drift,
    engineer_features,
    evaluate_model,
    train_model,
    validate_data,
)
from kfgpu.components.tuning import tune_hyperparameters, tune_worker

__all__ = [
    "COMPONENTS",
    "batch_predict",
    "check_gate",
    "deploy_model",
    "detect_drift",
    "engineer_features",
    "evaluate_model",
    "fingerprint_data",
    "fetch_model",
    "launch_training",
    "monitor_endpoint",
    "promote_canary",
    "register_model",
    "rollback_canary",
    "train_model",
    "trigger_retraining",
    "tune_hyperparameters",
    "tune_worker",
    "validate_batch",
    "validate_data",
]

#: Every component, by name, in pipeline order: what ``kfgpu compile`` writes out.
COMPONENTS = {
    "fingerprint_data": fingerprint_data,
    "validate_data": validate_data,
    "engineer_features": engineer_features,
    "tune_worker": tune_worker,
    "tune_hyperparameters": tune_hyperparameters,
    "train_model": train_model,
    "launch_training": launch_training,
    "evaluate_model": evaluate_model,
    "check_gate": check_gate,
    "register_model": register_model,
    "deploy_model": deploy_model,
    "promote_canary": promote_canary,
    "rollback_canary": rollback_canary,
    "batch_predict": batch_predict,
    "detect_drift": detect_drift,
    "monitor_endpoint": monitor_endpoint,
    "trigger_retraining": trigger_retraining,
    "fetch_model": fetch_model,
    "validate_batch": validate_batch,
}
