"""KFP pipeline definitions: wiring and resources only."""

from __future__ import annotations

from kfgpu.pipelines.training import training
from kfgpu.pipelines.tuning import tuning

__all__ = ["PIPELINES", "training", "tuning"]

#: Every pipeline by the name ``kfgpu run`` and ``kfgpu compile`` know it by.
PIPELINES = {"training": training, "tuning": tuning}
