"""Per-rank streaming batches from Parquet shards: training data larger than memory.

:class:`InMemoryBatches` holds a whole split as tensors in every rank. Above
``TrainConfig.stream_threshold_mb`` of decoded training data the trainers use
:class:`StreamingBatches` instead, which holds at most a few shuffle windows per rank:

* **Sharding.** The split's row groups (:func:`kfgpu.data.open_shards`: every file of a
  local directory, or of an ``s3://`` / ``gs://`` / any fsspec URI) are put in an order
  drawn from ``seed + epoch`` (the same on every rank), and the concatenated rows are cut into ``world_size``
  contiguous ranges of ``N // world_size`` or one more rows. Each rank reads only the row
  groups of its range: disjoint sets, except that a row group on a boundary between two
  ranges is read by both, each keeping only its own rows. Every row is served exactly once
  per epoch over all ranks; none is dropped and none is repeated.
* **Equal batches.** Every rank serves ``ceil(ceil(N / world_size) / batch_size)``
  batches, so collective ops never wait on a finished rank. A rank's rows are spread
  evenly over them (batch sizes differ by at most one row and never exceed
  ``batch_size``): the leftover rows are shared out, not padded with repeats, and not
  dropped (:class:`InMemoryBatches` drops up to ``world_size - 1`` rows instead).
* **Shuffle.** Besides the row-group order, a rank's rows are grouped into windows of
  whole row-group slices holding at least ``buffer_rows`` rows, and each window is
  permuted with a generator seeded by ``(seed, epoch, rank, window)``: a bounded buffer.
* **Background decoding.** ``workers`` threads read and decode windows ahead of the
  training loop, ``prefetch`` windows at most (Parquet reads and most of NumPy release the
  GIL). Peak memory per rank is about ``(prefetch + 1) x`` a window's decoded size, plus one
  row group per worker thread: bounded row groups (as the streaming split writes) bound it.
  Freed window buffers are handed back to the OS after each window (see
  :func:`_release_free_memory`), so the resident set follows what is held.
* **Transform.** ``decode`` turns a slice of the table into arrays (the fitted transform on
  the CPU, or only its raw inputs); ``batch_transform`` then runs per batch on ``device``
  (the fitted transform's torch module on the training GPU: :func:`transform_on_device`).
* **Resume.** The order is a function of ``(seed, epoch)`` and the row-group sizes alone,
  so ``state_dict`` (the epoch and batches served) is enough: after ``load_state_dict``
  the next iteration decodes from the window holding the first unserved row and skips the
  served rows of that window. The protocol is :class:`InMemoryBatches`' (Lightning saves it
  in ``last.ckpt``).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, DataFormatError, TrainingError
from kfgpu.training.epochs import EpochPosition

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import torch

    from kfgpu.data.shards import RowGroup, ShardSet
    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig

__all__ = [
    "ShardedSplit",
    "StreamingBatches",
    "class_weights_from_counts",
    "decoded_row_bytes",
    "label_encoder",
    "open_splits",
    "open_training_split",
    "read_row_group",
    "split_labels",
    "streamed_imbalance_settings",
    "transform_on_device",
]

#: Default rows per shuffle window (about 25 MB of float32 for 100 features).
DEFAULT_BUFFER_ROWS = 65_536


def read_row_group(
    shards: ShardSet, group: RowGroup, columns: Sequence[str] | None = None
) -> pa.Table:
    """One row group of ``shards`` (only ``columns``, if given) as an Arrow table."""
    import pyarrow as pa

    batches = list(shards.iter_batches(columns, batch_rows=group.rows, row_groups=[group]))
    if not batches:
        return pa.table({c: [] for c in columns or shards.columns})
    return pa.Table.from_batches(batches)


_LIBC: Any = None


def _release_free_memory() -> None:
    """Hand freed decode buffers back to the OS, once per window.

    Each window is decoded into fresh multi-MB buffers in a worker thread. Arrow's pool
    (mimalloc) and glibc's per-thread arenas keep what is freed, and glibc's dynamic mmap
    threshold rises to the largest freed buffer, so without this a rank's resident set
    grows to several times the windows it actually holds. ``release_unused`` and
    ``malloc_trim`` return that memory (about a millisecond per window).
    """
    global _LIBC
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        _LIBC = ctypes.CDLL(name) if name else False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _rng(*key: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([k & 0xFFFFFFFF for k in key])


Slice = tuple["RowGroup", int, int]


class StreamingBatches(EpochPosition):
    """An iterable of batches (tuples of tensors) streamed from Parquet row groups.

    Args:
        shards: the data set.
        decode: an Arrow table (a slice of row groups, ``columns`` only) -> equal-length
            NumPy arrays, one per tensor of a batch. Runs in a background thread.
        columns: the columns ``decode`` needs (all when ``None``).
        batch_size: the most rows in a batch.
        shuffle: draw the row-group order and permute windows each epoch (seeded by
            ``seed + epoch``); else the data set's order.
        seed: base seed of the order.
        rank, world_size: this process's share under data parallelism.
        buffer_rows: the least rows in a shuffle window (a window is whole row-group slices).
        prefetch: windows decoded ahead of the training loop.
        workers: decoding threads.
        pin_memory: pin batches for non-blocking host-to-GPU copies.
        device: move each batch there (before ``batch_transform``); ``None`` leaves it.
        batch_transform: applied to each batch on ``device`` (e.g. the fitted transform's
            torch module, :func:`transform_on_device`).
        class_weights: a balanced sampler's draw weight of each class (the inverse of its
            rows in the whole split; ``decode``'s last array is the class index). Each
            window then draws as many rows as it holds, with replacement, each row with a
            probability proportional to its class's weight, instead of permuting them: the
            batches, their sizes and the resume rule are unchanged, and every class is
            about equally frequent (as :class:`InMemoryBatches` with ``weights``, drawn
            within a window rather than the whole split). Needs ``shuffle``.

    See the module docstring for how rows are shared, shuffled and resumed.

    Raises:
        ValueError: fewer rows than ranks, or too few to give every rank its batches.
    """

    def __init__(
        self,
        shards: ShardSet,
        decode: Callable[[pa.Table], Sequence[np.ndarray]],
        *,
        columns: Sequence[str] | None = None,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        prefetch: int = 2,
        workers: int = 1,
        pin_memory: bool = False,
        device: torch.device | str | None = None,
        batch_transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]
        | None = None,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        if batch_size < 1 or buffer_rows < 1 or prefetch < 1 or workers < 1:
            raise ValueError("batch_size, buffer_rows, prefetch and workers must be positive")
        if class_weights is not None and not shuffle:
            raise ValueError("a balanced sampler (class_weights) needs shuffle=True")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is outside world_size={world_size}")
        n = shards.rows
        if n < world_size:
            raise ValueError(f"{n} rows cannot be shared among {world_size} ranks")
        self.shards = shards
        self.decode = decode
        self.columns = tuple(columns) if columns is not None else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.buffer_rows = buffer_rows
        self.prefetch = prefetch
        self.workers = workers
        self.pin_memory = pin_memory
        self.device = device
        self.batch_transform = batch_transform
        self.class_weights = None if class_weights is None else tuple(class_weights)
        self.init_position()
        self._lo = rank * n // world_size
        self._hi = (rank + 1) * n // world_size
        most = -(-n // world_size)  # the rows of the largest share
        self._batches = -(-most // batch_size)
        if n // world_size < self._batches:
            raise ValueError(
                f"{n} rows over {world_size} ranks cannot fill {self._batches} batches per rank"
            )

    # ---- Lightning's loader protocol (as InMemoryBatches) -------------------------------
    def __len__(self) -> int:
        return self._batches

    @property
    def rows(self) -> int:
        """This rank's rows per epoch."""
        return self._hi - self._lo

    # ---- the plan of an epoch: pure functions of (seed, epoch, row-group sizes) ----------
    def batch_sizes(self) -> list[int]:
        """This rank's batch sizes, in order (the same every epoch)."""
        q, r = divmod(self.rows, self._batches)
        return [q + 1] * r + [q] * (self._batches - r)

    def windows(self, epoch: int) -> list[list[Slice]]:
        """This rank's windows of ``epoch``: lists of ``(row group, start, stop)`` slices."""
        units = self.shards.row_groups()
        if self.shuffle:
            units = [units[i] for i in _rng(self.seed, epoch).permutation(len(units))]
        windows: list[list[Slice]] = []
        current: list[Slice] = []
        held = 0
        offset = 0
        for u in units:
            start, stop = max(self._lo - offset, 0), min(self._hi - offset, u.rows)
            offset += u.rows
            if start >= stop:
                if offset >= self._hi:
                    break
                continue
            current.append((u, start, stop))
            held += stop - start
            if held >= self.buffer_rows:
                windows.append(current)
                current, held = [], 0
        if current:
            windows.append(current)
        return windows

    def _decode_window(self, epoch: int, index: int, window: list[Slice]) -> list[torch.Tensor]:
        import numpy as np
        import pyarrow as pa
        import torch

        tables = [
            read_row_group(self.shards, u, self.columns).slice(a, b - a) for u, a, b in window
        ]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        del tables
        arrays = list(self.decode(table))
        del table
        perm = None
        if self.shuffle:
            rng = _rng(self.seed, epoch, self.rank, index)
            n = len(arrays[0])
            if self.class_weights is None:
                perm = rng.permutation(n)
            else:  # a balanced sampler: n draws with replacement, by class weight
                p = np.asarray(self.class_weights, dtype=np.float64)[arrays[-1].astype(np.int64)]
                perm = rng.choice(n, size=n, replace=True, p=p / p.sum())
        out = []
        while arrays:  # one array at a time: each original is freed once it is permuted
            a = arrays.pop(0)
            if perm is not None:
                a = a[perm]
            # Arrow-backed arrays are read-only: copy those (torch wants writable memory).
            out.append(
                torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a))
            )
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # A generator: the epoch is read at the first batch, after the trainer's
        # on_train_epoch_start has called set_epoch (Lightning calls iter() before it).
        epoch, skip = self.begin_epoch()
        yield from self._generate(epoch, skip)

    def _generate(self, epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, ...]]:
        import torch

        sizes = self.batch_sizes()
        windows = self.windows(epoch)
        # The first window holding an unserved row, and the served rows inside it.
        skip_rows = sum(sizes[:skip])
        first, offset = 0, skip_rows
        for first, w in enumerate(windows):  # noqa: B007 (read after the loop)
            rows = sum(b - a for _, a, b in w)
            if offset < rows:
                break
            offset -= rows
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kfgpu-stream")
        pending: deque[Future[list[torch.Tensor]]] = deque()
        upcoming = iter(range(first, len(windows)))

        def submit() -> None:
            i = next(upcoming, None)
            if i is not None:
                pending.append(pool.submit(self._decode_window, epoch, i, windows[i]))

        try:
            for _ in range(self.prefetch):
                submit()
            current: list[torch.Tensor] = []
            pos = 0
            for size in sizes[skip:]:
                parts: list[list[torch.Tensor]] = []
                need = size
                while need:
                    if not current or pos == len(current[0]):
                        current = pending.popleft().result()
                        submit()
                        pos, offset = offset, 0
                    take = min(need, len(current[0]) - pos)
                    parts.append([t[pos : pos + take] for t in current])
                    pos += take
                    need -= take
                batch = (
                    tuple(parts[0])
                    if len(parts) == 1
                    else tuple(torch.cat(ts) for ts in zip(*parts, strict=True))
                )
                if self.pin_memory:
                    batch = tuple(t.pin_memory() for t in batch)
                if self.device is not None:
                    batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
                if self.batch_transform is not None:
                    batch = self.batch_transform(batch)
                self._served += 1
                yield batch
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)


# ---- the training split: streamed above the threshold, in memory below ------------------


def decoded_row_bytes(transform: FittedTransform) -> int:
    """Bytes per row of a split as training tensors: float32 dense features, int64
    embedding codes and an 8-byte target."""
    return 4 * transform.n_dense + 8 * len(transform.cardinalities) + 8


def split_labels(
    shards: ShardSet, target: str, *, task: str, others: Sequence[pd.Series] = ()
) -> dict[str, Any]:
    """The label mapping :func:`~kfgpu.training.prepare.encode_labels` makes, from the
    target column streamed one row group at a time.

    Classification: the sorted classes, their counts, the least frequent as the positive
    class of a binary task (ties: the first in class order). Regression: the mean and
    standard deviation (``ddof=0``; 1 where it is 0).

    Raises:
        TrainingError: no target column, a single class, or classes seen only in ``others``.
    """
    import numpy as np
    import pandas as pd

    if target not in shards.columns:
        raise TrainingError(
            f"the training split {shards.uri!r} has no target column {target!r}; its columns "
            f"are {list(shards.columns)[:10]}"
        )
    if task == "classification":
        counts: dict[Any, int] = {}
        for u in shards.row_groups():
            vc = read_row_group(shards, u, [target]).column(target).to_pandas().value_counts()
            for k, v in vc.items():
                key = k.item() if hasattr(k, "item") else k
                counts[key] = counts.get(key, 0) + int(v)
        classes = sorted(counts, key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise TrainingError(
                f"the training split holds a single class {classes!r}; the target needs at "
                "least two classes"
            )
        known = {str(c) for c in classes}
        for s in others:
            unseen = sorted({str(v) for v in s.unique()} - known)
            if unseen:
                raise TrainingError(
                    f"classes {unseen} appear outside the training split only; "
                    "use a stratified split or more data"
                )
        positive = min(classes, key=lambda c: counts[c])
        return {
            "classes": classes,
            "positive_class": positive if len(classes) == 2 else None,
            "train_distribution": {str(k): counts[k] for k in classes},
        }
    n, total, squares = 0, 0.0, 0.0
    for u in shards.row_groups():
        y = read_row_group(shards, u, [target]).column(target).to_numpy().astype(np.float64)
        n, total = n + len(y), total + float(y.sum())
    mean = total / max(n, 1)
    for u in shards.row_groups():
        y = read_row_group(shards, u, [target]).column(target).to_numpy().astype(np.float64)
        squares += float(((y - mean) ** 2).sum())
    std = float(np.sqrt(squares / max(n, 1))) or 1.0
    del pd
    return {"target_mean": mean, "target_scale": std}


def label_encoder(labels: Mapping[str, Any], *, task: str) -> Callable[[Any], np.ndarray]:
    """Encodes a target column (pandas Series) with ``labels`` (class index, or the
    standardised value), as the in-memory path does."""
    import numpy as np

    if task == "classification":
        import pandas as pd

        classes = pd.Index(list(labels["classes"]))

        def encode(s: Any) -> np.ndarray:
            codes = classes.get_indexer(s)
            if (codes < 0).any():
                unseen = sorted({str(v) for v in s[codes < 0]})[:5]
                raise TrainingError(
                    f"the training split holds classes {unseen} that its label counts lack; "
                    "the split changed while training: rerun the step"
                )
            return codes.astype(np.int64)

        return encode
    mean, std = float(labels["target_mean"]), float(labels["target_scale"])

    def encode_reg(s: Any) -> np.ndarray:
        return ((s.to_numpy(dtype=np.float64) - mean) / std).astype(np.float32)

    return encode_reg


def class_weights_from_counts(
    class_weight: str, classes: Sequence[Any], counts: Mapping[str, int]
) -> torch.Tensor | None:
    """:func:`~kfgpu.training.imbalance.class_weight_tensor` from class counts (a streamed
    split's ``train_distribution``) instead of every row's class."""
    import torch

    from kfgpu.training.imbalance import class_weight_tensor, parse_class_weight

    if parse_class_weight(class_weight) != "balanced":
        return class_weight_tensor(class_weight, classes, torch.zeros(0, dtype=torch.long))
    c = torch.tensor([float(counts.get(str(k), 0)) for k in classes], dtype=torch.float64)
    return (c.sum() / (len(classes) * c.clamp(min=1))).to(torch.float32)


def streamed_imbalance_settings(
    config: TrainConfig, labels: Mapping[str, Any], *, task: str
) -> tuple[torch.Tensor | None, None]:
    """:func:`~kfgpu.training.prepare.imbalance_settings` for a streamed split: the loss's
    class weights from the class counts; no row weights (a balanced sampler draws by class
    in the loader instead: :meth:`ShardedSplit.with_balanced_sampler`).

    Raises:
        ConfigError: a user's datamodule (it needs the split's rows in memory), or class
            weights on a regression task.
    """
    if config.datamodule:
        raise ConfigError(
            f"datamodule={config.datamodule!r} receives the splits as in-memory tensors, and "
            "this training split is streamed (above stream_threshold_mb="
            f"{config.stream_threshold_mb}); raise stream_threshold_mb or drop the datamodule"
        )
    if task != "classification":
        for name, off in (("class_weight", "none"), ("sampler", "shuffle")):
            if getattr(config, name) != off:
                raise ConfigError(
                    f"{name}={getattr(config, name)!r} applies to classification; this task "
                    f"is {task}: set {name}={off!r}"
                )
        return None, None
    return (
        class_weights_from_counts(
            config.class_weight, labels["classes"], labels["train_distribution"]
        ),
        None,
    )


class ShardedSplit:
    """A training or validation split left on storage, streamed per rank (:meth:`batches`).

    Args:
        shards: the split's Parquet shards.
        transform: the fitted transform.
        target: the target column.
        labels: the label mapping of the training split (:func:`split_labels`): a
            validation split is encoded with the training split's classes or scaling.
        task: ``classification`` or ``regression``.
        transformed: the shards hold the transform's output columns (engineer_features'
            output); else raw input columns, transformed while streaming.
        buffer_rows, prefetch, workers: see :class:`StreamingBatches`.
        role: ``training`` or ``validation``: which split, in error messages.
        sampler_weights: a balanced sampler's class weights, used by the shuffled
            (training) batches (:meth:`with_balanced_sampler`).
    """

    def __init__(
        self,
        shards: ShardSet,
        *,
        transform: FittedTransform,
        target: str,
        labels: Mapping[str, Any],
        task: str,
        transformed: bool,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        prefetch: int = 2,
        workers: int = 1,
        role: str = "training",
        sampler_weights: Sequence[float] | None = None,
    ) -> None:
        self.shards = shards
        self.role = role
        self.sampler_weights = None if sampler_weights is None else tuple(sampler_weights)
        self.transform = transform
        self.target = target
        self.labels = dict(labels)
        self.task = task
        self.transformed = transformed
        self.buffer_rows = buffer_rows
        self.prefetch = prefetch
        self.workers = workers
        self._encode = label_encoder(labels, task=task)
        inputs = (
            (*transform.dense_names, *transform.emb_names)
            if transformed
            else transform.input_columns
        )
        missing = [c for c in inputs if c not in shards.columns]
        if missing:
            what = "transformed feature" if transformed else "input"
            raise TrainingError(
                f"the {role} split {shards.uri!r} lacks {what} column(s) {missing[:5]}; it "
                "must be engineer_features' output for this transform"
            )
        self.columns = (*dict.fromkeys(inputs), target)

    def __len__(self) -> int:
        return self.shards.rows

    def with_labels(self, labels: Mapping[str, Any]) -> ShardedSplit:
        """The same split encoded with ``labels`` (the training split's)."""
        return ShardedSplit(
            self.shards,
            transform=self.transform,
            target=self.target,
            labels=labels,
            task=self.task,
            transformed=self.transformed,
            buffer_rows=self.buffer_rows,
            prefetch=self.prefetch,
            workers=self.workers,
            role=self.role,
            sampler_weights=self.sampler_weights,
        )

    def with_balanced_sampler(self) -> ShardedSplit:
        """The same split whose shuffled batches draw every class about equally often:
        each class weighs the inverse of its rows in the split (``train_distribution``,
        the in-memory sampler's weights, :func:`~kfgpu.training.imbalance.sample_weights`).
        """
        counts = self.labels["train_distribution"]
        split = self.with_labels(self.labels)
        split.sampler_weights = tuple(
            1.0 / max(int(counts[str(c)]), 1) for c in self.labels["classes"]
        )
        return split

    def fingerprint(self) -> str:
        """What identifies the data for a resumed run: layout and labels."""
        return hashlib.sha256(
            json.dumps([self.shards.fingerprint, self.labels], default=str).encode()
        ).hexdigest()

    def decode(self, table: pa.Table, *, raw: bool = False) -> list[np.ndarray]:
        """``(dense, codes, y)`` of a table slice; ``raw``: the transform's raw inputs
        ``(num, codes, y)`` for :func:`transform_on_device` to finish."""
        import numpy as np

        y = self._encode(table.column(self.target).to_pandas())
        t = self.transform
        if self.transformed:
            # Column by column from Arrow into one array: no intermediate frame.
            n = table.num_rows
            dense = np.empty((n, len(t.dense_names)), dtype=np.float32)
            for j, name in enumerate(t.dense_names):
                dense[:, j] = table.column(name).to_numpy()
            emb = np.empty((n, len(t.emb_names)), dtype=np.int64)
            for j, name in enumerate(t.emb_names):
                emb[:, j] = table.column(name).to_numpy()
            return [dense, emb, y]
        num, codes = t.raw_arrays(table.to_pandas())
        if raw:
            return [num, codes, y]
        dense, emb = t.transform_arrays(num, codes)
        return [dense, emb, y]

    def batches(
        self,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        device: torch.device | str | None = None,
    ) -> StreamingBatches:
        """This rank's batches. On a CUDA ``device`` with raw shards, the fitted transform's
        arithmetic runs there, per batch (the CPU decodes only the raw inputs)."""
        import functools

        on_gpu = device is not None and str(device).startswith("cuda") and not self.transformed
        return StreamingBatches(
            self.shards,
            functools.partial(self.decode, raw=on_gpu),
            columns=self.columns,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            buffer_rows=self.buffer_rows,
            prefetch=self.prefetch,
            workers=self.workers,
            pin_memory=pin_memory,
            device=device if on_gpu else None,
            batch_transform=transform_on_device(self.transform, device) if on_gpu else None,
            class_weights=self.sampler_weights if shuffle else None,
        )


def transform_on_device(
    transform: FittedTransform, device: torch.device | str | None
) -> Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    """``(num, codes, y) -> (dense, emb, y)`` with the fitted transform's torch module on
    ``device``: the same arithmetic as the CPU path, on the GPU the model trains on."""
    import torch

    module = transform.to_module().to(device)

    def apply(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            dense, emb = module(batch[0], batch[1])
        return (dense, emb, *batch[2:])

    return apply


def open_training_split(
    uri: str,
    *,
    transform: FittedTransform,
    target: str,
    task: str,
    transformed: bool,
    threshold_mb: float,
    others: Sequence[pd.Series] = (),
) -> pd.DataFrame | ShardedSplit:
    """The training split at ``uri``: a frame when its decoded size is at most
    ``threshold_mb`` megabytes (or it is not Parquet), else a :class:`ShardedSplit`.

    The decoded size is the split's rows (Parquet metadata) times
    :func:`decoded_row_bytes`; ``threshold_mb=0`` streams every Parquet split.
    ``others``: the other splits' targets, checked for classes the training split lacks.

    Raises:
        ConfigError: a negative threshold.
    """
    from kfgpu.data import read_parquet, read_table
    from kfgpu.data.shards import open_shards

    if threshold_mb < 0:
        raise ConfigError(
            f"stream_threshold_mb={threshold_mb!r} is invalid: use 0 (always stream) or a "
            "size in megabytes"
        )
    try:
        shards = open_shards(uri)
    except DataFormatError:
        return read_table(uri)  # CSV and friends: the in-memory path (and its errors)
    if shards.rows * decoded_row_bytes(transform) <= threshold_mb * 1e6:
        return read_parquet(uri)
    labels = split_labels(shards, target, task=task, others=others)
    return ShardedSplit(
        shards,
        transform=transform,
        target=target,
        labels=labels,
        task=task,
        transformed=transformed,
    )


def _target_values(shards: ShardSet, target: str) -> pd.Series:
    """The distinct values of a streamed target column, one row group at a time."""
    import pandas as pd

    seen: set[Any] = set()
    for u in shards.row_groups():
        seen.update(read_row_group(shards, u, [target]).column(target).to_pandas().unique())
    return pd.Series(sorted(seen, key=lambda v: (str(type(v)), v)), dtype=object)


def open_splits(
    train_uri: str,
    val_uri: str,
    *,
    transform: FittedTransform,
    target: str,
    task: str,
    transformed: bool,
    threshold_mb: float,
) -> tuple[pd.DataFrame | ShardedSplit, pd.DataFrame | ShardedSplit]:
    """The training and validation splits, each a frame at most ``threshold_mb`` megabytes
    decoded (or not Parquet), else a :class:`ShardedSplit` streamed per rank.

    Every trainer opens its splits here (``train_model``, :mod:`kfgpu.training.distributed`,
    the Horovod trainer). A streamed validation split is encoded with a streamed training
    split's labels (:func:`split_labels`); its classes are checked against the training
    split's from its target column, streamed. With an in-memory training split its labels
    are provisional: :func:`~kfgpu.training.prepare.prepare_training` re-encodes it with
    the labels it computes from the training rows.

    Raises:
        ConfigError: a negative threshold.
        TrainingError: a split lacks the target column or a feature column, or the
            validation split holds a class the training split lacks.
    """
    from kfgpu.data import read_parquet, read_table
    from kfgpu.data.shards import open_shards

    if threshold_mb < 0:
        raise ConfigError(
            f"stream_threshold_mb={threshold_mb!r} is invalid: use 0 (always stream) or a "
            "size in megabytes"
        )
    val: pd.DataFrame | ShardSet
    try:
        shards = open_shards(val_uri)
    except DataFormatError:
        val = read_table(val_uri)
    else:
        big = shards.rows * decoded_row_bytes(transform) > threshold_mb * 1e6
        val = shards if big else read_parquet(val_uri)
    import pandas as pd

    others: list[pd.Series] = []
    if isinstance(val, pd.DataFrame):
        others = [val[target]] if target in val.columns else []
    else:
        if target not in val.columns:
            raise TrainingError(
                f"the validation split {val.uri!r} has no target column {target!r}; its "
                f"columns are {list(val.columns)[:10]}"
            )
        if task == "classification":
            others = [_target_values(val, target)]
    train = open_training_split(
        train_uri,
        transform=transform,
        target=target,
        task=task,
        transformed=transformed,
        threshold_mb=threshold_mb,
        others=others,
    )
    if isinstance(val, pd.DataFrame):
        return train, val
    labels: Mapping[str, Any]
    if isinstance(train, ShardedSplit):
        labels = train.labels
    elif task == "classification":
        # Provisional: prepare_training re-encodes the split with the labels it computes
        # from the in-memory training rows (the classes were checked above).
        labels = {"classes": others[0].tolist()}
    else:
        labels = {"target_mean": 0.0, "target_scale": 1.0}
    return train, ShardedSplit(
        val,
        transform=transform,
        target=target,
        labels=labels,
        task=task,
        transformed=transformed,
        role="validation",
    )
