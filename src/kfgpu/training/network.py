"""The built-in networks: the tabular MLP and a small CNN for pixel features."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "TabularMLP"]


def _embeddings(cardinalities: list[int], embedding_dims: list[int]) -> nn.ModuleList:
    """One embedding table per categorical input (index 0 = missing/unseen)."""
    return nn.ModuleList(
        nn.Embedding(c, d) for c, d in zip(cardinalities, embedding_dims, strict=True)
    )


def _embedded(embeddings: nn.ModuleList, codes: torch.Tensor) -> list[torch.Tensor]:
    return [emb(codes[:, i]) for i, emb in enumerate(embeddings)]


def _mlp(width: int, hidden_sizes: list[int], dropout: float, n_outputs: int) -> nn.Sequential:
    """Linear-ReLU-Dropout per hidden width, then the output layer."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


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
        self.embeddings = _embeddings(cardinalities, embedding_dims)
        self.mlp = _mlp(n_numeric + sum(embedding_dims), hidden_sizes, dropout, n_outputs)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if len(self.embeddings) == 0:
            return self.mlp(numeric)
        return self.mlp(torch.cat([numeric, *_embedded(self.embeddings, codes)], dim=1))


class SmallCNN(nn.Module):
    """A small CNN for images given as one dense feature per pixel.

    ``pixel_index[j]`` is the flat position (channel, row, column) in a
    ``channels x height x width`` image of dense feature ``j``, or -1 for a feature that is
    not a pixel; such features and the embeddings join the image features in the head.
    Pixels the feature spec dropped (constant in training) stay 0, which after
    standardisation is their training value.

    Args:
        n_numeric: dense features.
        cardinalities, embedding_dims: embedding tables, as for :class:`TabularMLP`.
        hidden_sizes: widths of the head's hidden layers.
        dropout: dropout in the head.
        n_outputs: class count, or 1 for regression.
        image_shape: ``[channels, height, width]``.
        pixel_index: per dense feature, its flat image position or -1.
        conv_channels: output channels of the two 3x3 convolutions.
    """

    pixel_cols: torch.Tensor
    pixel_pos: torch.Tensor
    other_cols: torch.Tensor

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        embedding_dims: list[int],
        hidden_sizes: list[int],
        dropout: float,
        n_outputs: int,
        image_shape: list[int],
        pixel_index: list[int],
        conv_channels: list[int],
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        index = torch.tensor(pixel_index, dtype=torch.long)
        self.register_buffer("pixel_cols", torch.nonzero(index >= 0).flatten())
        self.register_buffer("pixel_pos", index[index >= 0])
        self.register_buffer("other_cols", torch.nonzero(index < 0).flatten())
        c1, c2 = conv_channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.embeddings = _embeddings(cardinalities, embedding_dims)
        # AdaptiveAvgPool2d(4): 4 x 4 x c2 image features.
        width = 16 * c2 + int((index < 0).sum()) + sum(embedding_dims)
        self.head = _mlp(width, hidden_sizes, dropout, n_outputs)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        flat = numeric.new_zeros((numeric.shape[0], c * h * w))
        flat[:, self.pixel_pos] = numeric[:, self.pixel_cols]
        image = flat.view(-1, c, h, w)
        if image.is_cuda:
            # Tensor cores read NHWC: convolutions run faster in channels_last.
            image = image.contiguous(memory_format=torch.channels_last)
        parts = [self.features(image), numeric[:, self.other_cols]]
        return self.head(torch.cat([*parts, *_embedded(self.embeddings, codes)], dim=1))
