"""Tests for kfgpu.training.data.InMemoryBatches: epoch coverage, shuffling, sharding."""

from __future__ import annotations

import pytest
import torch

from kfgpu.training.data import InMemoryBatches


def _tensors(n: int) -> tuple[torch.Tensor, ...]:
    ids = torch.arange(n)
    return ids.float().unsqueeze(1) * 10.0, ids.clone(), ids * 2


def _epoch(batches: InMemoryBatches) -> list[int]:
    out: list[int] = []
    for x, ids, y in batches:
        # The tensors are sliced together: each row's values stay aligned.
        assert torch.equal(x[:, 0], ids.float() * 10.0)
        assert torch.equal(y, ids * 2)
        out += ids.tolist()
    return out


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "batch_size"), [(100, 32), (96, 32), (5, 8), (1, 1)])
def test_every_row_once_per_epoch(n: int, batch_size: int, shuffle: bool) -> None:
    batches = InMemoryBatches(_tensors(n), batch_size=batch_size, shuffle=shuffle, seed=3)
    for _ in range(2):
        rows = _epoch(batches)
        assert sorted(rows) == list(range(n))
    sizes = [len(b[0]) for b in batches]
    assert len(sizes) == len(batches) == -(-n // batch_size)
    assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size


def test_no_shuffle_keeps_order() -> None:
    assert _epoch(InMemoryBatches(_tensors(10), batch_size=3, shuffle=False)) == list(range(10))


def test_shuffle_changes_order_between_epochs() -> None:
    batches = InMemoryBatches(_tensors(200), batch_size=64, shuffle=True, seed=0)
    first, second = _epoch(batches), _epoch(batches)
    assert first != second
    assert first != list(range(200))


def test_shuffle_is_deterministic_for_a_seed() -> None:
    a = InMemoryBatches(_tensors(200), batch_size=64, shuffle=True, seed=42)
    b = InMemoryBatches(_tensors(200), batch_size=64, shuffle=True, seed=42)
    c = InMemoryBatches(_tensors(200), batch_size=64, shuffle=True, seed=43)
    epochs_a = [_epoch(a) for _ in range(3)]
    assert epochs_a == [_epoch(b) for _ in range(3)]
    assert epochs_a[0] != _epoch(c)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n", [101, 100, 7])
def test_two_ranks_get_disjoint_equal_shards(n: int, shuffle: bool) -> None:
    world = 2
    shards = [
        InMemoryBatches(
            _tensors(n), batch_size=8, shuffle=shuffle, seed=9, rank=r, world_size=world
        )
        for r in range(world)
    ]
    for _ in range(2):  # both epochs: the ranks' permutations stay in step
        rows = [_epoch(s) for s in shards]
        counts = [sum(1 for _ in s) for s in shards]
        assert set(rows[0]).isdisjoint(rows[1])
        assert len(rows[0]) == len(rows[1]) == n // world
        assert len(set(rows[0]) | set(rows[1])) == (n // world) * world
        assert counts[0] == counts[1] == len(shards[0]) == len(shards[1])


def test_mismatched_lengths_rejected() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        InMemoryBatches((torch.zeros(3), torch.zeros(4)), batch_size=2, shuffle=False)
