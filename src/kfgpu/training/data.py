"""Training and validation batches: :func:`make_batches`, which every trainer calls.

Batches sliced from in-memory tensors: no per-row Python, no collate.

A ``DataLoader`` over a ``TensorDataset`` indexes and collates row by row, which costs
more than the forward pass of a small tabular model (FIELD measurements: 0.40 of a
hand-written loop's speed). A split that fits in host memory is held as tensors, so each
batch here is one slice of a permuted index; a split above
``TrainConfig.stream_threshold_mb`` is streamed per rank instead
(:mod:`kfgpu.training.streaming`), with the same batch form and loader protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from kfgpu.training.epochs import EpochPosition
from kfgpu.training.streaming import ShardedSplit

__all__ = ["EpochBatches", "InMemoryBatches", "make_batches"]


@runtime_checkable
class EpochBatches(Protocol):
    """What a trainer iterates: ``(numeric, codes, target)`` batches, an epoch per iteration.

    Every rank gets the same number of batches; the order follows :meth:`set_epoch`; the
    position within an epoch resumes through ``state_dict``/``load_state_dict``.
    """

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, state: dict[str, int]) -> None: ...


def make_batches(
    split: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    weights: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> EpochBatches:
    """The batches of one split for one rank: the one place every trainer builds them.

    Lightning's :class:`~kfgpu.training.lightning.TabularDataModule` (so
    :func:`~kfgpu.training.trainer.train_tabular` and :mod:`kfgpu.training.distributed`)
    and :func:`~kfgpu.training.horovod.train_horovod` call it for their training and
    validation batches. Tensors give :class:`InMemoryBatches` (arguments as its own); a
    :class:`~kfgpu.training.streaming.ShardedSplit` (a split above
    ``TrainConfig.stream_threshold_mb``) gives :class:`~kfgpu.training.streaming.StreamingBatches`
    over this rank's share of its row groups. ``device``: the device the model trains on;
    a streamed raw split applies the fitted transform there when it is a GPU.
    """
    if isinstance(split, ShardedSplit):
        if weights is not None:
            raise ValueError("a streamed split takes no per-row weights")
        return split.batches(
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            pin_memory=pin_memory,
            device=device,
        )
    return InMemoryBatches(
        split,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        pin_memory=pin_memory,
        weights=weights,
    )


class InMemoryBatches(EpochPosition):
    """An iterable of ``(numeric, codes, target)`` batches over tensors held in memory.

    Args:
        tensors: equal-length tensors, sliced together.
        batch_size: rows per batch.
        shuffle: permute rows each epoch (seeded by ``seed + epoch``). Under a trainer,
            :meth:`set_epoch` is called with the trainer's epoch at each epoch start, so the
            order depends on the epoch number only, not on how often this was iterated
            (a resumed run sees the batches the uninterrupted run would have seen); used
            alone, each full iteration advances ``epoch`` by one.
        seed: base seed of the permutation.
        rank, world_size: this process's shard under data parallelism. Every rank gets
            the same number of batches, so collective ops never wait on a finished rank.
        pin_memory: pin batches for faster, non-blocking host-to-GPU copies.
        weights: per-row draw weights (a balanced sampler, see
            :mod:`kfgpu.training.imbalance`): each epoch draws as many rows as there are,
            with replacement, from the same seeded generator (so every rank draws the same
            rows and takes its shard of them). Needs ``shuffle``.

    It is resumable mid-epoch (Lightning's ``state_dict``/``load_state_dict`` protocol): the
    state records the epoch being iterated and the batches served so far, and the first
    iteration after :meth:`load_state_dict` skips those batches of that epoch's order.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        weights: torch.Tensor | None = None,
    ) -> None:
        n = len(tensors[0])
        if weights is not None and (len(weights) != n or not shuffle):
            raise ValueError("weights need one value per row, and shuffle=True")
        self.weights = weights
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors must have the same number of rows")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.init_position()
        self._per_rank = n // world_size if world_size > 1 else n

    def __len__(self) -> int:
        return (self._per_rank + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        epoch, skip = self.begin_epoch()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            if self.weights is not None:
                index = torch.multinomial(self.weights, n, replacement=True, generator=g)
            else:
                index = torch.randperm(n, generator=g)
        else:
            index = torch.arange(n)
        if self.world_size > 1:
            index = index[: self._per_rank * self.world_size][self.rank :: self.world_size]
        for start in range(skip * self.batch_size, len(index), self.batch_size):
            idx = index[start : start + self.batch_size]
            batch = tuple(t[idx] for t in self.tensors)
            if self.pin_memory:
                batch = tuple(b.pin_memory() for b in batch)
            self._served += 1
            yield batch
