"""The served module: fitted transform, network and output head in one torch module.

This is what serving (KServe), batch prediction, evaluation and an ONNX export all run,
so they cannot disagree with one another or with training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from kfgpu.training.families import build_network

if TYPE_CHECKING:
    from kfgpu.description import BundleDescription
    from kfgpu.features.transform import FittedTransform

__all__ = ["ServedModel"]


class ServedModel(nn.Module):
    """raw numerics + category indices -> class probabilities, or regression values."""

    def __init__(
        self,
        transform: nn.Module,
        network: nn.Module,
        *,
        task: str,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.network = network
        self.task = task
        self.target_mean = float(target_mean)
        self.target_scale = float(target_scale)

    @classmethod
    def from_description(cls, desc: BundleDescription, fitted: FittedTransform) -> ServedModel:
        network = build_network(desc.model_family, dict(desc.model_config))
        return cls(
            fitted.to_module(),
            network,
            task=desc.task,
            target_mean=desc.target_mean,
            target_scale=desc.target_scale,
        )

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x, c = self.transform(numeric, codes)
        return self.forward_transformed(x, c)

    def forward_transformed(self, dense: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The network and the output head on the transform's outputs (``dense``, ``emb``:
        :meth:`~kfgpu.features.transform.FittedTransform.transform_arrays`)."""
        out = self.network(dense, emb)
        if self.task == "classification":
            return torch.softmax(out.float(), dim=1)
        return out.float().squeeze(1) * self.target_scale + self.target_mean
