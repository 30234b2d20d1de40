"""Deterministic train / validation / test splits that stream, stratified for classification.

One algorithm serves a table in memory (:func:`split_frame`) and a sharded Parquet data set
of any size (:func:`split_source`), so both give the same rows:

* **Random split** (no ``time_column``): every row gets a 64-bit value, a seeded hash of its
  position in the data set. Within each class of the target (one group for regression)
  the rows with the smallest values form the test split, the next ones validation, the
  rest training, with per-class counts ``round(n_c * fraction)`` (at least one row per
  split for a class of 3 or more rows): stratified, and exact. The cut values are found
  without loading the table: one pass counts the classes, histograms the values (4,096
  buckets per class) and keeps the few values near where each cut should fall (hashes
  spread evenly: the test fraction's and test + validation's buckets, 8 either side);
  a cut found outside them takes one more pass to collect its bucket's values; the last
  pass writes. Every pass runs over units of row groups in worker threads, merged in data
  order.
* **Key split** (``key_column``): the value is a seeded hash of the row's key, so rows that
  share a key (a user, a card) always land in the same split. Keeping a key's rows together
  and exact per-class counts cannot both hold, so a key split is not stratified: the
  smallest hash values over all rows form the test split (classes follow in proportion,
  within sampling error).
* **Time split** (``time_column``): the same passes on the time value; the earliest rows are
  training, the latest test, ``round(n * fraction)`` rows each (at least one), and rows with
  equal times keep their order in the data (a stable sort), as the in-memory split always did.

A row's split depends only on its key (or position), its target and the seed: neither the
shard layout, nor the row-group sizes, nor the batch size change it. Rows whose target is
missing are dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kfgpu.errors import ConfigError, DataError, SchemaError

if TYPE_CHECKING:
    from threading import Event

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from kfgpu.data.shards import Manifest, RowGroup, ShardSegment, ShardSet

__all__ = [
    "SPLIT_NAMES",
    "SplitConfig",
    "SplitPlan",
    "SplitResult",
    "split_frame",
    "split_indices",
    "split_source",
]

SPLIT_NAMES = ("train", "validation", "test")
T = TypeVar("T")

_BUCKETS = 4096
_TOP_SHIFT = 64 - (_BUCKETS.bit_length() - 1)  # value >> it: its bucket of the full range
_COLLECT_MAX = 2_000_000  # values collected at once when a cut's bucket is small enough
# A random split's cuts land near the buckets of their fractions (test, test + validation):
# the first pass keeps the values of this many buckets either side, so the exact cut is
# usually found without another pass (a cut outside them is collected as before).
_WINDOW = 8
_U64_MAX = (1 << 64) - 1
_MAX_WORKERS = 4  # split_source's default worker threads at most (~150 MB each)
_SIGN = 1 << 63


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes:
        target: the label column; rows where it is missing are dropped.
        task: ``"classification"`` stratifies by the target; ``"regression"`` does not.
        val_fraction: share of rows for validation, in (0, 1).
        test_fraction: share of rows for test, in (0, 1).
        seed: changes which rows a random split picks.
        time_column: split by this column's time (latest rows to test) instead.
        key_column: hash this column's values for a random split (rows sharing a key stay
            together); empty hashes each row's position in the data set.

    Raises:
        ConfigError: a fraction is outside (0, 1), the two leave under 10% for training, or
            ``task`` is not one of the two.
    """

    target: str
    task: Literal["classification", "regression"]
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    time_column: str = ""
    key_column: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise ConfigError(
                f"task={self.task!r} is invalid: use 'classification' or 'regression'"
            )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:.2f} "
                "leaves under 10% of rows for training; lower one of them"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is not a whole number >= 0; pass e.g. 0")
        if self.time_column and self.key_column:
            raise ConfigError(
                f"time_column={self.time_column!r} and key_column={self.key_column!r} are both "
                "set; a time split orders by time, so pass only one of them"
            )

    @property
    def by(self) -> Literal["time", "key", "position"]:
        """What orders the rows: ``"time"``, ``"key"`` or ``"position"``."""
        if self.time_column:
            return "time"
        return "key" if self.key_column else "position"


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split_source` wrote.

    Attributes:
        rows: rows per split (``train``, ``validation``, ``test``).
        manifests: the manifest (file row counts and fingerprints) of each written split.
        dropped: rows left out because their target was missing.
        by: ``"time"``, ``"key"`` or ``"position"``.
        classes: rows per class (classification) before the split.
        source_fingerprint: the input's fingerprint.
    """

    rows: dict[str, int]
    manifests: dict[str, Manifest]
    dropped: int
    by: str
    classes: dict[str, int] = field(default_factory=dict)
    source_fingerprint: str = ""


# --------------------------------------------------------------------------- row values

# The plan reads only the columns it needs: Arrow record batches from shards, pandas
# frames in memory; both give the same groups and values.
_Batches = Callable[[list[str]], Iterator[Any]]


def _column(frame: Any, name: str) -> Any:
    """One column of a batch: an Arrow array of a record batch, a Series of a frame."""
    import pyarrow as pa

    return frame.column(name) if isinstance(frame, pa.RecordBatch) else frame[name]


def _series(frame: Any, name: str) -> pd.Series:
    """One column as a pandas Series (the key and time columns are hashed through pandas)."""
    import pyarrow as pa

    col = _column(frame, name)
    return col.to_pandas() if isinstance(col, pa.Array) else col


def _splitmix(x: np.ndarray) -> np.ndarray:
    import numpy as np

    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _label_key(value: object) -> str:
    import numpy as np

    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    try:
        return str(value)
    except Exception:  # a broken __str__ must not stop the split
        return f"<{type(value).__name__}>"


class _Rows:
    """Turns batches into (group, value) arrays: the plan's view of a row."""

    def __init__(self, config: SplitConfig) -> None:
        import numpy as np

        self.config = config
        self.stratify = config.task == "classification" and config.by == "position"
        self.classes: dict[str, int] = {}
        self.seed_mix = _splitmix(np.array([config.seed], dtype=np.uint64))[0]

    @property
    def columns(self) -> list[str]:
        c = self.config
        extra = [c.time_column] if c.time_column else [c.key_column] if c.key_column else []
        return [c.target, *extra]

    def groups(
        self, target: pd.Series | pa.Array, classes: dict[str, int] | None = None
    ) -> np.ndarray:
        """Group id per row: the class (stratified) or 0; -1 where the target is missing.
        Classes are numbered in ``classes`` (default: the plan's), new ones appended."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        known = self.classes if classes is None else classes
        if isinstance(target, pa.Array):
            found = self._arrow_groups(target, known)
            if found is not None:
                return found
            target = target.to_pandas()
        missing = target.isna().to_numpy()
        if not self.stratify:
            return np.where(missing, -1, 0).astype(np.int64)
        try:
            codes, uniques = pd.factorize(target, use_na_sentinel=True)
        except TypeError:  # unhashable labels: their text
            codes, uniques = pd.factorize(target.map(_label_key), use_na_sentinel=True)
        ids = np.empty(len(uniques) + 1, dtype=np.int64)
        ids[-1] = -1
        for i, u in enumerate(uniques):
            ids[i] = known.setdefault(_label_key(u), len(known))
        return ids[codes]

    def _arrow_groups(self, target: pa.Array, known: dict[str, int]) -> np.ndarray | None:
        """:meth:`groups` of an Arrow column without pandas (the streamed split reads the
        target in every pass); None for types only pandas names as the frame path does.

        Class ids follow first appearance and class names :func:`_label_key`, as
        ``pd.factorize`` gives them, so the classes and the rows are those of the frame path.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.types as pat

        t = target.type
        if pat.is_floating(t):  # NaN is missing, as pandas has it
            target = pc.if_else(pc.is_nan(target), pa.scalar(None, t), target)
        elif not (
            pat.is_integer(t) or pat.is_boolean(t) or pat.is_string(t) or pat.is_large_string(t)
        ):
            return None
        if not self.stratify:
            missing = target.is_null().to_numpy(zero_copy_only=False)
            return np.where(missing, -1, 0).astype(np.int64)
        encoded = target.dictionary_encode()
        uniques = encoded.dictionary.to_pylist()
        ids = np.empty(len(uniques) + 1, dtype=np.int64)
        ids[-1] = -1
        for i, u in enumerate(uniques):
            ids[i] = known.setdefault(_label_key(u), len(known))
        codes = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
        return ids[codes]

    def values(self, frame: Any, offset: int) -> np.ndarray:
        """The 64-bit ordering value of each row (hash of key or position, or the time)."""
        import numpy as np
        import pandas as pd

        c = self.config
        n = len(frame)
        if c.time_column:
            return _time_values(_series(frame, c.time_column), c.time_column)
        if c.key_column:
            col = _series(frame, c.key_column)
            try:
                h = pd.util.hash_array(col.to_numpy(), categorize=False)
            except TypeError:
                h = pd.util.hash_array(col.map(_label_key).to_numpy(dtype=object))
        else:
            h = np.arange(offset, offset + n, dtype=np.uint64)
        return _splitmix(h.astype(np.uint64, copy=False) ^ self.seed_mix)


def _time_values(col: pd.Series, name: str) -> np.ndarray:
    """Times as uint64 whose order is the times' order; DataError on a missing time."""
    import numpy as np
    import pandas as pd

    if not (pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_numeric_dtype(col)):
        col = pd.to_datetime(col, utc=True, errors="coerce")
    if col.isna().any():
        raise DataError(
            f"time_column {name!r} has {int(col.isna().sum())} missing or unparseable "
            "value(s); a time split needs a time for every row"
        )
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dtype, "tz", None) is not None:
            col = col.dt.tz_convert("UTC").dt.tz_localize(None)
        ints = col.astype("datetime64[ns]").to_numpy().view(np.int64)
        return ints.view(np.uint64) ^ np.uint64(_SIGN)
    arr = col.to_numpy()
    if np.issubdtype(arr.dtype, np.floating):
        bits = arr.astype(np.float64).view(np.int64)
        flip = np.where(bits < 0, np.int64(-1), np.int64(np.iinfo(np.int64).min))
        return (bits ^ flip).view(np.uint64)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.uint64)
    return arr.astype(np.int64).view(np.uint64) ^ np.uint64(_SIGN)


# --------------------------------------------------------------------------- the plan


@dataclass
class _Cut:
    """Where rank ``k`` falls in one group: values < lo are below, [lo, hi] holds it."""

    group: int
    k: int
    lo: int = 0
    hi: int = _U64_MAX
    below: int = 0  # rows of the group with value < lo
    inside: int = 0  # rows of the group with lo <= value <= hi
    done: bool = False
    value: int = 0  # the threshold: rows with value < it are below the cut ...
    ties: int = 0  # ... and the first ``ties`` rows equal to it (in data order)


@dataclass(frozen=True)
class _Part:
    """A run of rows the plan scans on its own: where it starts in the data, and its reader."""

    offset: int
    read: _Batches


@dataclass
class _Counts:
    """One part's first pass: its classes (first appearance order), rows and histograms."""

    classes: dict[str, int]
    counts: np.ndarray
    top: np.ndarray
    lo: dict[int, int]
    hi: dict[int, int]
    dropped: int
    near: tuple[np.ndarray, np.ndarray] | None  # (local group, value) of rows near the cuts


class _Plan:
    """The cuts of every group, found with a few passes over the needed columns.

    The data is read as parts (runs of row groups); each pass scans the parts in worker
    threads and merges what they found in data order, so the cuts (and the class ids,
    numbered by first appearance) do not depend on the workers.
    """

    def __init__(self, config: SplitConfig, parts: Sequence[_Part], workers: int = 1) -> None:
        self.config = config
        self.parts = list(parts)
        self.workers = max(1, min(workers, len(self.parts)))
        self.rows = _Rows(config)
        self.counts: dict[int, int] = {}
        self.dropped = 0
        self.cuts: list[_Cut] = []
        # The bucket ranges whose values the first pass keeps (random splits only: a time
        # split's values are times, not spread evenly), and how many it kept so far.
        self.windows: list[tuple[int, int]] = []
        if config.by != "time":
            for f in (config.test_fraction, config.test_fraction + config.val_fraction):
                b = int(f * _BUCKETS)
                self.windows.append((max(0, b - _WINDOW), min(_BUCKETS - 1, b + _WINDOW)))
        self._kept = 0
        self._kept_lock = threading.Lock()

    def _map(self, fn: Callable[[_Part], T]) -> list[T]:
        """``fn`` of every part, in data order (in worker threads when there are several)."""
        if self.workers == 1:
            return [fn(part) for part in self.parts]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="kfgpu-split-plan") as pool:
            return list(pool.map(fn, self.parts))

    def _scan(
        self, part: _Part, classes: dict[str, int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each batch's groups and values, in data order. With one worker a thread reads
        and computes the next batches while the caller counts this one."""
        from kfgpu.data.shards import prefetched

        def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            offset = part.offset
            for frame in part.read(self.rows.columns):
                n = len(frame)
                groups = self.rows.groups(_column(frame, self.config.target), classes)
                values = self.rows.values(frame, offset)
                offset += n
                yield groups, values

        return prefetched(rows()) if self.workers == 1 else rows()

    def _count(self, part: _Part) -> _Counts:
        import numpy as np

        local: dict[str, int] = {}
        lo: dict[int, int] = {}
        hi: dict[int, int] = {}
        counts = np.zeros(0, dtype=np.int64)
        # Per group, a histogram of the values' top bits (4,096 buckets over the whole
        # 64-bit range): hashed values spread evenly, so the bucket of each cut is found in
        # this first pass and the next pass collects only the few values inside it.
        top = np.zeros(0, dtype=np.int64)
        shift = np.uint64(_TOP_SHIFT)
        dropped = 0
        near_g: list[np.ndarray] = []
        near_v: list[np.ndarray] = []
        keeping = bool(self.windows)
        for groups, values in self._scan(part, local):
            keep = groups >= 0
            dropped += int((~keep).sum())
            g, v = groups[keep], values[keep]
            if not len(g):
                continue
            bc = np.bincount(g)
            if len(bc) > len(counts):
                counts = np.concatenate([counts, np.zeros(len(bc) - len(counts), np.int64)])
            counts[: len(bc)] += bc
            buckets = (v >> shift).astype(np.int64)
            th = np.bincount(g * _BUCKETS + buckets)
            if len(th) > len(top):
                size = -(-len(th) // _BUCKETS) * _BUCKETS
                top = np.concatenate([top, np.zeros(size - len(top), np.int64)])
            top[: len(th)] += th
            for found in np.flatnonzero(bc).tolist():
                sel = v[g == found]
                lo[found] = min(lo.get(found, _U64_MAX), int(sel.min()))
                hi[found] = max(hi.get(found, 0), int(sel.max()))
            if keeping:
                near = np.zeros(len(g), dtype=bool)
                for a, b in self.windows:
                    near |= (buckets >= a) & (buckets <= b)
                with self._kept_lock:  # one budget for all parts: memory stays bounded
                    self._kept += int(near.sum())
                    keeping = self._kept <= _COLLECT_MAX
                near_g.append(g[near])
                near_v.append(v[near])
        kept = None
        if keeping and near_g:
            kept = (np.concatenate(near_g), np.concatenate(near_v))
        elif keeping:
            kept = (np.zeros(0, np.int64), np.zeros(0, np.uint64))
        return _Counts(local, counts, top, lo, hi, dropped, kept)

    def build(self) -> _Plan:
        import numpy as np

        c = self.config
        lo: dict[int, int] = {}
        hi: dict[int, int] = {}
        counts = np.zeros(0, dtype=np.int64)
        top = np.zeros(0, dtype=np.int64)
        parts = self._map(self._count)
        near_g: list[np.ndarray] = []
        near_v: list[np.ndarray] = []
        for part in parts:  # merged in data order: ids by first appearance
            if self.rows.stratify:
                ids = [
                    self.rows.classes.setdefault(k, len(self.rows.classes)) for k in part.classes
                ]
            else:
                ids = [0] * len(part.counts)
            n_groups = max(ids, default=-1) + 1
            if n_groups > len(counts):
                counts = np.concatenate([counts, np.zeros(n_groups - len(counts), np.int64)])
                top = np.concatenate([top, np.zeros(n_groups * _BUCKETS - len(top), np.int64)])
            self.dropped += part.dropped
            for local, gid in enumerate(ids):
                if local >= len(part.counts) or not part.counts[local]:
                    continue
                counts[gid] += part.counts[local]
                top[gid * _BUCKETS : (gid + 1) * _BUCKETS] += part.top[
                    local * _BUCKETS : (local + 1) * _BUCKETS
                ]
                lo[gid] = min(lo.get(gid, _U64_MAX), part.lo[local])
                hi[gid] = max(hi.get(gid, 0), part.hi[local])
            if part.near is not None and self._kept <= _COLLECT_MAX:
                near_g.append(np.asarray(ids, dtype=np.int64)[part.near[0]])
                near_v.append(part.near[1])
        del parts
        near = None
        if self.windows and self._kept <= _COLLECT_MAX:
            near = (np.concatenate(near_g), np.concatenate(near_v)) if near_g else None
        self.counts = {i: int(n) for i, n in enumerate(counts) if n}
        total = sum(self.counts.values())
        names = {v: k for k, v in self.rows.classes.items()}
        if c.time_column:
            if total < 10:
                raise DataError(f"only {total} rows; need at least 10 to split by time")
        elif total < 10:
            raise DataError(
                f"only {total} rows with a non-missing target {c.target!r}; need at least 10 "
                "to split into train, validation and test"
            )
        if self.rows.stratify:
            rare = min(self.counts, key=lambda g: (self.counts[g], names[g]))
            if self.counts[rare] < 3:
                raise DataError(
                    f"class {names[rare]!r} of target {c.target!r} has {self.counts[rare]} "
                    "row(s); each class needs at least 3 to appear in train, validation and "
                    "test; add rows or drop it"
                )
        for gid, n in sorted(self.counts.items()):
            n_test = max(1, round(n * c.test_fraction))
            n_val = max(1, round(n * c.val_fraction))
            if n_test + n_val >= n:  # a group of 3 to a handful of rows: one each
                n_test, n_val = 1, 1
            first: int = n - n_val - n_test if c.time_column else n_test
            second: int = n - n_test if c.time_column else n_test + n_val
            hist = top[gid * _BUCKETS : (gid + 1) * _BUCKETS]
            cum = np.cumsum(hist)
            for k in (first, second):
                b = min(int(np.searchsorted(cum, k, side="right")), _BUCKETS - 1)
                start = b << _TOP_SHIFT
                end = start + (1 << _TOP_SHIFT) - 1
                self.cuts.append(
                    _Cut(
                        gid,
                        k,
                        lo=max(lo[gid], start),
                        hi=min(hi[gid], end),
                        below=int(cum[b - 1]) if b else 0,
                        inside=int(hist[b]),
                    )
                )
                if near is not None and any(a <= b <= z for a, z in self.windows):
                    # Every value of this group in the cut's bucket was kept: settle it now.
                    cut = self.cuts[-1]
                    sel = near[1][(near[0] == gid) & (near[1] >= np.uint64(cut.lo))]
                    self._settle(cut, sel[sel <= np.uint64(cut.hi)])
        self._narrow()
        return self

    def _narrow(self) -> None:
        import numpy as np

        while True:
            for cut in self.cuts:
                if not cut.done and cut.lo == cut.hi:  # one value left: the rest is ties
                    cut.value, cut.done = cut.lo, True
                    cut.ties = cut.k - cut.below if self.config.time_column else 0
            open_cuts = [cut for cut in self.cuts if not cut.done]
            if not open_cuts:
                return
            collect = [cut for cut in open_cuts if cut.inside <= _COLLECT_MAX]
            if len(collect) == len(open_cuts):
                self._collect(collect)
                continue
            narrow = [cut for cut in open_cuts if cut not in collect]
            widths = [max(1, -(-(cut.hi - cut.lo + 1) // _BUCKETS)) for cut in narrow]
            each = self._map(partial(self._histograms, narrow=narrow, widths=widths))
            hists = [np.sum(h, axis=0) for h in zip(*each, strict=True)]
            for cut, width, hist in zip(narrow, widths, hists, strict=True):
                cum = np.cumsum(hist)
                rank = cut.k - cut.below
                b = int(np.searchsorted(cum, rank, side="right"))
                if b >= _BUCKETS:  # k is the group's size: every row is below
                    b = _BUCKETS - 1
                before = int(cum[b - 1]) if b else 0
                cut.below += before
                cut.lo = cut.lo + b * width
                cut.hi = min(cut.hi, cut.lo + width - 1)
                cut.inside = int(hist[b])

    def _histograms(self, part: _Part, narrow: list[_Cut], widths: list[int]) -> list[np.ndarray]:
        """Per cut being narrowed, the part's rows in each of 4,096 sub-buckets of its range."""
        import numpy as np

        hists = [np.zeros(_BUCKETS, dtype=np.int64) for _ in narrow]
        for groups, values in self._scan(part):
            for cut, width, hist in zip(narrow, widths, hists, strict=True):
                sel = values[(groups == cut.group) & (values >= np.uint64(cut.lo))]
                sel = sel[sel <= np.uint64(cut.hi)]
                idx = ((sel - np.uint64(cut.lo)) // np.uint64(width)).astype(np.int64)
                hist += np.bincount(idx, minlength=_BUCKETS)
        return hists

    def _collect(self, cuts: list[_Cut]) -> None:
        import numpy as np

        def found(part: _Part) -> list[list[np.ndarray]]:
            out: list[list[np.ndarray]] = [[] for _ in cuts]
            for groups, values in self._scan(part):
                for i, cut in enumerate(cuts):
                    sel = values[(groups == cut.group) & (values >= np.uint64(cut.lo))]
                    out[i].append(sel[sel <= np.uint64(cut.hi)])
            return out

        per_part = self._map(found)
        for i, cut in enumerate(cuts):
            parts = [a for p in per_part for a in p[i]]
            self._settle(cut, np.concatenate(parts) if parts else np.zeros(0, np.uint64))

    def _settle(self, cut: _Cut, vals: np.ndarray) -> None:
        """Fix ``cut`` from ``vals``: every value of its group within ``[cut.lo, cut.hi]``."""
        import numpy as np

        rank = cut.k - cut.below
        if rank >= len(vals):  # every row of the group is below the cut
            cut.value, cut.ties = _U64_MAX, 1 << 62
        else:
            v = np.partition(vals, rank)[rank]  # the rank-th smallest, no full sort
            cut.value = int(v)
            equal_before = rank - int(np.count_nonzero(vals < v))
            # A random split keeps rows of one key together; a time split is stable.
            cut.ties = equal_before if self.config.time_column else 0
        cut.done = True

    def assigner(
        self, offset: int = 0, ties_seen: Mapping[tuple[int, int], int] | None = None
    ) -> _Assigner:
        """An assigner starting at row ``offset`` of the data, after ``ties_seen[(cut, group)]``
        rows equal to a cut value with ties (see :meth:`ties_before`)."""
        return _Assigner(self, offset, ties_seen or {})

    def ties_before(self) -> list[dict[tuple[int, int], int]]:
        """Per part, how many rows equal to each cut with ties (a time split whose cut
        falls inside a run of equal times) come before it; one more pass, counted only
        when some cut has ties (else empty dicts)."""
        import numpy as np

        a = self.assigner()
        keys = [(j, gid, a.value[j, gid]) for j in range(2) for gid in a.ties[j]]
        if not keys:
            return [{} for _ in self.parts]

        def count(part: _Part) -> list[int]:
            n = [0] * len(keys)
            for groups, values in self._scan(part):
                for i, (_, gid, at) in enumerate(keys):
                    n[i] += int(np.count_nonzero((groups == gid) & (values == at)))
            return n

        out: list[dict[tuple[int, int], int]] = []
        running = [0] * len(keys)
        for n in self._map(count):
            out.append({(j, gid): r for (j, gid, _), r in zip(keys, running, strict=True)})
            running = [r + x for r, x in zip(running, n, strict=True)]
        return out


class _Assigner:
    """Gives each row of each batch, in data order, its split index (-1: dropped)."""

    def __init__(self, plan: _Plan, offset: int, ties_seen: Mapping[tuple[int, int], int]) -> None:
        import numpy as np

        self.plan = plan
        self.offset = offset
        n_groups = max(plan.counts) + 1 if plan.counts else 0
        self.value = np.full((2, n_groups), _U64_MAX, dtype=np.uint64)
        self.ties: list[dict[int, list[int]]] = [{}, {}]  # group -> [ties allowed, seen]
        per_group: dict[int, list[_Cut]] = {}
        for cut in plan.cuts:
            per_group.setdefault(cut.group, []).append(cut)
        for gid, (a, b) in per_group.items():
            for j, cut in enumerate((a, b)):
                self.value[j, gid] = np.uint64(cut.value)
                if cut.ties:
                    self.ties[j][gid] = [cut.ties, ties_seen.get((j, gid), 0)]
        time = bool(plan.config.time_column)
        # Below both cuts, between them, above both: which split each segment is.
        self.segments = (0, 1, 2) if time else (2, 1, 0)

    def __call__(self, frame: Any) -> np.ndarray:
        import numpy as np

        rows = self.plan.rows
        groups = rows.groups(_column(frame, self.plan.config.target))
        values = rows.values(frame, self.offset)
        self.offset += len(frame)
        keep = groups >= 0
        g = np.where(keep, groups, 0)
        above = np.zeros(len(frame), dtype=np.int8)
        for j in range(2):
            thr = self.value[j][g]
            below = values < thr
            for gid, state in self.ties[j].items():
                eq = np.flatnonzero(keep & (groups == gid) & (values == self.value[j, gid]))
                take = max(0, min(len(eq), state[0] - state[1]))
                below[eq[:take]] = True
                state[1] += len(eq)
            above += (~below).astype(np.int8)
        out = np.asarray(self.segments, dtype=np.int8)[above]
        out[~keep] = -1
        return out


# --------------------------------------------------------------------------- public API


def split_frame(
    df: pd.DataFrame,
    target: str,
    *,
    task: Literal["classification", "regression"],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    time_column: str = "",
    key_column: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows in memory into train, validation and test (see the module docstring).

    The rows are those :func:`split_source` writes for the same table and settings, in the
    table's order.

    Raises:
        ConfigError: a fraction is outside (0, 1) or the two leave no training rows.
        DataError: too few rows for the split (or to stratify by every class).
        SchemaError: ``target``, ``time_column`` or ``key_column`` is not a column.
    """
    import numpy as np

    config = SplitConfig(
        target=target,
        task=task,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        time_column=time_column,
        key_column=key_column,
    )
    _check_columns(config, [str(c) for c in df.columns])

    def read(columns: list[str]) -> Iterator[pd.DataFrame]:
        yield df[columns]

    plan = _Plan(config, [_Part(0, read)]).build()
    which = plan.assigner()(df[plan.rows.columns])
    parts = tuple(df.iloc[np.flatnonzero(which == i)].reset_index(drop=True) for i in range(3))
    return parts[0], parts[1], parts[2]


def _check_columns(config: SplitConfig, names: Sequence[str]) -> None:
    for label, col in (
        ("target", config.target),
        ("time_column", config.time_column),
        ("key_column", config.key_column),
    ):
        if col and col not in names:
            raise SchemaError(f"{label} {col!r} is not a column; pass one of {list(names)[:20]}")


class SplitPlan:
    """A split planned over a shard set: which split every row goes to, found in a few
    passes over the target (and key or time) column, without writing anything.

    The set is cut into units of consecutive row groups (at most ``unit_rows`` rows; a
    larger group is a unit of its own); the passes scan the units in ``workers`` threads.
    Use :meth:`iter_splits` to stream the rows with their split, or :meth:`write_unit` to
    write one unit; both give the same answer every time.

    Args:
        shards: the data set.
        config: how to split.
        batch_rows: rows per record batch read (does not change the split).
        unit_rows: the most rows of a unit.
        workers: threads for the passes (default: one per CPU this process may use, at
            most 4).

    Raises:
        ConfigError: ``workers`` or ``unit_rows`` is not a positive integer.
        DataError: too few rows (or rows of a class) to split.
        SchemaError: a configured column is not in the data set.
    """

    def __init__(
        self,
        shards: ShardSet,
        config: SplitConfig,
        *,
        batch_rows: int = 65_536,
        unit_rows: int = 1_048_576,
        workers: int | None = None,
    ) -> None:
        import pyarrow as pa

        for name, value in (("workers", workers), ("unit_rows", unit_rows)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name}={value!r} is not a positive integer; pass e.g. 2")
        _check_columns(config, shards.columns)
        self.shards = shards
        self.config = config
        self.batch_rows = batch_rows
        self.workers = workers or default_workers()
        self.units = _units(shards.row_groups(), unit_rows)
        threaded = self.workers > 1

        def part(unit: list[RowGroup]) -> _Part:
            def read(columns: list[str]) -> Iterator[pa.RecordBatch]:
                yield from shards.iter_batches(
                    columns, batch_rows=batch_rows, row_groups=unit, use_threads=not threaded
                )

            return _Part(unit[0].offset, read)

        self._plan = _Plan(config, [part(u) for u in self.units], self.workers).build()
        self._ties: list[dict[tuple[int, int], int]] | None = None
        # Text columns pass through as Parquet's dictionaries (read, filter and write them
        # without decoding a string: a third less CPU for the fraud table's four); the
        # plan's own columns are read as they are.
        self._text_columns = [
            f.name
            for f in shards.schema
            if f.type in (pa.string(), pa.binary()) and f.name not in self._plan.rows.columns
        ]

    @property
    def dropped(self) -> int:
        """Rows left out because their target is missing."""
        return self._plan.dropped

    @property
    def classes(self) -> dict[str, int]:
        """Rows per class (a stratified split), else empty."""
        if not self._plan.rows.stratify:
            return {}
        names = {v: k for k, v in self._plan.rows.classes.items()}
        return {names[g]: n for g, n in self._plan.counts.items()}

    def iter_splits(
        self, columns: Sequence[str] | None = None, *, prefetch: bool = True
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """Yield ``(batch, split)`` in data order: ``split[i]`` is the index in
        :data:`SPLIT_NAMES` of row ``i`` of the batch (``-1``: dropped).

        Args:
            columns: the columns the batches carry (the plan's own columns are read too
                and dropped again); None reads all.
            prefetch: decode the next batches in a background thread.
        """
        from kfgpu.data.shards import prefetched

        needed = self._plan.rows.columns
        cols = None if columns is None else list(dict.fromkeys([*columns, *needed]))
        assign = self._plan.assigner()
        # The next batches decode in a thread while this one is assigned and written.
        batches = self.shards.iter_batches(cols, batch_rows=self.batch_rows)
        for batch in prefetched(batches) if prefetch else batches:
            which = assign(batch)
            yield (batch if columns is None else batch.select(list(columns))), which

    def ties_before(self) -> list[dict[tuple[int, int], int]]:
        """Per unit, the rows equal to each cut with ties that come before it (a time
        split whose cut falls inside a run of equal times; one more pass, done once)."""
        if self._ties is None:
            self._ties = self._plan.ties_before()
        return self._ties

    def write_unit(
        self,
        k: int,
        segments: Sequence[ShardSegment],
        *,
        decode_threads: bool = True,
        stop: Event | None = None,
    ) -> None:
        """Write the rows of unit ``k`` to ``segments[i]``, the segment of split ``i``,
        and close the segments (not when ``stop`` is set meanwhile: the caller aborts).

        Args:
            decode_threads: decode in Arrow's thread pool (False when one writer runs per
                CPU already).
        """
        unit = self.units[k]
        assign = self._plan.assigner(unit[0].offset, self.ties_before()[k])
        batches = self.shards.iter_batches(
            batch_rows=self.batch_rows,
            row_groups=unit,
            use_threads=decode_threads,
            dictionary_columns=self._text_columns,
        )
        for batch in batches:
            if stop is not None and stop.is_set():
                return
            which = assign(batch)
            for i, segment in enumerate(segments):
                mask = which == i
                if mask.all():
                    segment.write(batch)
                elif mask.any():
                    segment.write(batch.filter(mask))
        for segment in segments:
            segment.close()


def default_workers() -> int:
    """Worker threads a split uses unless told: one per CPU this process may use, at most
    4 (each write worker holds ~150 MB). On 2 CPUs a third worker measured no faster
    (18.1 s against 17.4 s for 20M rows) and held 170 MB more."""
    from kfgpu.data.shards import usable_cpus

    return min(_MAX_WORKERS, usable_cpus())


def _units(groups: Sequence[RowGroup], max_rows: int) -> list[list[RowGroup]]:
    """Consecutive row groups cut into units of about equal rows, at most ``max_rows`` each
    (a larger group is a unit alone); empty groups are left out.

    The count is the fewest that fit, rounded up to a multiple of 4, so 1, 2 or 4 workers
    end together (19 full units and a small one kept one of 2 CPUs idle for the last
    unit's 1.4 s). It depends on the rows and ``max_rows`` only, never on the workers.
    """
    kept = [g for g in groups if g.rows]
    total = sum(g.rows for g in kept)
    if not total:
        return []
    n = -(-total // max_rows)
    if n > 1:
        n = -(-n // 4) * 4
    units: list[list[RowGroup]] = []
    rows = done = 0
    for group in kept:
        # A new unit when this group would overflow one, or the last one reached its share.
        if not units or rows + group.rows > max_rows or done * n >= len(units) * total:
            units.append([])
            rows = 0
        units[-1].append(group)
        rows += group.rows
        done += group.rows
    return units


def split_source(
    source: str | ShardSet,
    outputs: Mapping[str, str],
    config: SplitConfig,
    *,
    batch_rows: int = 65_536,
    file_rows: int | None = None,
    row_group_rows: int | None = None,
    overlap: bool = True,
    workers: int | None = None,
) -> SplitResult:
    """Split a Parquet data set into sharded Parquet outputs without loading it.

    Reads the target (and the key or time column) a few times and every column once.
    The write pass cuts the data set into units of consecutive row groups (at most
    ``file_rows`` rows each); each unit is read, assigned and encoded whole by one worker
    thread into one segment of each output, so the workers never wait on each other and
    the files do not depend on how many there are. Memory holds, per worker, one record
    batch and one unfinished row group per output.

    Args:
        source: a Parquet file or directory (path or fsspec URI), or an opened shard set.
        outputs: the output directory (path or URI) of each split, keyed ``train``,
            ``validation``, ``test``; each gets a manifest with row counts and fingerprints.
        config: how to split.
        batch_rows: rows per record batch read (does not change the split).
        file_rows: the most rows per output file (default: the shard writer's); also the
            most rows of a unit.
        row_group_rows: the most rows per output row group (default: the shard writer's).
        overlap: write units in worker threads (False: one unit after the other in the
            calling thread; the same files).
        workers: worker threads with ``overlap`` (default: one per CPU this process may
            use, at most 4: each holds ~150 MB at the default sizes, so four keep the
            step under 1 GB).

    Returns:
        Rows per split, their manifests, rows dropped for a missing target.

    Raises:
        ConfigError: ``outputs`` does not name the three splits, or ``workers`` < 1.
        DataError: the source cannot be read or is too small to split.
        SchemaError: a configured column is not in the source.
    """
    from kfgpu.data.shards import DEFAULT_FILE_ROWS, ShardSet, ShardWriter, open_shards

    if sorted(outputs) != sorted(SPLIT_NAMES):
        raise ConfigError(
            f"outputs names {sorted(outputs)}; give one output URI for each of {list(SPLIT_NAMES)}"
        )
    shards = source if isinstance(source, ShardSet) else open_shards(source)
    plan = SplitPlan(
        shards,
        config,
        batch_rows=batch_rows,
        unit_rows=file_rows or DEFAULT_FILE_ROWS,
        workers=workers if overlap else 1,
    )
    sizes: dict[str, Any] = {}
    if file_rows is not None:
        sizes["file_rows"] = file_rows
    if row_group_rows is not None:
        sizes["row_group_rows"] = row_group_rows
    meta = {"split_by": config.by, "seed": config.seed, "source": shards.fingerprint}
    writers = [
        ShardWriter(outputs[name], schema=shards.schema, metadata={**meta, "split": name}, **sizes)
        for name in SPLIT_NAMES
    ]
    plan.ties_before()  # once, before the workers need it
    try:
        if plan.workers == 1 or len(plan.units) <= 1:
            for k in range(len(plan.units)):
                plan.write_unit(k, [w.segment(k) for w in writers])
        else:
            _write_units(plan, writers)
        manifests = {name: w.close() for name, w in zip(SPLIT_NAMES, writers, strict=True)}
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return SplitResult(
        rows={name: m.rows for name, m in manifests.items()},
        manifests=manifests,
        dropped=plan.dropped,
        by=config.by,
        classes=plan.classes,
        source_fingerprint=shards.fingerprint,
    )


def _write_units(plan: SplitPlan, writers: Sequence[Any]) -> None:
    """Write the plan's units with its worker threads, each taking the next unit in turn;
    the first error stops the others and is raised here."""
    import threading

    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    todo = iter(range(len(plan.units)))

    def work() -> None:
        while not stop.is_set():
            with lock:
                k = next(todo, None)
            if k is None:
                return
            try:
                segments = [w.segment(k) for w in writers]
                plan.write_unit(k, segments, decode_threads=False, stop=stop)
            except BaseException as e:  # raised in the calling thread below
                errors.append(e)
                stop.set()

    threads = [
        threading.Thread(target=work, name=f"kfgpu-split-{i}", daemon=True)
        for i in range(min(plan.workers, len(plan.units)))
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # KeyboardInterrupt: let the workers stop before the abort
        stop.set()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


def split_indices(which: np.ndarray, i: int) -> pa.Array:
    """Row indices (an Arrow array for ``batch.take``) of split ``i`` in a ``which`` array."""
    return _indices(which, i)


def _indices(which: np.ndarray, i: int) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.flatnonzero(which == i), type=pa.int64())
