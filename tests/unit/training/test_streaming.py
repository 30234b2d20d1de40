"""Tests for kfgpu.training.streaming: per-rank sharding, equal batches, shuffle, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kfgpu.data.shards import ShardSet, open_shards
from kfgpu.errors import ConfigError, TrainingError
from kfgpu.training.streaming import (
    ShardedSplit,
    StreamingBatches,
    class_weights_from_counts,
    open_training_split,
    read_row_group,
    split_labels,
    transform_on_device,
)
from tests.parquet_parts import write_parts


def _shards(root: Path, sizes: list[list[int]]) -> ShardSet:
    """Files of row groups of the given sizes; ``row_id`` numbers the rows 0..N-1."""
    root.mkdir(parents=True, exist_ok=True)
    start = 0
    for f, groups in enumerate(sizes):
        n = sum(groups)
        ids = np.arange(start, start + n)
        table = pa.table({"row_id": ids, "x": ids * 2.0})
        with pq.ParquetWriter(root / f"part-{f:03d}.parquet", table.schema) as w:
            at = 0
            for g in groups:
                w.write_table(table.slice(at, g))
                at += g
        start += n
    (root / "_SUCCESS").write_text("")
    return open_shards(str(root))


def _ids(table: pa.Table) -> list[np.ndarray]:
    ids = table.column("row_id").to_numpy()
    x = table.column("x").to_numpy()
    assert np.array_equal(x, ids * 2.0)  # the columns of a row stay together
    return [ids]


def _loader(shards: ShardSet, **kw: object) -> StreamingBatches:
    args: dict = {"batch_size": 16, "shuffle": True, "seed": 7, "buffer_rows": 20}
    args.update(kw)
    return StreamingBatches(shards, _ids, **args)  # type: ignore[arg-type]


def _epoch(loader: StreamingBatches) -> list[list[int]]:
    return [b[0].tolist() for b in loader]


SIZES = [[13, 7], [1], [30, 30, 5], [9], [22, 3, 3]]  # 123 rows, 10 row groups


def test_reads_every_row_group_of_every_file(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    assert shards.rows == 123 and len(shards.row_groups()) == 10 and len(shards.files) == 5
    assert read_row_group(shards, shards.row_groups()[3], ["row_id"]).num_rows == 30


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", [16, 41, 7])
def test_every_row_exactly_once_per_epoch_over_ranks(
    tmp_path: Path, world_size: int, batch_size: int
) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    loaders = [
        _loader(shards, batch_size=batch_size, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    orders = []
    for _ in range(3):
        seen: list[int] = []
        counts = set()
        for loader in loaders:
            batches = _epoch(loader)
            counts.add(len(batches))
            assert len(batches) == len(loader)
            assert all(0 < len(b) <= batch_size for b in batches)
            seen += [i for b in batches for i in b]
        assert len(counts) == 1  # every rank the same number of batches
        assert sorted(seen) == list(range(123))  # none dropped, none twice
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]  # a new order each epoch


def test_batch_sizes_share_the_leftover_evenly(tmp_path: Path) -> None:
    # 123 rows on 2 ranks: 61 + 62; batch 31 -> 2 batches each, none empty, none repeated.
    shards = _shards(tmp_path / "d", SIZES)
    a, b = (_loader(shards, batch_size=31, rank=r, world_size=2) for r in range(2))
    assert [len(x) for x in _epoch(a)] == [31, 30]
    assert [len(x) for x in _epoch(b)] == [31, 31]
    # 123 rows on 3 ranks: 41 each; batch 40 -> 2 batches of 21 and 20, not 40 and 1.
    c = _loader(shards, batch_size=40, rank=0, world_size=3)
    assert [len(x) for x in _epoch(c)] == [21, 20]


def test_ranks_read_disjoint_row_groups_except_on_boundaries(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    loaders = [_loader(shards, rank=r, world_size=3) for r in range(3)]
    read = [{(u.file, u.index) for w in ld.windows(0) for u, _, _ in w} for ld in loaders]
    shared = (read[0] & read[1]) | (read[1] & read[2]) | (read[0] & read[2])
    assert len(shared) <= 2  # at most one row group per boundary between ranks
    assert sum(len(r) for r in read) <= len(shards.row_groups()) + 2


def test_shuffle_window_is_bounded(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    loader = _loader(shards, buffer_rows=20)
    biggest = max(u.rows for u in shards.row_groups())
    for epoch in range(3):
        sizes = [sum(b - a for _, a, b in w) for w in loader.windows(epoch)]
        assert sum(sizes) == 123
        assert max(sizes) < 20 + biggest


def test_no_shuffle_keeps_the_data_set_order(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    rows = [i for b in _epoch(_loader(shards, shuffle=False)) for i in b]
    assert rows == list(range(123))


def test_rows_mix_within_the_buffer_and_across_shards(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    first = _epoch(_loader(shards, buffer_rows=64))[0]
    # One batch holds rows of several row groups, out of their stored order.
    assert first != sorted(first)
    assert len({i // 30 for i in first}) > 1


@pytest.mark.parametrize("served", [0, 1, 3, 5, 7])
@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_mid_epoch_continues_the_same_order(
    tmp_path: Path, served: int, world_size: int
) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    for rank in range(world_size):
        whole = _loader(shards, rank=rank, world_size=world_size, batch_size=8)
        whole.set_epoch(2)
        expected = _epoch(whole)
        first = _loader(shards, rank=rank, world_size=world_size, batch_size=8)
        first.set_epoch(2)
        it = iter(first)
        got = [next(it)[0].tolist() for _ in range(served)]
        state = first.state_dict()
        assert state == {"epoch": 2, "served": served}
        again = _loader(shards, rank=rank, world_size=world_size, batch_size=8)
        again.load_state_dict(state)
        got += _epoch(again)
        assert got == expected
        assert again.state_dict() == {"epoch": 2, "served": len(expected)}


def test_the_epoch_is_read_at_the_first_batch_not_at_iter(tmp_path: Path) -> None:
    # Lightning calls iter() on the loader before on_train_epoch_start sets the epoch.
    shards = _shards(tmp_path / "d", SIZES)
    loader, reference = _loader(shards), _loader(shards)
    reference.set_epoch(1)
    it = iter(loader)
    loader.set_epoch(1)
    assert [b[0].tolist() for b in it] == _epoch(reference)


def test_resume_after_a_whole_epoch_starts_the_next(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", SIZES)
    loader = _loader(shards)
    loader.load_state_dict({"epoch": 0, "served": len(loader)})
    nxt = _loader(shards)
    nxt.set_epoch(1)
    assert _epoch(loader) == _epoch(nxt)


def test_too_few_rows_for_the_ranks_is_refused(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "d", [[3]])
    with pytest.raises(ValueError, match="cannot be shared among 4 ranks"):
        _loader(shards, world_size=4, rank=0)


def test_abandoned_iteration_stops_its_threads(tmp_path: Path) -> None:
    import gc
    import threading

    shards = _shards(tmp_path / "d", SIZES)
    it = iter(_loader(shards, buffer_rows=4, prefetch=3))
    next(it)
    it.close()  # type: ignore[attr-defined]
    del it
    gc.collect()
    for t in threading.enumerate():
        if t.name.startswith("kfgpu-stream"):
            t.join(timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("kfgpu-stream")]


# ---- the training split: labels, transform, threshold -------------------------------------


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "age": rng.integers(18, 90, n).astype(float),
            "city": rng.choice(["a", "b", "c", None], n),
            "label": rng.choice(["no", "yes"], n, p=[0.8, 0.2]),
        }
    )


def _write(df: pd.DataFrame, root: Path, files: int = 3, group: int = 50) -> str:
    return write_parts(df, root, files, group)


@pytest.fixture
def fitted_and_frame() -> tuple[object, pd.DataFrame]:
    from kfgpu.features import infer_feature_spec
    from kfgpu.features.transform import fit_transform

    df = _frame(400)
    return fit_transform(df, infer_feature_spec(df, "label")), df


def test_labels_streamed_match_the_in_memory_ones(tmp_path: Path, fitted_and_frame) -> None:
    from kfgpu.training.trainer import encode_labels

    _, df = fitted_and_frame
    shards = open_shards(_write(df, tmp_path / "d"))
    labels = split_labels(shards, "label", task="classification")
    expected, _ = encode_labels(df["label"], [], task="classification")
    assert labels == expected
    reg = split_labels(shards, "amount", task="regression")
    exp_reg, _ = encode_labels(df["amount"], [], task="regression")
    assert reg == pytest.approx(exp_reg)
    with pytest.raises(TrainingError, match="appear outside the training split"):
        split_labels(shards, "label", task="classification", others=[pd.Series(["maybe"])])
    with pytest.raises(TrainingError, match="no target column 'nope'"):
        split_labels(shards, "nope", task="classification")


def test_balanced_class_weight_from_counts_matches_rows(fitted_and_frame) -> None:
    from kfgpu.training.imbalance import class_weight_tensor

    _, df = fitted_and_frame
    y = torch.tensor((df["label"] == "yes").to_numpy().astype(np.int64))
    counts = {"no": int((y == 0).sum()), "yes": int((y == 1).sum())}
    for spec in ("balanced", "yes=5", "none"):
        a = class_weights_from_counts(spec, ["no", "yes"], counts)
        b = class_weight_tensor(spec, ["no", "yes"], y)
        assert (a is None and b is None) or torch.allclose(a, b)  # type: ignore[arg-type]


def test_split_batches_apply_the_fitted_transform(tmp_path: Path, fitted_and_frame) -> None:
    fitted, df = fitted_and_frame
    shards = open_shards(_write(df, tmp_path / "d"))
    labels = split_labels(shards, "label", task="classification")
    split = ShardedSplit(
        shards,
        transform=fitted,
        target="label",
        labels=labels,
        task="classification",  # type: ignore[arg-type]
        transformed=False,
    )
    dense, emb = fitted.transform(df)  # type: ignore[attr-defined]
    got = list(split.batches(batch_size=64, shuffle=False, seed=0))
    assert torch.allclose(torch.cat([b[0] for b in got]), torch.from_numpy(dense))
    assert torch.equal(torch.cat([b[1] for b in got]), torch.from_numpy(emb))
    y = torch.cat([b[2] for b in got])
    assert torch.equal(y, torch.tensor((df["label"] == "yes").to_numpy().astype(np.int64)))
    # The device path (the GPU's, run here on the CPU): raw inputs, then the torch module.
    raw = split.decode(read_row_group(shards, shards.row_groups()[0], split.columns), raw=True)
    on_device = transform_on_device(fitted, "cpu")(tuple(torch.from_numpy(a) for a in raw))  # type: ignore[arg-type]
    assert torch.allclose(on_device[0], torch.from_numpy(dense[:50]), atol=1e-6)
    assert torch.equal(on_device[1], torch.from_numpy(emb[:50]))


def test_threshold_picks_the_path(tmp_path: Path, fitted_and_frame) -> None:
    fitted, df = fitted_and_frame
    uri = _write(df, tmp_path / "d")
    kw = {"transform": fitted, "target": "label", "task": "classification", "transformed": False}
    small = open_training_split(uri, threshold_mb=1.0, **kw)  # type: ignore[arg-type]
    assert isinstance(small, pd.DataFrame) and len(small) == 400
    big = open_training_split(uri, threshold_mb=0, **kw)  # type: ignore[arg-type]
    assert isinstance(big, ShardedSplit) and len(big) == 400
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    assert isinstance(open_training_split(str(csv), threshold_mb=0, **kw), pd.DataFrame)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="stream_threshold_mb=-1"):
        open_training_split(uri, threshold_mb=-1, **kw)  # type: ignore[arg-type]


def test_threshold_setting_is_validated() -> None:
    from kfgpu.training.config import TrainConfig

    assert TrainConfig().stream_threshold_mb == 64
    assert TrainConfig.from_dict({"stream_threshold_mb": 0}).stream_threshold_mb == 0
    for bad in (-1, float("nan"), "big", True):
        with pytest.raises(ConfigError, match="stream_threshold_mb="):
            TrainConfig(stream_threshold_mb=bad)  # type: ignore[arg-type]
    for bad in (0, 999, 1.5e6, True):
        with pytest.raises(ConfigError, match="val_sample_rows="):
            TrainConfig(val_sample_rows=bad)  # type: ignore[arg-type]
    assert TrainConfig().val_sample_rows == 1_000_000
    # A balanced sampler streams too (drawn within each shuffle window).
    assert TrainConfig(stream_threshold_mb=0, sampler="balanced").sampler == "balanced"


def test_streamed_split_refuses_what_needs_the_rows_in_memory(fitted_and_frame) -> None:
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import streamed_imbalance_settings

    labels = {"classes": ["no", "yes"], "train_distribution": {"no": 30, "yes": 10}}
    with pytest.raises(ConfigError, match="sampler='balanced' applies to classification"):
        streamed_imbalance_settings(TrainConfig(sampler="balanced"), {}, task="regression")
    with pytest.raises(ConfigError, match=r"datamodule='a\.b:C' receives"):
        streamed_imbalance_settings(TrainConfig(datamodule="a.b:C"), labels, task="classification")
    weights, rows = streamed_imbalance_settings(
        TrainConfig(class_weight="balanced"), labels, task="classification"
    )
    assert rows is None and torch.allclose(weights, torch.tensor([40 / 60, 40 / 20]))  # type: ignore[arg-type]


def _classes(root: Path, n: int, positive_every: int) -> ShardSet:
    """``n`` rows in 100-row groups over 3 files; every ``positive_every``-th row is class 1."""
    root.mkdir(parents=True)
    ids = np.arange(n)
    table = pa.table({"row_id": ids, "cls": (ids % positive_every == 0).astype(np.int64)})
    for i, part in enumerate(np.array_split(ids, 3)):
        pq.write_table(table.take(part), root / f"part-{i}.parquet", row_group_size=100)
    return open_shards(str(root))


def _ids_and_class(table: pa.Table) -> list[np.ndarray]:
    return [table.column("row_id").to_numpy(), table.column("cls").to_numpy()]


def test_balanced_sampler_streams_each_class_about_equally(tmp_path: Path) -> None:
    """Class 1 is 5% of the rows; drawn by class weight (the inverse of each class's rows),
    about half the served rows are class 1, every draw is a row of this rank's share, and the
    batches, their sizes and the resume rule are those of the plain shuffled loader."""
    shards = _classes(tmp_path / "s", 4000, positive_every=20)
    weights = (1 / 3800, 1 / 200)

    def loader(rank: int = 0, **kw: object) -> StreamingBatches:
        args: dict = {"batch_size": 64, "shuffle": True, "seed": 3, "buffer_rows": 500}
        args.update({"class_weights": weights, **kw})
        return StreamingBatches(shards, _ids_and_class, rank=rank, world_size=2, **args)

    for rank in (0, 1):
        balanced, plain = loader(rank), list(loader(rank, class_weights=None))
        batches = list(balanced)
        assert [len(b[0]) for b in batches] == [len(b[0]) for b in plain]
        ids = torch.cat([b[0] for b in batches])
        cls = torch.cat([b[1] for b in batches])
        assert bool((cls == (ids % 20 == 0).long()).all())  # each draw is a whole row
        share = set(torch.cat([b[0] for b in plain]).tolist())
        assert set(ids.tolist()) <= share  # drawn from this rank's rows only
        assert 0.45 < float(cls.float().mean()) < 0.55  # 5% of the rows, half the draws
        assert len(set(ids.tolist())) < len(ids)  # with replacement
        # The same epoch again gives the same draws; a resumed one, the rest of them.
        balanced.set_epoch(0)
        assert torch.equal(torch.cat([b[0] for b in balanced]), ids)
        resumed = loader(rank)
        resumed.load_state_dict({"epoch": 0, "served": 7})
        rest = torch.cat([b[0] for b in resumed])
        assert torch.equal(rest, ids[sum(len(b[0]) for b in batches[:7]) :])
    with pytest.raises(ValueError, match="needs shuffle=True"):
        loader(shuffle=False)


def test_prepared_streamed_split_carries_the_balanced_sampler(
    tmp_path: Path, fitted_and_frame
) -> None:
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.prepare import prepare_training

    fitted, df = fitted_and_frame
    uri = _write(df, tmp_path / "train")
    kw = {"transform": fitted, "target": "label", "task": "classification"}
    split = open_training_split(uri, threshold_mb=0, transformed=False, **kw)  # type: ignore[arg-type]
    counts = split.labels["train_distribution"]
    for sampler, expected in (
        ("shuffle", None),
        ("balanced", tuple(1 / counts[c] for c in split.labels["classes"])),
    ):
        setup = prepare_training(
            split, df, config=TrainConfig(sampler=sampler), transformed=False, **kw
        )
        assert isinstance(setup.train, ShardedSplit) and setup.row_weights is None
        assert setup.train.sampler_weights == expected
        loader = setup.train.batches(batch_size=32, shuffle=True, seed=0)
        assert loader.class_weights == expected
        # Validation batches are never resampled.
        assert setup.train.batches(batch_size=32, shuffle=False, seed=0).class_weights is None
