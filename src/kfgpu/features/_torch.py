"""The torch half of the fitted transform (imported only where torch is wanted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from kfgpu.features.transform import FittedTransform


class TransformModule(nn.Module):
    """Impute, standardise and clip numerics; bound category indices. Plain tensor ops.

    ``forward(numeric, codes)`` takes float32 raw numerics (NaN = missing) and int64
    vocabulary indices, exactly what :meth:`FittedTransform.raw_arrays` returns.
    """

    fill: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    max_code: torch.Tensor

    def __init__(self, fitted: FittedTransform) -> None:
        super().__init__()
        self.register_buffer("fill", torch.tensor(fitted.fill, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(fitted.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(fitted.scale, dtype=torch.float32))
        self.register_buffer(
            "max_code", torch.tensor(fitted.cardinalities, dtype=torch.int64).sub(1)
        )
        self.clip = float(fitted.clip)

    def forward(
        self, numeric: torch.Tensor, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.where(torch.isfinite(numeric), numeric, self.fill)
        x = ((x - self.mean) / self.scale).clamp(-self.clip, self.clip)
        # An index outside the vocabulary can only come from a caller that skipped
        # raw_arrays; send it to the unseen bucket rather than index out of range.
        codes = torch.where((codes < 0) | (codes > self.max_code), torch.zeros_like(codes), codes)
        return x, codes
