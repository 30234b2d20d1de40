"""A user's own network, as a Lightning user would write it, for the import-path tests."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn


class WideAndDeep(pl.LightningModule):
    """A linear 'wide' part plus a small 'deep' MLP over numerics and embeddings."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        embedding_dims: list[int],
        n_outputs: int,
        **_: Any,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(k, d) for k, d in zip(cardinalities, embedding_dims, strict=True)
        )
        width = n_numeric + sum(embedding_dims)
        self.wide = nn.Linear(width, n_outputs)
        self.deep = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, n_outputs))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x = torch.cat([numeric, *(e(codes[:, i]) for i, e in enumerate(self.embeddings))], 1)
        return self.wide(x) + self.deep(x)


class NotANetwork:
    pass
