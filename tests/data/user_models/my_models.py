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


class FocalLossMLP(pl.LightningModule):
    """A LightningModule with its own training logic: focal loss, SGD with momentum.

    Built from the recorded network config like any network (so serving rebuilds it);
    reads the run's settings from ``self.kfgpu`` at fit time.
    """

    training_steps = 0  # counted on the class: the test reads it after fit

    def __init__(self, n_numeric: int, cardinalities: list[int], n_outputs: int, **_: Any) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(k, 4) for k in cardinalities)
        self.body = nn.Sequential(
            nn.Linear(n_numeric + 4 * len(cardinalities), 32), nn.ReLU(), nn.Linear(32, n_outputs)
        )

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric, *(e(codes[:, i]) for i, e in enumerate(self.embeddings))]
        return self.body(torch.cat(parts, 1))

    def _focal(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        numeric, codes, y = batch
        logp = torch.log_softmax(self(numeric, codes).float(), 1).gather(1, y[:, None])[:, 0]
        return (-((1 - logp.exp()) ** 2) * logp).mean()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        type(self).training_steps += 1
        return self._focal(batch)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.log("val_loss", self._focal(batch), batch_size=len(batch[-1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.kfgpu.learning_rate * 10, momentum=0.9)


class NoValidation(FocalLossMLP):
    validation_step = pl.LightningModule.validation_step  # type: ignore[assignment]


class Balanced(pl.LightningDataModule):
    """A user's DataModule: class-balanced sampling of the encoded training split."""

    train_batches = 0

    def __init__(
        self,
        train: tuple[torch.Tensor, ...],
        val: tuple[torch.Tensor, ...],
        *,
        batch_size: int,
        seed: int,
        pin_memory: bool,
    ) -> None:
        super().__init__()
        self.train, self.val, self.batch_size, self.seed = train, val, batch_size, seed

    def train_dataloader(self) -> Any:
        y = self.train[-1]
        weights = (1.0 / torch.bincount(y).float())[y]
        sampler = torch.utils.data.WeightedRandomSampler(
            weights, len(y), generator=torch.Generator().manual_seed(self.seed)
        )
        dataset = torch.utils.data.TensorDataset(*self.train)

        def count(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
            type(self).train_batches += 1
            return tuple(torch.stack(column) for column in zip(*batch, strict=True))

        return torch.utils.data.DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=count
        )

    def val_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(*self.val), batch_size=4096
        )


class _Stream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Batches from an iterator: a loader without a length, as a streaming source gives."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int) -> None:
        self.tensors, self.batch_size = tensors, batch_size

    def __iter__(self) -> Any:
        n = len(self.tensors[0])
        for start in range(0, n, self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in self.tensors)


class Streamed(Balanced):
    """A user's DataModule whose train loader has no length."""

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(_Stream(self.train, self.batch_size), batch_size=None)
