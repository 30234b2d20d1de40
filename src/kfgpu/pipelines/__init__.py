"""KFP pipeline definitions: wiring and resources only."""

from __future__ import annotations

from kfgpu.pipelines.monitoring import batch_inference, monitoring
from kfgpu.pipelines.training import training
from kfgpu.pipelines.tuning import tuning

__all__ = ["PIPELINES", "batch_inference", "monitoring", "training", "tuning"]

#: Every pipeline by the name ``kfgpu run`` and ``kfgpu compile`` know it by.
PIPELINES = {
    "training": training,
    "tuning": tuning,
    "monitoring": monitoring,
    "batch_inference": batch_inference,
}
