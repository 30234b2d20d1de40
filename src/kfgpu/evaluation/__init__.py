"""Evaluation: held-out metrics beside a constant predictor's, and the HTML report.

Importing this package is cheap; scikit-learn loads when metrics are computed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Evaluation",
    "evaluate_classification",
    "evaluate_model_step",
    "evaluate_regression",
    "render_html",
]

_LAZY = {
    "Evaluation": "kfgpu.evaluation.metrics",
    "evaluate_classification": "kfgpu.evaluation.metrics",
    "evaluate_regression": "kfgpu.evaluation.metrics",
    "render_html": "kfgpu.evaluation.report",
    "evaluate_model_step": "kfgpu.evaluation.step",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kfgpu.evaluation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
