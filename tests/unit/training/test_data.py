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


def test_set_epoch_fixes_the_order_whatever_was_iterated_before() -> None:
    a = InMemoryBatches(_tensors(50), batch_size=8, shuffle=True, seed=3)
    b = InMemoryBatches(_tensors(50), batch_size=8, shuffle=True, seed=3)
    for _ in range(3):
        _epoch(a)  # a has been iterated three times, b never
    a.set_epoch(5)
    b.set_epoch(5)
    assert _epoch(a) == _epoch(b)


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("served", [0, 1, 3])
def test_load_state_dict_resumes_mid_epoch(world_size: int, served: int) -> None:
    def make(rank: int) -> InMemoryBatches:
        return InMemoryBatches(
            _tensors(50), batch_size=4, shuffle=True, seed=1, rank=rank, world_size=world_size
        )

    for rank in range(world_size):
        ref = make(rank)
        ref.set_epoch(2)
        expected = _epoch(ref)
        first = make(rank)
        first.set_epoch(2)
        it = iter(first)
        seen = [b[1].tolist() for _, b in zip(range(served), it, strict=False)]
        state = first.state_dict()
        assert state == {"epoch": 2, "served": served}
        resumed = make(rank)
        resumed.load_state_dict(state)
        rest = _epoch(resumed)
        assert [i for batch in seen for i in batch] + rest == expected
        # Only that one iteration skips: the next epoch is whole.
        assert len(_epoch(resumed)) == len(expected)


def test_load_state_dict_of_a_finished_epoch_starts_the_next() -> None:
    a = InMemoryBatches(_tensors(20), batch_size=4, shuffle=True, seed=0)
    a.set_epoch(4)
    _epoch(a)
    b = InMemoryBatches(_tensors(20), batch_size=4, shuffle=True, seed=0)
    b.load_state_dict(a.state_dict())
    assert b.epoch == 5
    assert len(_epoch(b)) == 20
