"""Tests for kfgpu.data.shards: listing, streaming and atomic sharded writing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfgpu.data.shards import MANIFEST_NAME, ShardWriter, open_shards, read_manifest, write_shards
from kfgpu.errors import ConfigError, DataFormatError, DataNotFoundError, SchemaError


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    return pd.DataFrame(
        {
            "row_id": np.arange(start, start + n, dtype=np.int64),
            "x": rng.normal(size=n),
            "cat": rng.choice(["a", "b", "c"], size=n),
        }
    )


def test_writer_bounds_files_and_row_groups_and_records_counts_and_hashes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Many small uneven writes: the writer regroups them into bounded row groups.
    with ShardWriter(str(out), file_rows=250, row_group_rows=100, metadata={"split": "t"}) as w:
        for start in range(0, 1_000, 37):
            w.write(_frame(min(37, 1_000 - start), start))
    manifest = w.manifest
    assert manifest is not None and manifest.rows == 1_000
    assert [f.rows for f in manifest.files] == [250, 250, 250, 250]
    assert all(f.row_groups == (100, 100, 50) for f in manifest.files)
    on_disk = json.loads((out / MANIFEST_NAME).read_text())
    assert on_disk["metadata"] == {"split": "t"} and on_disk["rows"] == 1_000
    for f in manifest.files:
        data = (out / f.name).read_bytes()
        assert f.sha256 == hashlib.sha256(data).hexdigest() and f.bytes == len(data)
        md = pq.ParquetFile(out / f.name).metadata
        assert [md.row_group(g).num_rows for g in range(md.num_row_groups)] == list(f.row_groups)
    # No temporary directory is left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Plain Parquet readers read the directory (the manifest's leading '_' hides it).
    back = pd.read_parquet(out)
    assert back["row_id"].tolist() == list(range(1_000))


def test_open_lists_row_groups_and_streams_a_column_subset_in_order(tmp_path: Path) -> None:
    write_shards(_frame(500), str(tmp_path / "d"), file_rows=200, row_group_rows=64)
    shards = open_shards(str(tmp_path / "d"))
    assert shards.manifest is not None and shards.rows == 500
    groups = shards.row_groups()
    assert sum(g.rows for g in groups) == 500
    assert [g.offset for g in groups] == list(np.cumsum([0] + [g.rows for g in groups])[:-1])
    batches = list(shards.iter_batches(["x", "row_id"], batch_rows=30))
    assert all(b.num_rows <= 30 and b.schema.names == ["x", "row_id"] for b in batches)
    ids = np.concatenate([b.column(1).to_numpy() for b in batches])
    assert ids.tolist() == list(range(500))
    # A chosen subset of row groups, in the order given.
    picked = [groups[3], groups[0]]
    got = pa.Table.from_batches(list(shards.iter_batches(["row_id"], row_groups=picked)))
    want = [*range(groups[3].offset, groups[3].offset + groups[3].rows), *range(groups[0].rows)]
    assert got.column(0).to_pylist() == want
    with pytest.raises(SchemaError, match=r"\['nope'\].*available columns"):
        next(shards.iter_batches(["nope"]))
    with pytest.raises(ConfigError, match="batch_rows=0"):
        next(shards.iter_batches(batch_rows=0))


def test_open_without_manifest_reads_footers_sorted_and_checks_columns(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "sub").mkdir(parents=True)
    _frame(30, 100).to_parquet(root / "sub" / "b.parquet", index=False)
    _frame(20, 0).to_parquet(root / "a.parquet", index=False, row_group_size=8)
    _frame(5, 999).to_parquet(root / "_ignored.parquet", index=False)
    shards = open_shards(str(root))
    assert shards.manifest is None
    assert [f.name for f in shards.files] == ["a.parquet", "sub/b.parquet"]
    assert shards.files[0].row_groups == (8, 8, 4) and shards.rows == 50
    # The same through fsspec URIs.
    assert open_shards(f"file://{root}").rows == 50
    assert open_shards(f"local://{root}").fingerprint == shards.fingerprint
    one = open_shards(str(root / "a.parquet"))
    assert one.rows == 20 and len(one.row_groups()) == 3
    pd.DataFrame({"other": [1]}).to_parquet(root / "c.parquet", index=False)
    with pytest.raises(SchemaError, match=r"'c.parquet'.*same columns"):
        open_shards(str(root))


def test_open_errors_name_the_uri(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        open_shards(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"holds no \.parquet"):
        open_shards(str(tmp_path / "empty"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match=r"'bad\.parquet'.*cannot be read"):
        open_shards(str(tmp_path / "bad.parquet"))


def test_a_failed_write_leaves_the_previous_output_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = write_shards(_frame(100), str(out), row_group_rows=32)
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(str(out), row_group_rows=32) as w:
        w.write(_frame(1_000, 5_000))
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert open_shards(str(out)).fingerprint == first.fingerprint
    # A successful write replaces it.
    second = write_shards(_frame(70, 7), str(out))
    assert open_shards(str(out)).rows == 70 and second.fingerprint != first.fingerprint
    with pytest.raises(SchemaError, match="same columns"), ShardWriter(str(out)) as w:
        w.write(_frame(3))
        w.write(pd.DataFrame({"row_id": [1]}))


def test_a_killed_writer_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np, pandas as pd
        from kfgpu.data.shards import ShardWriter
        w = ShardWriter({str(out)!r}, file_rows=1000, row_group_rows=100)
        w.write(pd.DataFrame({{"x": np.arange(5000.0)}}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), check=False)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(p.name.startswith(".") for p in leftovers)


def test_object_store_layout_commits_by_manifest_and_refuses_unfinished(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    uri = f"memory://{tmp_path.name}/set"
    m = write_shards(_frame(300), uri, file_rows=128, row_group_rows=64)
    shards = open_shards(uri)
    assert shards.rows == 300 and shards.fingerprint == m.fingerprint
    assert read_manifest(uri) == m
    assert not [p for p in fs.find(f"/{tmp_path.name}") if ".kfgpu-tmp-" in p]
    # A write that never finished: files in a temporary folder, no manifest.
    w = ShardWriter(f"memory://{tmp_path.name}/half", row_group_rows=10)
    w.write(_frame(50))
    with pytest.raises(DataFormatError, match="unfinished kfgpu write"):
        open_shards(f"memory://{tmp_path.name}/half")
    w.abort()
    fs.rm(f"/{tmp_path.name}", recursive=True)


def test_empty_output_keeps_its_schema(tmp_path: Path) -> None:
    schema = pa.schema([("x", pa.float64()), ("y", pa.int64())])
    m = write_shards([], str(tmp_path / "e"), schema=schema)
    assert m.rows == 0
    shards = open_shards(str(tmp_path / "e"))
    assert shards.columns == ["x", "y"] and list(shards.iter_batches()) == []
    with pytest.raises(ConfigError, match="no rows and no schema"):
        write_shards([], str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="row_group_rows=0"):
        ShardWriter(str(tmp_path / "g"), row_group_rows=0)


def test_background_writer_writes_the_same_bytes_as_the_inline_one(tmp_path: Path) -> None:
    frames = [_frame(n, start) for start, n in ((0, 37), (37, 250), (287, 1), (288, 500))]
    manifests = {}
    for background in (False, True):
        out = tmp_path / f"bg-{background}"
        with ShardWriter(
            str(out), file_rows=300, row_group_rows=64, background=background, queue_batches=1
        ) as w:
            for f in frames:
                w.write(pa.Table.from_pandas(f, preserve_index=False))
        manifests[background] = read_manifest(str(out))
    inline, threaded = manifests[False], manifests[True]
    assert inline is not None and threaded is not None
    assert threaded.fingerprint == inline.fingerprint
    assert [f.row_groups for f in threaded.files] == [f.row_groups for f in inline.files]
    assert open_shards(str(tmp_path / "bg-True")).rows == 788


def test_background_writer_error_reaches_the_caller_and_keeps_the_old_output(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    write_shards(_frame(10), str(out))
    before = read_manifest(str(out))
    w = ShardWriter(str(out), row_group_rows=8, file_rows=8, background=True)
    # The disk fails under the thread: its temporary folder is replaced by a file, so
    # opening the next part fails there; the error surfaces at a later write or close.
    (tmp_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith(".kfgpu-tmp-")]
    tmp_dir.rmdir()
    tmp_dir.write_text("not a folder")
    with pytest.raises(OSError):
        for start in range(0, 400, 8):
            w.write(_frame(8, start))
        w.close()
    w.abort()
    assert read_manifest(str(out)) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kfgpu-tmp-")]


def test_background_writer_checks_the_schema_at_write(tmp_path: Path) -> None:
    w = ShardWriter(str(tmp_path / "out"), background=True)
    w.write(_frame(5))
    with pytest.raises(SchemaError, match="same columns"):
        w.write(pd.DataFrame({"other": ["x"]}))
    w.abort()


def test_prefetched_keeps_order_raises_in_place_and_stops_early() -> None:
    from kfgpu.data.shards import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("broken shard")

    got = []
    with pytest.raises(ValueError, match="broken shard"):
        for x in prefetched(failing()):
            got.append(x)
    assert got == [1]

    closed = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    gen = prefetched(endless(), depth=2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()  # the thread ends and the source generator is closed
    assert closed == [True]


def test_background_writer_appends_a_file_after_what_was_queued(tmp_path: Path) -> None:
    import fsspec

    extra = tmp_path / "extra.parquet"
    pq.write_table(pa.Table.from_pandas(_frame(50, 1_000), preserve_index=False), extra)
    fs = fsspec.filesystem("file")
    fingerprints = []
    for background in (False, True):
        out = tmp_path / f"bg-{background}"
        with ShardWriter(str(out), row_group_rows=64, background=background) as w:
            for start in range(0, 300, 30):
                w.write(_frame(30, start))
            w.add_file(fs, str(extra), 50, (50,))
            w.write(_frame(10, 2_000))
        assert w.manifest is not None
        fingerprints.append(w.manifest.fingerprint)
        ids = pd.read_parquet(out)["row_id"].tolist()
        assert ids == [*range(300), *range(1_000, 1_050), *range(2_000, 2_010)]
    assert fingerprints[0] == fingerprints[1]


def test_add_file_records_the_copied_bytes_whether_the_kernel_or_python_copies(
    tmp_path: Path,
) -> None:
    """Local to local is a kernel copy hashed afterwards; any other source streams through
    the hashing sink. Both must record the source's exact bytes, size and SHA-256."""
    import fsspec

    source = tmp_path / "source.parquet"
    pq.write_table(pa.Table.from_pandas(_frame(70, 500), preserve_index=False), source)
    data = source.read_bytes()
    memory = fsspec.filesystem("memory")
    memory.pipe("/add-file-test/source.parquet", data)
    for label, fs, path in (
        ("local", fsspec.filesystem("file"), str(source)),
        ("memory", memory, "/add-file-test/source.parquet"),
    ):
        out = tmp_path / f"copied-{label}"
        with ShardWriter(str(out), schema=pq.read_schema(source)) as w:
            w.add_file(fs, path, 70, (70,))
        assert w.manifest is not None
        (shard,) = w.manifest.files
        copied = (out / shard.path).read_bytes()
        assert copied == data, label
        assert (shard.bytes, shard.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert open_shards(str(out)).rows == 70


def test_segments_written_out_of_order_by_threads_commit_in_index_order(tmp_path: Path) -> None:
    """Segments let threads write one set at once; the set holds their files in index
    order whoever wrote them when, with the sizes bounded as for ordered writes."""
    import threading

    chunks = {k: _frame(n, 1_000 * k) for k, n in enumerate((130, 0, 64, 301, 7))}
    schema = pa.Table.from_pandas(chunks[0], preserve_index=False).schema
    manifests = []
    for order in ([0, 1, 2, 3, 4], [4, 3, 1, 0, 2]):
        out = tmp_path / f"seg-{order[0]}"
        w = ShardWriter(str(out), schema=schema, file_rows=100, row_group_rows=40)
        segments = {k: w.segment(k) for k in order}

        def write(k: int, w: ShardWriter = w, segments: dict = segments) -> None:
            frame = chunks[k]
            for start in range(0, len(frame), 50):  # several writes per segment
                segments[k].write(frame.iloc[start : start + 50])
            segments[k].close()

        threads = [threading.Thread(target=write, args=(k,)) for k in order]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        manifests.append(w.close())
        ids = pd.read_parquet(out)["row_id"].tolist()
        assert ids == [i for k in range(5) for i in chunks[k]["row_id"]]
        assert [f.name for f in manifests[-1].files] == [
            f"part-{i:06d}.parquet" for i in range(len(manifests[-1].files))
        ]
        # A file never spans two segments; each holds at most file_rows rows.
        assert [f.rows for f in manifests[-1].files] == [100, 30, 64, 100, 100, 100, 1, 7]
        assert all(max(f.row_groups) <= 40 for f in manifests[-1].files)
        assert open_shards(str(out)).rows == 502
    assert manifests[0].fingerprint == manifests[1].fingerprint


def test_segments_refuse_what_would_break_the_order(tmp_path: Path) -> None:
    schema = pa.Table.from_pandas(_frame(1), preserve_index=False).schema
    w = ShardWriter(str(tmp_path / "a"), schema=schema)
    seg = w.segment(3)
    with pytest.raises(ConfigError, match=r"segment 3 .* opened already"):
        w.segment(3)
    with pytest.raises(ConfigError, match="holds segments"):
        w.write(_frame(5))
    seg.write(_frame(5))
    with pytest.raises(ConfigError, match=r"1 segment\(s\) .* still open"):
        w.close()  # a failed close discards the set
    assert not (tmp_path / "a").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kfgpu-tmp-")]

    w = ShardWriter(str(tmp_path / "b"), schema=schema)
    w.write(_frame(5))
    with pytest.raises(ConfigError, match="either with write\\(\\) or with segments"):
        w.segment(0)
    w.abort()
    with pytest.raises(ConfigError, match="need the schema"):
        ShardWriter(str(tmp_path / "c")).segment(0)
    bg = ShardWriter(str(tmp_path / "d"), schema=schema, background=True)
    with pytest.raises(ConfigError, match="background=True"):
        bg.segment(0)
    bg.abort()


def test_aborting_a_segmented_writer_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_shards(_frame(10), str(out))
    before = read_manifest(str(out))
    schema = pa.Table.from_pandas(_frame(1), preserve_index=False).schema
    w = ShardWriter(str(out), schema=schema, row_group_rows=8)
    done, open_one = w.segment(0), w.segment(1)
    done.write(_frame(20))
    done.close()
    open_one.write(_frame(20, 20))  # a file of this segment is open when the abort comes
    w.abort()
    assert read_manifest(str(out)) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kfgpu-tmp-")]


def test_usable_cpus_is_a_positive_count() -> None:
    from kfgpu.data.shards import usable_cpus

    n = usable_cpus()
    assert isinstance(n, int) and 1 <= n <= (os.cpu_count() or 1)


def test_text_read_as_dictionaries_is_written_as_the_schema_s_strings(tmp_path: Path) -> None:
    """A shard set's text columns can be read as Parquet's dictionaries and written again
    without decoding a string: the files must read back as the plain write's (types,
    pandas metadata, the footer's Arrow schema), whatever mix of dictionary and plain
    batches, dictionaries that differ batch to batch, and missing values came in."""
    frame = _frame(3_000)
    frame.loc[::7, "cat"] = None
    src = tmp_path / "src"
    write_shards(frame, str(src), file_rows=1_000, row_group_rows=300)
    shards = open_shards(str(src))
    batches = list(shards.iter_batches(batch_rows=128, dictionary_columns=["cat"]))
    assert pa.types.is_dictionary(batches[0].schema.field("cat").type)
    plain = list(shards.iter_batches(batch_rows=128))

    outs = {}
    for label, order in (
        ("plain", plain),
        ("dict", batches),
        ("mixed", [b if i % 3 else plain[i] for i, b in enumerate(batches)]),
    ):
        out = tmp_path / label
        with ShardWriter(str(out), schema=shards.schema, file_rows=1_100, row_group_rows=250) as w:
            for b in order:
                w.write(b)
        outs[label] = out
        got = pd.read_parquet(out)
        pd.testing.assert_frame_equal(got, frame)
        assert open_shards(str(out)).schema.equals(shards.schema)
    for label in ("dict", "mixed"):
        for f_plain, f_other in zip(
            sorted(outs["plain"].glob("*.parquet")),
            sorted(outs[label].glob("*.parquet")),
            strict=True,
        ):
            a, b = pq.read_metadata(f_plain), pq.read_metadata(f_other)
            assert a.metadata == b.metadata  # the same footer: Arrow schema + pandas
            assert pq.read_schema(f_other).equals(pq.read_schema(f_plain), check_metadata=True)
            # Still dictionary-encoded (one dictionary per column chunk, no fallback to
            # plain pages): about the plain write's size.
            assert _text_bytes(b) <= 1.5 * _text_bytes(a)


def _text_bytes(meta: pq.FileMetaData) -> int:
    """Compressed bytes of the ``cat`` column (index 2) over a file's row groups."""
    return sum(
        meta.row_group(i).column(2).total_compressed_size for i in range(meta.num_row_groups)
    )
