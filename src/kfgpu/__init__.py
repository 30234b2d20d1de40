"""kfgpu: Kubeflow Pipelines components for GPU clusters.

Importing :mod:`kfgpu` is cheap: no torch, Lightning, MLflow or kfp is imported until a
function that needs one runs. The stages live in subpackages (``kfgpu.data``,
``kfgpu.validation``, ``kfgpu.features``, ``kfgpu.training``, ``kfgpu.evaluation``,
``kfgpu.registry``); the KFP layer lives in ``kfgpu.components`` and ``kfgpu.pipelines``.
"""

from __future__ import annotations

from kfgpu._version import __version__
from kfgpu.errors import KfgpuError

__all__ = ["KfgpuError", "__version__"]
