"""Training: the typed config, model families, the Lightning module and the trainer.

Importing this package is cheap; torch and Lightning load when a trainer or network is
built. The model-family seam is :func:`register_family`; ``train_tabular`` trains and
writes the model bundle; ``train_model_step`` is what the KFP component calls.
"""

from __future__ import annotations

from typing import Any

from kfgpu.training.config import TrainConfig
from kfgpu.training.families import build_network, register_family

__all__ = [
    "TrainConfig",
    "build_network",
    "register_family",
    "train_model_step",
    "train_tabular",
]


def __getattr__(name: str) -> Any:
    if name == "train_tabular":
        from kfgpu.training.trainer import train_tabular

        return train_tabular
    if name == "train_model_step":
        from kfgpu.training.step import train_model_step

        return train_model_step
    raise AttributeError(f"module 'kfgpu.training' has no attribute {name!r}")
