"""The tabular MLP: numeric inputs plus one embedding per categorical column."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TabularMLP"]


class TabularMLP(nn.Module):
    """Embeddings for categoricals, concatenated with numerics, through an MLP.

    Args:
        n_numeric: number of standardised numeric inputs.
        cardinalities: per categorical column, the embedding table size (index 0 is the
            missing/unseen bucket).
        embedding_dims: per categorical column, the embedding width.
        hidden_sizes: widths of the hidden layers.
        dropout: dropout after each hidden layer.
        n_outputs: class count for classification, 1 for regression.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        embedding_dims: list[int],
        hidden_sizes: list[int],
        dropout: float,
        n_outputs: int,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(cardinalities, embedding_dims, strict=True)
        )
        width = n_numeric + sum(embedding_dims)
        layers: list[nn.Module] = []
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if len(self.embeddings) == 0:
            return self.mlp(numeric)
        parts = [numeric, *(emb(codes[:, i]) for i, emb in enumerate(self.embeddings))]
        return self.mlp(torch.cat(parts, dim=1))
