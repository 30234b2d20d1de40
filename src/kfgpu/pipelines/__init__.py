"""KFP pipeline definitions: wiring and resources only."""

from __future__ import annotations

from kfgpu.pipelines.training import training

__all__ = ["PIPELINES", "training"]

#: Every pipeline by the name ``kfgpu run`` and ``kfgpu compile`` know it by.
PIPELINES = {"training": training}
