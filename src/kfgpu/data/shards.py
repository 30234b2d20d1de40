"""Sharded Parquet data sets: list them, stream them and write them in bounded memory.

A *shard set* is one Parquet file or a directory of Parquet files, on a local path or any
fsspec URI (``file://``, ``local://``, ``memory://``; ``s3://`` and ``gs://`` when
``s3fs``/``gcsfs`` is installed). :func:`open_shards` lists its files and row groups with
their row counts (from the footers, or from a ``_manifest.json`` when kfgpu wrote it), and
:meth:`ShardSet.iter_batches` streams record batches one row group at a time, so memory
holds about one decoded row group of the chosen columns, whatever the data set's size.

:class:`ShardWriter` writes many files of bounded row groups. The output is atomic: on a
local disk the files go to a hidden sibling directory that is renamed into place only when
every file is closed; on an object store (no directory rename) the files are moved into
place and the manifest is written last, so an output without a manifest is incomplete and
:func:`open_shards` refuses a directory whose manifest is missing while hidden temporary
files remain. The manifest records every file's rows, row groups, bytes and SHA-256, and a
fingerprint of the whole set.

Files are always taken in sorted path order and rows in file order, so a row's *position*
(its index in that order) is the same for every reader; row-group sizes do not change it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import queue
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kfgpu.errors import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    SchemaError,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_FILE_ROWS",
    "DEFAULT_ROW_GROUP_ROWS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "RowGroup",
    "ShardFile",
    "ShardSegment",
    "ShardSet",
    "ShardWriter",
    "copy_shards",
    "open_filesystem",
    "open_shards",
    "prefetched",
    "read_manifest",
    "usable_cpus",
    "write_shards",
]

MANIFEST_NAME = "_manifest.json"
"""The manifest's file name inside a shard directory (a leading ``_``: Parquet readers skip it)."""
MANIFEST_FORMAT = "kfgpu-shards/1"
T = TypeVar("T")

DEFAULT_ROW_GROUP_ROWS = 65_536
"""Rows per row group the writer uses: one decoded group of 30 float64 columns is ~16 MB."""
DEFAULT_FILE_ROWS = 1_048_576
"""Rows per file the writer uses (16 row groups)."""
DEFAULT_BATCH_ROWS = 65_536
"""Rows per record batch :meth:`ShardSet.iter_batches` yields."""

_PARQUET_SUFFIXES = (".parquet", ".pq")
_TMP_MARK = ".kfgpu-tmp-"
_SINK_BUFFER = 8 << 20


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ShardFile:
    """One Parquet file of a shard set.

    Attributes:
        path: the file's path on its filesystem.
        name: the path relative to the shard set's root (the file's own name for a file).
        rows: rows in the file.
        row_groups: rows of each row group, in order.
        bytes: the file's size, when known.
        sha256: the file's SHA-256, when a manifest recorded it.
    """

    path: str
    name: str
    rows: int
    row_groups: tuple[int, ...]
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class RowGroup:
    """One row group of a shard set: the unit that readers hand out to ranks.

    Attributes:
        file: index of its file in :attr:`ShardSet.files`.
        index: the row group's index inside that file.
        rows: rows in the group.
        offset: position of the group's first row in the whole set (files in sorted order).
    """

    file: int
    index: int
    rows: int
    offset: int


@dataclass(frozen=True)
class Manifest:
    """What :class:`ShardWriter` records about the shards it wrote.

    Attributes:
        files: one :class:`ShardFile` per file (``path`` is the name relative to the root).
        schema: column name to Arrow type, in column order.
        fingerprint: SHA-256 over every file's name, rows and SHA-256, in order.
        metadata: free-form JSON the writer's caller attached (split name, source ...).
    """

    files: tuple[ShardFile, ...]
    schema: dict[str, str]
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "schema": self.schema,
            "files": [
                {
                    "name": f.name,
                    "rows": f.rows,
                    "row_groups": list(f.row_groups),
                    "bytes": f.bytes,
                    "sha256": f.sha256,
                }
                for f in self.files
            ],
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "manifest") -> Manifest:
        if d.get("format") != MANIFEST_FORMAT:
            raise DataFormatError(
                f"{where} has format {d.get('format')!r}, not {MANIFEST_FORMAT!r}; rewrite the "
                "data set with this kfgpu version",
                check="parquet",
            )
        try:
            files = tuple(
                ShardFile(
                    path=str(f["name"]),
                    name=str(f["name"]),
                    rows=int(f["rows"]),
                    row_groups=tuple(int(r) for r in f["row_groups"]),
                    bytes=None if f.get("bytes") is None else int(f["bytes"]),
                    sha256=f.get("sha256"),
                )
                for f in d["files"]
            )
            schema = {str(k): str(v) for k, v in d["schema"].items()}
            fp = str(d["fingerprint"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(
                f"{where} is not a valid kfgpu shard manifest (missing or bad {e}); rewrite it",
                check="parquet",
            ) from e
        return cls(files=files, schema=schema, fingerprint=fp, metadata=dict(d.get("metadata", {})))


def _set_fingerprint(files: Iterable[ShardFile]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(json.dumps([f.name, f.rows, f.sha256 or f.bytes]).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardSet:
    """A listed Parquet data set (see :func:`open_shards`).

    Attributes:
        uri: what was opened.
        root: the root path on the filesystem (a directory, or the one file).
        files: the files in read order.
        schema: the Arrow schema (of the first file; every file has its column names).
        fingerprint: the manifest's fingerprint (file contents), or without a manifest a
            hash of the files' names, sizes, row counts and the schema.
        manifest: the manifest, when the set has one.
    """

    uri: str
    root: str
    files: tuple[ShardFile, ...]
    schema: pa.Schema
    fingerprint: str
    manifest: Manifest | None
    filesystem: Any = field(repr=False, compare=False)

    @property
    def rows(self) -> int:
        """Rows in the whole set."""
        return sum(f.rows for f in self.files)

    @property
    def columns(self) -> list[str]:
        """Column names, in order (pandas index columns left out)."""
        return [n for n in self.schema.names if not n.startswith("__index_level_")]

    def row_groups(self) -> list[RowGroup]:
        """Every row group, in read order, with its global row offset."""
        out: list[RowGroup] = []
        offset = 0
        for i, f in enumerate(self.files):
            for g, rows in enumerate(f.row_groups):
                out.append(RowGroup(file=i, index=g, rows=rows, offset=offset))
                offset += rows
        return out

    def check_columns(self, columns: Sequence[str]) -> None:
        """Raise :class:`SchemaError` naming any of ``columns`` the set does not have."""
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise SchemaError(
                f"columns {missing!r} requested from {self.uri!r} do not exist; available "
                f"columns are {self.columns!r}; pass columns from that list"
            )

    def iter_batches(
        self,
        columns: Sequence[str] | None = None,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        row_groups: Iterable[RowGroup] | None = None,
        use_threads: bool = True,
        dictionary_columns: Sequence[str] = (),
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches, one row group at a time, in order.

        Args:
            columns: read only these columns (in this order); None reads all.
            batch_rows: the most rows per batch (a batch never spans two row groups).
            row_groups: read only these groups, in the order given; None reads all.
            use_threads: decode a group's columns in Arrow's thread pool (False: in the
                calling thread, for callers that run one reader per CPU themselves).
            dictionary_columns: text or binary columns to read as Arrow dictionaries
                (Parquet's own dictionary pages, not decoded into strings): much cheaper
                to read, filter and write again, and a :class:`ShardWriter` writes them
                as the plain strings of its schema.

        Raises:
            ConfigError: ``batch_rows`` is not a positive integer.
            SchemaError: a requested column does not exist.
            DataFormatError: a file cannot be read as Parquet.
        """
        import pyarrow as pa

        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigError(f"batch_rows={batch_rows!r} is not a positive integer; pass 65536")
        cols = None if columns is None else [str(c) for c in columns]
        if cols is not None:
            self.check_columns(cols)
        groups = self.row_groups() if row_groups is None else row_groups
        open_file: tuple[int, Any, Any] | None = None
        try:
            for group in groups:
                if open_file is None or open_file[0] != group.file:
                    if open_file is not None:
                        open_file[1].close()
                    open_file = (group.file, *self._open_file(group.file, dictionary_columns))
                pf = open_file[2]
                if group.rows == 0:
                    continue
                try:
                    it = pf.iter_batches(
                        batch_size=batch_rows,
                        row_groups=[group.index],
                        columns=cols,
                        use_threads=use_threads,
                    )
                    for batch in it:
                        yield batch if cols is None else batch.select(cols)
                except (pa.ArrowException, OSError) as e:
                    raise self._bad_file(group.file, e) from e
        finally:
            if open_file is not None:
                open_file[1].close()

    def iter_frames(
        self,
        columns: Sequence[str] | None = None,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        row_groups: Iterable[RowGroup] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """:meth:`iter_batches` as pandas frames."""
        for batch in self.iter_batches(columns, batch_rows=batch_rows, row_groups=row_groups):
            yield batch.to_pandas()

    def _open_file(self, i: int, read_dictionary: Sequence[str] = ()) -> tuple[Any, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        f = self.files[i]
        try:
            handle = self.filesystem.open(f.path, "rb")
        except FileNotFoundError as e:
            raise DataNotFoundError(
                f"Parquet shard {f.name!r} of {self.uri!r} is gone; the data set changed "
                "while it was read, or its manifest lists a file that was deleted; rewrite it",
                check="not_found",
            ) from e
        try:
            return handle, pq.ParquetFile(handle, read_dictionary=list(read_dictionary) or None)
        except (pa.ArrowException, OSError) as e:
            handle.close()
            raise self._bad_file(i, e) from e

    def _bad_file(self, i: int, e: BaseException) -> DataFormatError:
        return DataFormatError(
            f"Parquet shard {self.files[i].name!r} of {self.uri!r} cannot be read ({e}); "
            "rewrite or remove that file",
            check="parquet",
        )


def open_filesystem(uri: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path)`` of a local path or fsspec URI.

    Raises:
        ConfigError: the URI's scheme needs a filesystem package that is not installed.
    """
    import fsspec

    target = uri if "://" in uri else os.path.expanduser(uri)
    try:
        return fsspec.core.url_to_fs(target)
    except (ImportError, ValueError) as e:
        raise ConfigError(
            f"cannot open data URI {uri!r}: {e}; install the fsspec driver for that scheme "
            f"(e.g. s3fs, gcsfs) or pass a local path"
        ) from e


def _is_data_name(rel: str) -> bool:
    parts = rel.split("/")
    return not any(p.startswith(("_", ".")) for p in parts) and parts[-1].lower().endswith(
        _PARQUET_SUFFIXES
    )


def _footer(fs: Any, path: str, uri: str, name: str) -> tuple[pa.Schema, tuple[int, ...]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as handle:
            md = pq.ParquetFile(handle).metadata
            return md.schema.to_arrow_schema(), tuple(
                md.row_group(g).num_rows for g in range(md.num_row_groups)
            )
    except (pa.ArrowException, OSError) as e:
        raise DataFormatError(
            f"Parquet shard {name!r} of {uri!r} cannot be read ({e}); rewrite or remove that file",
            check="parquet",
        ) from e


def read_manifest(uri: str) -> Manifest | None:
    """The manifest of the shard directory ``uri``, or None when it has none."""
    fs, path = open_filesystem(uri)
    mpath = posixpath.join(path.rstrip("/"), MANIFEST_NAME)
    if not fs.exists(mpath):
        return None
    try:
        with fs.open(mpath, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise DataFormatError(
            f"shard manifest {mpath!r} of {uri!r} is not valid JSON ({e}); rewrite the data set",
            check="parquet",
        ) from e
    return Manifest.from_dict(data, where=f"shard manifest of {uri!r}")


def open_shards(uri: str) -> ShardSet:
    """List a Parquet file or directory of Parquet files, with row counts per row group.

    A directory with a ``_manifest.json`` (written by :class:`ShardWriter`) is listed from it
    without reading any footer; any other directory is searched recursively for
    ``.parquet``/``.pq`` files (names starting with ``_`` or ``.`` are skipped), taken in
    sorted order, and each footer is read once.

    Args:
        uri: a local path or fsspec URI of a Parquet file or directory.

    Raises:
        ConfigError: the URI's filesystem package is not installed.
        DataNotFoundError: nothing exists at ``uri``.
        DataFormatError: it holds no Parquet file, a file is not Parquet, or a write into it
            was interrupted (temporary files without a manifest).
        SchemaError: the files do not all have the same columns.
    """
    fs, path = open_filesystem(uri)
    try:
        exists = fs.exists(path)
    except OSError as e:
        raise DataNotFoundError(
            f"data {uri!r} cannot be reached ({e}); check the URI and credentials",
            check="not_found",
        ) from e
    if not exists:
        raise DataNotFoundError(
            f"Parquet data {uri!r} does not exist; pass a Parquet file or a directory of them",
            check="not_found",
        )
    if not fs.isdir(path):
        single, groups = _footer(fs, path, uri, posixpath.basename(path))
        size = fs.size(path)
        one = ShardFile(path, posixpath.basename(path), sum(groups), groups, size)
        fp = _layout_fingerprint([one], single)
        return ShardSet(uri, path, (one,), single, fp, None, fs)

    root = path.rstrip("/")
    manifest = read_manifest(uri)
    if manifest is not None:
        files = tuple(
            ShardFile(
                path=posixpath.join(root, f.name),
                name=f.name,
                rows=f.rows,
                row_groups=f.row_groups,
                bytes=f.bytes,
                sha256=f.sha256,
            )
            for f in manifest.files
        )
        if not files:
            raise DataFormatError(
                f"shard manifest of {uri!r} lists no files; rewrite the data set",
                check="parquet",
            )
        first, _ = _footer(fs, files[0].path, uri, files[0].name)
        return ShardSet(uri, root, files, first, manifest.fingerprint, manifest, fs)

    found: list[tuple[str, str]] = []
    pending_tmp = False
    for p in sorted(fs.find(root)):
        rel = p[len(root) :].lstrip("/") if p.startswith(root) else posixpath.basename(p)
        if _TMP_MARK in rel:
            pending_tmp = True
        if _is_data_name(rel):
            found.append((p, rel))
    if pending_tmp:
        raise DataFormatError(
            f"Parquet directory {uri!r} holds an unfinished kfgpu write (temporary "
            f"'{_TMP_MARK}*' files and no {MANIFEST_NAME}); rerun the step that writes it",
            check="parquet",
        )
    if not found:
        raise DataFormatError(
            f"directory {uri!r} holds no .parquet or .pq files; pass a Parquet file or a "
            "directory of them",
            check="unsupported_format",
        )
    shard_files: list[ShardFile] = []
    schema: pa.Schema | None = None
    for p, rel in found:
        s, groups = _footer(fs, p, uri, rel)
        if schema is None:
            schema = s
        elif s.names != schema.names:
            raise SchemaError(
                f"Parquet shard {rel!r} of {uri!r} has columns {s.names!r} but "
                f"{shard_files[0].name!r} has {schema.names!r}; every shard needs the same "
                "columns in the same order"
            )
        shard_files.append(ShardFile(p, rel, sum(groups), groups, fs.size(p)))
    assert schema is not None
    return ShardSet(
        uri, root, tuple(shard_files), schema, _layout_fingerprint(shard_files, schema), None, fs
    )


def _layout_fingerprint(files: Sequence[ShardFile], schema: pa.Schema) -> str:
    h = hashlib.sha256(str(schema).encode())
    for f in files:
        h.update(json.dumps([f.name, f.rows, f.bytes]).encode())
    return h.hexdigest()


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota
    (``cpu.max``, as a Kubernetes CPU limit sets it), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead.

    Decoding Parquet releases the GIL, so the next record batches are read while the caller
    works on the current one. The items come in the same order; an exception of the
    iterator is raised here, at its place. Closing the generator early stops the thread
    after at most ``depth`` more items.
    """
    q: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(msg: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((0, item)):
                    return
        except BaseException as e:
            put((1, e))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's cleanup (open files) runs in its own thread
        put((2, None))

    thread = threading.Thread(target=run, name="kfgpu-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == 0:
                yield value
            elif kind == 1:
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------- writing


class _HashingSink:
    """A binary sink that hashes and counts every byte on the way through."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._h.update(view)
        self.size += view.nbytes
        self._f.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    @property
    def closed(self) -> bool:
        return bool(self._f.closed)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _dictionary_variant(schema: pa.Schema, other: pa.Schema) -> bool:
    """Whether ``other`` is ``schema`` with some ``string``/``binary`` columns as dictionaries
    of those values (and the writer can store them as the plain type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    if schema.names != other.names or not hasattr(pq.ParquetWriter, "add_key_value_metadata"):
        return False
    for f, g in zip(schema, other, strict=True):
        if f.type == g.type:
            continue
        if not (
            pat.is_dictionary(g.type)
            and g.type.value_type == f.type
            and f.type in (pa.string(), pa.binary())
            and f.nullable == g.nullable
        ):
            return False
    return True


class _FileRoller:
    """Rows into Parquet files of one directory: row groups of at most ``row_group_rows``,
    files of at most ``file_rows``, every file hashed and counted on the way to disk.

    One roller is written by one thread at a time; a :class:`ShardWriter` has one for the
    rows written in order and one per segment.
    """

    def __init__(self, owner: ShardWriter, prefix: str) -> None:
        self.owner = owner
        self.prefix = prefix
        self.files: list[ShardFile] = []
        self.rows = 0
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self._writer: Any = None
        self._sink: _HashingSink | None = None
        self._stream: Any = None
        self._groups: list[int] = []

    def next_name(self) -> str:
        return f"{self.prefix}{len(self.files):06d}.parquet"

    def append(self, batches: Sequence[pa.RecordBatch]) -> None:
        for b in batches:
            self.pending.append(b)
            self.pending_rows += b.num_rows
        while self.pending_rows >= self._next_group_rows():
            self._flush_group(self._next_group_rows())

    def flush(self) -> None:
        """Write what is pending and close the open file."""
        while self.pending_rows:
            self._flush_group(min(self.pending_rows, self._next_group_rows()))
        self.close_file()

    def _next_group_rows(self) -> int:
        w = self.owner
        return min(w.row_group_rows, w.file_rows - sum(self._groups))

    def _flush_group(self, n: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        w = self.owner
        file_schema = w._file_schema or w.schema
        table = pa.Table.from_batches(self.pending, schema=file_schema)
        if file_schema is not w.schema:  # one dictionary per column chunk: no fallback
            table = table.unify_dictionaries()
        group, rest = table.slice(0, n), table.slice(n)
        self.pending = rest.to_batches()
        self.pending_rows = rest.num_rows
        if self._writer is None:
            handle = w._fs.open(posixpath.join(w._tmp, self.next_name()), "wb")
            self._sink = _HashingSink(handle)
            # Buffered in C++: the Python sink (hashing) is called once per 8 MiB, not once
            # per page, so a writer thread seldom waits for the GIL.
            self._stream = pa.BufferedOutputStream(
                pa.PythonFile(self._sink, mode="w"), buffer_size=_SINK_BUFFER
            )
            self._writer = pq.ParquetWriter(
                self._stream,
                file_schema,
                compression=w.compression,
                use_dictionary=w._dictionary(),
                write_statistics=w._statistics(),
                # Dictionary columns are written as the schema's strings: the footer gets
                # the schema's own Arrow schema at close, as a plain write would store it.
                store_schema=file_schema is w.schema,
            )
        self._writer.write_table(group, row_group_size=max(n, 1))
        self._groups.append(group.num_rows)
        self.rows += group.num_rows
        if sum(self._groups) >= w.file_rows:
            self.close_file()

    def close_file(self) -> None:
        if self._writer is None:
            return
        w = self.owner
        if w._file_schema is not None and w._file_schema is not w.schema:
            self._writer.add_key_value_metadata(w._stored_schema())
        self._writer.close()
        assert self._sink is not None and self._stream is not None
        self._stream.close()  # flushes the buffer into the sink
        self._sink.close()
        name = self.next_name()
        self.files.append(
            ShardFile(
                path=name,
                name=name,
                rows=sum(self._groups),
                row_groups=tuple(self._groups),
                bytes=self._sink.size,
                sha256=self._sink.hexdigest(),
            )
        )
        self._writer = self._stream = self._sink = None
        self._groups = []

    def abort(self) -> None:
        """Close the open file quietly (it is deleted with the temporary directory)."""
        if self._writer is not None:
            try:
                self._writer.close()
                if self._stream is not None:
                    self._stream.close()
                if self._sink is not None:
                    self._sink.close()
            except Exception:  # the files are deleted next anyway
                pass
        self._writer = self._stream = self._sink = None
        self.pending = []
        self.pending_rows = 0


class ShardSegment:
    """The rows of one segment of a :class:`ShardWriter` (see :meth:`ShardWriter.segment`).

    Write it from one thread; :meth:`close` hands its files to the writer.
    """

    def __init__(self, owner: ShardWriter, index: int) -> None:
        self._owner = owner
        self.index = index
        self._out = _FileRoller(owner, f"seg-{index:06d}-")
        self._closed = False

    @property
    def rows(self) -> int:
        """Rows written to this segment so far."""
        return self._out.rows + self._out.pending_rows

    def write(self, data: pa.RecordBatch | pa.Table | pd.DataFrame) -> None:
        """Append rows, as :meth:`ShardWriter.write` does."""
        if self._closed or self._owner._closed:
            raise ConfigError(
                f"segment {self.index} of {self._owner.uri!r} is closed; open a new writer"
            )
        self._out.append(self._owner._batches(data))

    def close(self) -> None:
        """Write what is pending; the segment's files join the set when the writer closes."""
        if self._closed:
            return
        self._out.flush()
        self._closed = True
        self._owner._segment_closed(self.index, self._out.files)


class ShardWriter:
    """Write a data set as many Parquet files of bounded row groups, atomically.

    Rows go to ``part-000000.parquet``, ``part-000001.parquet`` ... each holding at most
    ``file_rows`` rows in row groups of at most ``row_group_rows``. Use it as a context
    manager: leaving the block normally commits (see the module docstring for what atomic
    means per filesystem), an exception discards everything written.

    Args:
        uri: the output directory (a local path or fsspec URI). Whatever was there is
            replaced on commit.
        schema: the Arrow schema; None takes the first written batch's.
        file_rows: the most rows per file.
        row_group_rows: the most rows per row group.
        metadata: JSON-able facts recorded in the manifest's ``metadata``.
        compression: the Parquet codec.
        dictionary_columns: the columns to dictionary-encode; None picks the text, binary,
            boolean and dictionary columns. (Dictionary-encoding a float column of mostly
            distinct values made pyarrow 25 write 4.5x slower for no smaller file.)
        statistics: the columns whose min/max statistics the files carry; None picks every
            column that is not floating point (min/max of float columns took ~11% of the
            write and serve no filter kfgpu runs).
        background: encode, compress, hash and write the files in a thread of their own, so
            that the caller reads and prepares the next rows meanwhile (pyarrow releases the
            GIL while it encodes). :meth:`write` then checks the rows' schema and queues
            them; an error of the thread is raised by the next :meth:`write` or by
            :meth:`close`.
        queue_batches: with ``background``, the most batches queued before :meth:`write`
            waits (bounds the memory the queue holds).

    Raises:
        ConfigError: a size is not a positive integer.
    """

    def __init__(
        self,
        uri: str,
        *,
        schema: pa.Schema | None = None,
        file_rows: int = DEFAULT_FILE_ROWS,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        metadata: dict[str, Any] | None = None,
        compression: str = "snappy",
        dictionary_columns: Sequence[str] | None = None,
        statistics: Sequence[str] | None = None,
        background: bool = False,
        queue_batches: int = 2,
    ) -> None:
        for name, value in (
            ("file_rows", file_rows),
            ("row_group_rows", row_group_rows),
            ("queue_batches", queue_batches),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not a positive integer; pass e.g. 65536")
        self.uri = uri
        self.schema = schema
        self.file_rows = file_rows
        self.row_group_rows = min(row_group_rows, file_rows)
        self.metadata = dict(metadata or {})
        self.compression = compression
        self.dictionary_columns = None if dictionary_columns is None else list(dictionary_columns)
        self.statistics = None if statistics is None else list(statistics)
        self._fs, dest = open_filesystem(uri)
        self._dest = dest.rstrip("/") or dest
        self._local = "file" in _protocols(self._fs)
        token = uuid.uuid4().hex[:12]
        if self._local:
            parent, base = posixpath.split(self._dest)
            self._tmp = posixpath.join(parent, f"{_TMP_MARK}{base}-{token}")
        else:
            self._tmp = posixpath.join(self._dest, f"{_TMP_MARK}{token}")
        self._fs.makedirs(self._tmp, exist_ok=True)
        self._out = _FileRoller(self, "part-")
        # The schema the files are written with: ``schema``, or it with some text columns
        # as dictionaries when the rows come so (see ``ShardSet.iter_batches``).
        self._file_schema: pa.Schema | None = None
        self._segments: dict[int, list[ShardFile]] = {}
        self._open_segments = 0
        self._segment_writers: list[ShardSegment] = []
        self._lock = threading.Lock()
        self._closed = False
        self.manifest: Manifest | None = None
        """The manifest, once :meth:`close` committed the set."""
        self._queue: queue.Queue[list[pa.RecordBatch] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopping = False
        if background:
            self._queue = queue.Queue(maxsize=queue_batches)
            self._thread = threading.Thread(
                target=self._work, name=f"kfgpu-shard-writer-{token}", daemon=True
            )
            self._thread.start()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            if not self._closed:
                self.close()
        else:
            self.abort()

    @property
    def rows(self) -> int:
        """Rows written so far (queued rows and rows of open segments not yet counted)."""
        return self._out.rows + sum(f.rows for fs in self._segments.values() for f in fs)

    def write(self, data: pa.RecordBatch | pa.Table | pd.DataFrame) -> None:
        """Append rows (a record batch, table or pandas frame without its index).

        Raises:
            SchemaError: the rows' columns or types do not match the schema.
            ConfigError: the writer is closed, or holds segments.
        """
        if self._closed:
            raise ConfigError(f"shard writer for {self.uri!r} is closed; open a new one")
        self._check_sequential("write")
        batches = self._batches(data)
        if not batches:
            return
        if self._queue is None:
            self._out.append(batches)
            return
        while True:  # queue, unless the thread failed meanwhile
            self._raise_error()
            try:
                self._queue.put(batches, timeout=0.2)
                return
            except queue.Full:
                continue

    def segment(self, index: int) -> ShardSegment:
        """A writer for segment ``index`` of the set.

        Segments let several threads write one data set at once: each writes the rows of
        its own segment (in their order) to files of its own, and the committed set holds
        the segments' files in index order, named ``part-000000.parquet`` ... as usual. The
        files do not depend on which thread wrote which segment, nor when. A writer holds
        either segments or rows given to :meth:`write`, not both; every segment must be
        closed before :meth:`close`.

        Raises:
            ConfigError: the writer has no schema, is closed, already had rows written to
                it, or ``index`` was opened before.
        """
        if self.schema is None:
            raise ConfigError(f"segments of {self.uri!r} need the schema; pass schema=")
        with self._lock:
            if self._closed:
                raise ConfigError(f"shard writer for {self.uri!r} is closed; open a new one")
            if self._queue is not None:
                raise ConfigError(
                    f"shard writer for {self.uri!r} was opened with background=True, which "
                    "writes rows in order; open it without background to write segments"
                )
            if self._out.rows or self._out.pending_rows or self._out.files:
                raise ConfigError(
                    f"shard writer for {self.uri!r} already has rows written in order; "
                    "write a data set either with write() or with segments, not both"
                )
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ConfigError(f"segment index={index!r} is not a whole number >= 0")
            if index in self._segments:
                raise ConfigError(f"segment {index} of {self.uri!r} was opened already")
            self._segments[index] = []
            self._open_segments += 1
            seg = ShardSegment(self, index)
            self._segment_writers.append(seg)
        return seg

    def _segment_closed(self, index: int, files: list[ShardFile]) -> None:
        with self._lock:
            self._segments[index] = files
            self._open_segments -= 1

    def _check_sequential(self, what: str) -> None:
        if self._segments:
            raise ConfigError(
                f"shard writer for {self.uri!r} holds segments; {what}() writes in order, so "
                "write each segment's rows through its own ShardSegment"
            )

    def _batches(self, data: pa.RecordBatch | pa.Table | pd.DataFrame) -> list[pa.RecordBatch]:
        """The rows as record batches of the set's schema (SchemaError if they cannot be)."""
        import pyarrow as pa

        if not isinstance(data, (pa.RecordBatch, pa.Table)):
            try:
                data = pa.Table.from_pandas(data, schema=self.schema, preserve_index=False)
            except (pa.ArrowException, KeyError, TypeError, ValueError) as e:
                raise SchemaError(
                    f"frame cannot be written to {self.uri!r}: {e}; write the same columns "
                    "each time, each column of one type"
                ) from e
        if self.schema is None:
            self.schema = data.schema
        elif data.schema != self.schema and not _dictionary_variant(self.schema, data.schema):
            try:
                data = data.select(self.schema.names).cast(self.schema)
            except (pa.ArrowException, KeyError, ValueError) as e:
                raise SchemaError(
                    f"rows written to {self.uri!r} have schema {data.schema} but the data set "
                    f"has {self.schema}; write the same columns with the same types"
                ) from e
        with self._lock:  # the first rows decide how the files hold the text columns
            if self._file_schema is None:
                self._file_schema = (
                    self.schema if data.schema == self.schema else data.schema.remove_metadata()
                )
        if data.schema != self._file_schema:  # rows that come the other way: as the files
            data = pa.Table.from_batches(
                data.to_batches() if isinstance(data, pa.Table) else [data]
            ).cast(self._file_schema)
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        return [b for b in batches if b.num_rows]

    def _stored_schema(self) -> dict[bytes, bytes]:
        """The footer key-values a plain write of ``schema`` stores: its metadata and its
        serialized Arrow schema (readers take the column types from it)."""
        import base64

        assert self.schema is not None
        kv = dict(self.schema.metadata or {})
        kv[b"ARROW:schema"] = base64.b64encode(self.schema.serialize().to_pybytes())
        return kv

    def _work(self) -> None:
        """The background thread: append what is queued until ``None`` comes."""
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._stopping:
                continue  # drain: the set is failed or being aborted
            try:
                self._out.append(item)
            except BaseException as e:  # raised in the caller's thread by write/close
                self._error = e

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop_thread(self) -> None:
        """Wait until the background thread has written all that was queued, and end it."""
        if self._thread is None or self._queue is None:
            return
        thread, self._thread = self._thread, None
        while thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        thread.join()

    def add_file(self, fs: Any, path: str, rows: int, row_groups: Sequence[int]) -> None:
        """Append an existing Parquet file (same schema) byte for byte, after the rows
        written so far."""
        self._check_sequential("add_file")
        if self._queue is not None:  # the thread writes what is queued; inline from here on
            self._stop_thread()
            self._queue = None
            self._raise_error()
        self._out.flush()
        name = self._out.next_name()
        target = posixpath.join(self._tmp, name)
        if self._local and "file" in _protocols(fs):
            # Local to local: the kernel copies (copy_file_range/sendfile, no Python buffers),
            # then the copy's own bytes are hashed: 3x less CPU than streaming through Python.
            from fsspec.core import strip_protocol

            shutil.copyfile(strip_protocol(path), target)
            with open(target, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            size = os.path.getsize(target)
        else:
            with fs.open(path, "rb") as src, self._fs.open(target, "wb") as dst:
                sink = _HashingSink(dst)
                while chunk := src.read(8 << 20):
                    sink.write(chunk)
            digest, size = sink.hexdigest(), sink.size
        self._out.files.append(ShardFile(name, name, rows, tuple(row_groups), size, digest))
        self._out.rows += rows

    def _dictionary(self) -> list[str]:
        import pyarrow.types as pat

        if self.dictionary_columns is not None:
            return self.dictionary_columns
        assert self.schema is not None
        return [
            f.name
            for f in self.schema
            if pat.is_string(f.type)
            or pat.is_large_string(f.type)
            or pat.is_binary(f.type)
            or pat.is_boolean(f.type)
            or pat.is_dictionary(f.type)
        ]

    def _statistics(self) -> list[str]:
        import pyarrow.types as pat

        if self.statistics is not None:
            return self.statistics
        assert self.schema is not None
        return [f.name for f in self.schema if not pat.is_floating(f.type)]

    def _join_segments(self) -> list[ShardFile]:
        """The segments' files in index order, renamed ``part-000000.parquet`` ..."""
        if self._open_segments:
            raise ConfigError(
                f"{self._open_segments} segment(s) of {self.uri!r} are still open; close "
                "every segment before the writer"
            )
        files: list[ShardFile] = []
        for index in sorted(self._segments):
            for f in self._segments[index]:
                name = f"part-{len(files):06d}.parquet"
                self._fs.mv(posixpath.join(self._tmp, f.name), posixpath.join(self._tmp, name))
                files.append(ShardFile(name, name, f.rows, f.row_groups, f.bytes, f.sha256))
        return files

    def close(self) -> Manifest:
        """Flush, write the manifest and put the data set in place.

        Returns:
            The manifest written.

        Raises:
            ConfigError: nothing was written and no schema was given.
        """
        import pyarrow.parquet as pq

        if self._closed:
            raise ConfigError(f"shard writer for {self.uri!r} is already closed")
        try:
            self._stop_thread()
            self._raise_error()
            self._out.flush()
            files = self._out.files if not self._segments else self._join_segments()
            if not files:
                if self.schema is None:
                    raise ConfigError(
                        f"no rows and no schema were given for {self.uri!r}; pass schema= to "
                        "write an empty data set"
                    )
                # An empty set still carries its schema: one file with no row group.
                name = "part-000000.parquet"
                handle = self._fs.open(posixpath.join(self._tmp, name), "wb")
                sink = _HashingSink(handle)
                pq.ParquetWriter(sink, self.schema, compression=self.compression).close()
                sink.close()
                files.append(ShardFile(name, name, 0, (), sink.size, sink.hexdigest()))
            assert self.schema is not None
            manifest = Manifest(
                files=tuple(files),
                schema={f.name: str(f.type) for f in self.schema},
                fingerprint=_set_fingerprint(files),
                metadata=self.metadata,
            )
            self._commit(manifest)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self.manifest = manifest
        return manifest

    def _commit(self, manifest: Manifest) -> None:
        text = json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n"
        fs, dest = self._fs, self._dest
        with fs.open(posixpath.join(self._tmp, MANIFEST_NAME), "wb") as f:
            f.write(text.encode())
        if self._local:
            _replace_local_dir(self._tmp, dest)
            return
        # No directory rename on object stores: drop any old manifest first (the set is
        # then visibly incomplete), move the files, write the manifest last.
        old = posixpath.join(dest, MANIFEST_NAME)
        if fs.exists(old):
            fs.rm(old)
        for p in fs.find(dest):
            if _TMP_MARK not in p and p.lower().endswith(_PARQUET_SUFFIXES):
                fs.rm(p)
        for sf in manifest.files:
            fs.mv(posixpath.join(self._tmp, sf.name), posixpath.join(dest, sf.name))
        fs.mv(posixpath.join(self._tmp, MANIFEST_NAME), old)
        if fs.exists(self._tmp):
            fs.rm(self._tmp, recursive=True)

    def abort(self) -> None:
        """Discard everything written; the destination is left as it was."""
        self._closed = True
        if self._thread is not None and self._queue is not None:
            self._stopping = True  # the thread drops what is still queued
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._stop_thread()
        self._out.abort()
        for seg in self._segment_writers:  # their threads have stopped writing by now
            seg._out.abort()
        try:
            if self._fs.exists(self._tmp):
                self._fs.rm(self._tmp, recursive=True)
        except OSError:
            pass


def copy_shards(
    shards: ShardSet,
    uri: str,
    *,
    max_row_group_rows: int = 4 * DEFAULT_ROW_GROUP_ROWS,
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Copy a shard set to ``uri`` as kfgpu shards (atomic, with a manifest).

    A file whose row groups hold at most ``max_row_group_rows`` rows is copied byte for
    byte (hashed on the way); any other is rewritten in bounded row groups, so readers of
    the copy never decode a huge row group at once.
    """
    with ShardWriter(uri, schema=shards.schema, metadata=metadata) as writer:
        for i, f in enumerate(shards.files):
            if f.rows and max(f.row_groups, default=0) <= max_row_group_rows:
                writer.add_file(shards.filesystem, f.path, f.rows, f.row_groups)
            else:
                groups = [g for g in shards.row_groups() if g.file == i]
                for batch in shards.iter_batches(row_groups=groups):
                    writer.write(batch)
    assert writer.manifest is not None
    return writer.manifest


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _replace_local_dir(tmp: str, dest: str) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` is moved aside first, then deleted."""
    if os.path.isdir(dest) and not os.listdir(dest):
        os.rmdir(dest)
    if os.path.lexists(dest):
        parent, base = os.path.split(dest)
        aside = os.path.join(parent, f"{_TMP_MARK}old-{base}-{uuid.uuid4().hex[:12]}")
        os.replace(dest, aside)
        os.replace(tmp, dest)
        if os.path.isdir(aside):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.remove(aside)
    else:
        os.replace(tmp, dest)


def write_shards(
    data: Iterable[pa.RecordBatch | pa.Table | pd.DataFrame] | pa.Table | pd.DataFrame,
    uri: str,
    **kw: Any,
) -> Manifest:
    """Write a table, a frame or a stream of them with a :class:`ShardWriter`.

    Args:
        data: a table or frame, or an iterable of record batches, tables or frames.
        uri: the output directory.
        **kw: :class:`ShardWriter` settings (``schema``, ``file_rows``, ``row_group_rows``,
            ``metadata``, ``compression``).
    """
    import pandas as pd
    import pyarrow as pa

    parts: Iterable[Any] = (
        [data] if isinstance(data, (pa.Table, pa.RecordBatch, pd.DataFrame)) else data
    )
    with ShardWriter(uri, **kw) as w:
        for part in parts:
            w.write(part)
    assert w.manifest is not None
    return w.manifest
