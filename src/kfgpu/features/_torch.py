"""The torch half of the fitted transform (imported only where torch is wanted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from kfgpu.features.layout import CROSS_MOD, CROSS_PRIME

if TYPE_CHECKING:
    from kfgpu.features.transform import FittedTransform

__all__ = ["TransformModule"]


class TransformModule(nn.Module):
    """:meth:`FittedTransform.transform_arrays` in plain tensor ops.

    ``forward(num, codes)`` takes float32 raw numerics (NaN = missing) and int64 codes,
    exactly what :meth:`FittedTransform.raw_arrays` returns, and returns ``(dense, emb)``.
    Every fitted array is a buffer, so ``.to(device)`` moves the whole transform.
    """

    fill: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    log: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    outclip: torch.Tensor
    indicator_cols: torch.Tensor
    dense_perm: torch.Tensor
    code_card: torch.Tensor

    def __init__(self, fitted: FittedTransform) -> None:
        super().__init__()
        lay = fitted.layout
        f32, i64 = torch.float32, torch.int64
        self.register_buffer("fill", torch.tensor(lay.fill, dtype=f32))
        self.register_buffer("lo", torch.tensor(lay.lo, dtype=f32))
        self.register_buffer("hi", torch.tensor(lay.hi, dtype=f32))
        self.register_buffer("log", torch.tensor(lay.log, dtype=torch.bool))
        self.register_buffer("center", torch.tensor(lay.center, dtype=f32))
        self.register_buffer("scale", torch.tensor(lay.scale, dtype=f32))
        self.register_buffer("outclip", torch.tensor(lay.outclip, dtype=f32))
        self.register_buffer("indicator_cols", torch.tensor(lay.indicator_cols, dtype=i64))
        self.register_buffer("dense_perm", torch.tensor(lay.dense_perm, dtype=i64))
        self.register_buffer("code_card", torch.tensor(lay.code_card, dtype=i64))
        for j, bounds in lay.boundaries:
            self.register_buffer(f"bounds_{j}", torch.tensor(bounds, dtype=f32))
        for i, (comps, _) in enumerate(lay.crosses):
            self.register_buffer(f"cross_{i}", torch.tensor(comps, dtype=i64))
        self.n_numeric = len(lay.numeric)
        self.n_codes = len(lay.code_inputs)
        self.cross_buckets = [b for _, b in lay.crosses]
        # (source, index, cardinality, encode) per integer output, in layout order.
        self.outputs = [(o.source, o.index, o.cardinality, o.encode) for o in lay.outputs]

    def forward(
        self, numeric: torch.Tensor, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num = numeric.to(torch.float32)
        codes = codes.to(torch.int64)
        n = num.shape[0]
        zeros = torch.zeros_like(codes)
        # An index outside the table can only come from a caller that skipped raw_arrays;
        # send it to the unseen bucket rather than index out of range.
        codes = torch.where((codes < 0) | (codes >= self.code_card), zeros, codes)
        missing = ~torch.isfinite(num)
        x = torch.where(missing, self.fill, num)
        x = torch.minimum(torch.maximum(x, self.lo), self.hi)
        t = torch.where(self.log, torch.sign(x) * torch.log1p(torch.abs(x)), x)
        y = (t - self.center) / self.scale
        y = torch.minimum(torch.maximum(y, -self.outclip), self.outclip)
        ind = missing.index_select(1, self.indicator_cols).to(torch.float32)
        base = torch.cat([y, ind], dim=1).index_select(1, self.dense_perm)

        raw = torch.where(missing, torch.zeros_like(num), num)
        index: list[torch.Tensor] = []
        for source, i, _, _ in self.outputs:
            if source == "code":
                index.append(codes[:, i])
            elif source == "bucket":
                bounds = getattr(self, f"bounds_{i}")
                b = torch.bucketize(raw[:, i].contiguous(), bounds, right=True) + 1
                index.append(torch.where(missing[:, i], torch.zeros_like(b), b))
            else:
                comps = codes.index_select(1, getattr(self, f"cross_{i}"))
                h = torch.zeros(n, dtype=torch.int64, device=codes.device)
                for k in range(comps.shape[1]):
                    h = (h * CROSS_PRIME + comps[:, k] % CROSS_MOD) % CROSS_MOD
                cross = 1 + h % self.cross_buckets[i]
                index.append(torch.where((comps == 0).any(dim=1), torch.zeros_like(h), cross))

        blocks = [base]
        for (_, _, card, encode), idx in zip(self.outputs, index, strict=True):
            if encode == "onehot":
                blocks.append(F.one_hot(idx, card).to(torch.float32))
        for (_, _, _, encode), idx in zip(self.outputs, index, strict=True):
            if encode == "ordinal":
                blocks.append(idx.to(torch.float32).unsqueeze(1))
        dense = torch.cat(blocks, dim=1)
        emb_cols = [
            idx
            for (_, _, _, encode), idx in zip(self.outputs, index, strict=True)
            if encode == "embedding"
        ]
        emb = (
            torch.stack(emb_cols, dim=1)
            if emb_cols
            else torch.zeros((n, 0), dtype=torch.int64, device=codes.device)
        )
        return dense, emb
