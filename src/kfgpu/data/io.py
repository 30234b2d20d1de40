"""Reading and writing tables: CSV, TSV, Parquet and JSON lines over any fsspec URI.

:func:`read_table` takes a local path, any fsspec URI (``file://``, ``s3://``, ``gs://``,
``memory://`` ...) or a built-in data set (``kfgpu://breast_cancer``,
``kfgpu://fraud?rows=N&seed=S&drift=D``) and returns a :class:`pandas.DataFrame`. The
format is chosen by the file suffix; a compression suffix (``.gz``, ``.bz2``, ``.zst``,
``.xz``) may follow it. :func:`write_parquet` writes atomically and :func:`fingerprint`
summarises a frame's content in a deterministic, order-sensitive hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from kfgpu.data._atomic import atomic_local_file
from kfgpu.errors import (
    ConfigError,
    DataError,
    DataFormatError,
    DataNotFoundError,
    EmptyDataError,
    SchemaError,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUILTIN_DATASETS",
    "COMPRESSION_SUFFIXES",
    "SUPPORTED_FORMATS",
    "artifact_metadata",
    "fingerprint",
    "open_filesystem",
    "read_parquet",
    "read_table",
    "write_parquet",
]

SUPPORTED_FORMATS = (
    "CSV (.csv), TSV (.tsv), Parquet (.parquet, .pq, or a directory of Parquet files), "
    "JSON lines (.jsonl, .ndjson, .json; a .json holding an array of records also works), "
    "each optionally compressed (.gz, .bz2, .zst, .xz)"
)
"""Human-readable list of the formats :func:`read_table` reads, used in error messages."""

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".xz")
_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".xz": "xz"}
BUILTIN_DATASETS: dict[str, tuple[str, ...]] = {
    "breast_cancer": (),
    "digits": (),
    "fraud": ("drift", "rows", "seed"),
}
"""Built-in data sets (``kfgpu://NAME``) and the query keys each accepts."""

_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_SNIFF_BYTES = 8192
_BUILTIN_SCHEME = "kfgpu://"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# pandas names the failing place as "line N" (1-based) or "row N" (0-based, header = row 0).
_PANDAS_PLACE = re.compile(r"\b(line|row) (\d+)")


# --------------------------------------------------------------------------- helpers


def _split_suffix(path: str) -> tuple[str, str | None]:
    """Return ``(format suffix, compression suffix or None)`` of a path, lower-cased."""
    name = posixpath.basename(path.rstrip("/").replace("\\", "/")).lower()
    compression = None
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            compression = suffix
            name = name[: -len(suffix)]
            break
    return posixpath.splitext(name)[1], compression


def open_filesystem(uri: str) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for a local path or an fsspec URI.

    Raises:
        ConfigError: the URI's scheme needs a filesystem package that is not installed.
    """
    return _resolve(uri)


def _resolve(uri: str) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for a local path or URI."""
    import fsspec

    target = uri if "://" in uri else os.path.expanduser(uri)
    try:
        return fsspec.core.url_to_fs(target)
    except (ImportError, ValueError) as e:
        raise ConfigError(
            f"cannot open data URI {uri!r}: {e}; install the fsspec driver for that scheme "
            f"(e.g. s3fs, gcsfs) or pass a local path"
        ) from e


def _format_error(uri: str, why: str, *, check: str, fix: str | None = None) -> DataFormatError:
    """A :class:`DataFormatError` filed under anomaly ``check``; ``fix`` says what to do."""
    if fix is None:
        fix = f"pass a file in one of the supported formats: {SUPPORTED_FORMATS}"
    return DataFormatError(
        f"data file {uri!r} is not a table kfgpu can read ({why}); {fix}", check=check
    )


def _encoding_error(uri: str, why: str, source: str = "latin1") -> DataFormatError:
    return _format_error(
        uri,
        f"it is not UTF-8 text: {why}",
        check="encoding",
        fix=(
            f"re-encode it as UTF-8, e.g. iconv -f {source} -t utf-8 IN > OUT "
            "(use the encoding it was written in)"
        ),
    )


def _parse_error(uri: str, kind: str, e: Exception) -> DataFormatError:
    """The parser of ``kind`` (``"CSV"``, ``"JSON"``) failed; name the line when known."""
    text = " ".join(str(e).split())
    where = ""
    lineno = getattr(e, "lineno", None)
    if isinstance(lineno, int):
        where = f" at line {lineno}"
    elif m := _PANDAS_PLACE.search(text):
        line = int(m.group(2)) + (1 if m.group(1) == "row" else 0)
        where = f" at line {line}"
    return _format_error(
        uri,
        f"the {kind} parser failed{where}: {text}",
        check="parse",
        fix=(
            f"fix the file{where}: every row needs the header's number of fields and "
            "every opening quote a closing one"
            if kind == "CSV"
            else f"fix the file{where} so each line (or the whole file) is valid JSON"
        ),
    )


def _empty_error(uri: str, df: Any | None = None) -> EmptyDataError:
    what = "it is empty" if df is None else f"it has {df.shape[0]} rows and {df.shape[1]} columns"
    return EmptyDataError(
        f"data file {uri!r} holds no usable table ({what}); pass a file with a header "
        f"and at least one data row",
        check="empty",
    )


def _open(fs: Any, path: str, uri: str) -> Any:
    """Open ``path`` for binary reading, decompressing by suffix."""
    from fsspec.compression import compr

    _, suffix = _split_suffix(path)
    codec = _CODECS[suffix] if suffix else None
    try:
        if codec not in compr:
            # fsspec registers zstd only when the 'zstandard' package is importable.
            raise ValueError(f"compression {codec!r} is not available")
        return fs.open(path, "rb", compression=codec)
    except (ImportError, ValueError) as e:
        raise DataFormatError(
            f"data file {uri!r} uses a compression this environment cannot read ({e}); "
            f"install the codec package (e.g. 'zstandard' for .zst) or recompress it as .gz",
            check="decompress",
        ) from e


def _sniff(fs: Any, path: str, uri: str) -> bytes:
    """Return up to the first 8 KiB of decompressed text, rejecting binary content."""
    f = _open(fs, path, uri)
    try:
        with f:
            head = f.read(_SNIFF_BYTES)
    except Exception as e:  # any codec's "not compressed data" error (gzip, lzma, zstd ...)
        raise _read_failure(uri, path, e) from e
    if head.startswith(_UTF16_BOMS):
        raise _encoding_error(uri, "it starts with a UTF-16 byte-order mark", "utf-16")
    if b"\x00" in head:
        raise _format_error(
            uri, "it contains NUL bytes, so it is binary, not text", check="binary_content"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the sniff boundary is fine.
        if not (e.reason == "unexpected end of data" and len(head) == _SNIFF_BYTES):
            raise _encoding_error(uri, str(e)) from e
    return head


def _read_failure(uri: str, path: str, e: BaseException) -> DataFormatError:
    """Reading the bytes failed: a decompression error when the path names a codec."""
    if _split_suffix(path)[1] is not None:
        return _format_error(
            uri,
            f"cannot decompress it: {e}",
            check="decompress",
            fix="check that the file really is compressed with the codec its suffix names, "
            "or drop the compression suffix",
        )
    return _format_error(uri, f"cannot read it: {e}", check="unreadable")


def _missing_columns_error(uri: str, missing: list[str], available: list[str]) -> SchemaError:
    return SchemaError(
        f"columns {missing!r} requested from {uri!r} do not exist; available columns are "
        f"{available!r}; pass columns from that list"
    )


def _select(df: pd.DataFrame, columns: list[str] | None, uri: str) -> pd.DataFrame:
    if columns is None:
        return df
    available = [str(c) for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise _missing_columns_error(uri, missing, available)
    return df[list(columns)]


# --------------------------------------------------------------------------- readers


def _read_csv(fs: Any, path: str, uri: str, sep: str, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    head = _sniff(fs, path, uri)
    if not head.strip():
        raise _empty_error(uri)
    try:
        with _open(fs, path, uri) as f:
            df = pd.read_csv(f, sep=sep, usecols=columns, low_memory=False)
    except pd.errors.EmptyDataError as e:
        raise _empty_error(uri) from e
    except UnicodeDecodeError as e:  # past the sniffed head
        raise _encoding_error(uri, str(e)) from e
    except (OSError, EOFError) as e:  # a truncated or corrupt compressed stream
        raise _read_failure(uri, path, e) from e
    except ValueError as e:  # pandas' ParserError, a bad usecols
        if columns is not None and "Usecols" in str(e):
            with _open(fs, path, uri) as f:
                header = [str(c) for c in pd.read_csv(f, sep=sep, nrows=0).columns]
            missing = [c for c in columns if c not in header]
            raise _missing_columns_error(uri, missing, header) from e
        raise _parse_error(uri, "CSV", e) from e
    if columns is not None:
        df = df[list(columns)]
    return df


def _read_json(fs: Any, path: str, uri: str, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    head = _sniff(fs, path, uri)
    stripped = head.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if not stripped:
        raise _empty_error(uri)
    try:
        if stripped.startswith(b"["):
            with _open(fs, path, uri) as f:
                records = json.load(f)
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise _format_error(
                    uri,
                    "its top-level array does not hold only JSON objects",
                    check="parse",
                    fix="write the table as an array of objects or as JSON lines",
                )
            df = pd.DataFrame.from_records(records)
        elif stripped.startswith(b"{"):
            with _open(fs, path, uri) as f:
                df = pd.read_json(f, lines=True, dtype=False, convert_dates=False)
        else:
            raise _format_error(
                uri,
                "it does not start with a JSON object or array",
                check="parse",
                fix="write the table as an array of objects or as JSON lines",
            )
    except DataFormatError:
        raise
    except UnicodeDecodeError as e:  # past the sniffed head
        raise _encoding_error(uri, str(e)) from e
    except (OSError, EOFError) as e:
        raise _read_failure(uri, path, e) from e
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise _parse_error(uri, "JSON", e) from e
    return _select(df, columns, uri)


def _parquet_names(schema: Any) -> list[str]:
    return [n for n in schema.names if not n.startswith("__index_level_")]


def _read_parquet(
    fs: Any, path: str, uri: str, columns: list[str] | None, is_dir: bool
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    _, compression = _split_suffix(path)
    try:
        if is_dir:
            dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
            names = _parquet_names(dataset.schema)
            if columns is not None and (missing := [c for c in columns if c not in names]):
                raise _missing_columns_error(uri, missing, names)
            table = dataset.to_table(columns=columns)
        else:
            with _open(fs, path, uri) as f:
                source = pa.BufferReader(f.read()) if compression else f
                pf = pq.ParquetFile(source)
                names = _parquet_names(pf.schema_arrow)
                if columns is not None and (missing := [c for c in columns if c not in names]):
                    raise _missing_columns_error(uri, missing, names)
                table = pf.read(columns=columns)
        df = table.to_pandas()
    except DataError:  # a missing column, an unavailable codec: already named
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as e:
        raise _format_error(uri, f"the Parquet reader failed: {e}", check="parquet") from e
    if columns is not None:
        df = df[list(columns)]
    return df


def _read_builtin(uri: str, columns: list[str] | None) -> pd.DataFrame:
    parts = urlsplit(uri)
    name = (parts.netloc + parts.path).strip("/")
    if name not in BUILTIN_DATASETS:
        raise ConfigError(
            f"built-in data set {name!r} in {uri!r} does not exist; use one of "
            f"{sorted(BUILTIN_DATASETS)} (e.g. kfgpu://breast_cancer)"
        )
    allowed = BUILTIN_DATASETS[name]
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ConfigError(
            f"query keys {unknown!r} in {uri!r} are not accepted by built-in data set "
            f"{name!r}; valid keys are {list(allowed)!r}"
        )
    params: dict[str, str] = {}
    for key, values in query.items():
        if len(values) != 1:
            raise ConfigError(
                f"query key {key!r} appears {len(values)} times in {uri!r}; give it once"
            )
        params[key] = values[0]

    if name == "breast_cancer":
        df = _breast_cancer()
    elif name == "digits":
        df = _digits()
    else:
        from kfgpu.data.synthetic import fraud

        def _num(key: str, cast: type, default: Any) -> Any:
            if key not in params:
                return default
            try:
                return cast(params[key])
            except ValueError as e:
                raise ConfigError(
                    f"query key {key}={params[key]!r} in {uri!r} is not a valid "
                    f"{cast.__name__}; pass e.g. {key}={default}"
                ) from e

        df = fraud(
            _num("rows", int, 50_000), seed=_num("seed", int, 0), drift=_num("drift", float, 0.0)
        )
    return _select(df, columns, uri)


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    df = bunch.frame.copy()
    df = df.rename(columns={"target": "label"})
    df.columns = [str(c).strip().lower().replace(" ", "_") for c in df.columns]
    df["label"] = df["label"].astype("int64")
    return df


def _digits() -> pd.DataFrame:
    """scikit-learn's bundled handwritten digits: 1,797 images of 8x8 grey levels (0-16),
    one column per pixel (``pixel_<row*8+col>``), the label in ``digit``."""
    import pandas as pd
    from sklearn.datasets import load_digits

    bunch = load_digits()
    df = pd.DataFrame(bunch.data, columns=[f"pixel_{i}" for i in range(bunch.data.shape[1])])
    df["digit"] = bunch.target.astype("int64")
    return df


# --------------------------------------------------------------------------- public API


def read_table(uri: str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table from a path, an fsspec URI or a built-in data set.

    Args:
        uri: a local path, an fsspec URI (``file://``, ``s3://``, ``gs://``, ``memory://``
            ...), or ``kfgpu://breast_cancer`` / ``kfgpu://fraud?rows=N&seed=S&drift=D``.
            The format is chosen by suffix: ``.csv``, ``.tsv``, ``.parquet``/``.pq`` (or a
            directory of Parquet files), ``.jsonl``/``.ndjson``/``.json``, each optionally
            followed by ``.gz``, ``.bz2``, ``.zst`` or ``.xz``.
        columns: read only these columns, in this order; ``None`` reads all.

    Returns:
        The table as a DataFrame.

    Raises:
        ConfigError: an unknown built-in data set or query key, or an fsspec scheme whose
            driver is not installed.
        DataNotFoundError: nothing exists at ``uri`` (``check`` ``not_found``).
        DataFormatError: the suffix is not supported or the content is not such a table;
            its ``check`` names why: ``unsupported_format``, ``binary_content`` (NUL
            bytes), ``encoding`` (not UTF-8), ``parse`` (the CSV or JSON parser failed),
            ``decompress`` or ``parquet``.
        EmptyDataError: the table has no rows or no columns (``check`` ``empty``).
        SchemaError: a requested column does not exist.
    """
    if not isinstance(uri, str) or not uri:
        raise ConfigError(
            f"data URI {uri!r} is not a non-empty string; pass a path or URI to a CSV, "
            f"Parquet or JSON-lines file"
        )
    if columns is not None:
        columns = [str(c) for c in columns]

    if uri.startswith(_BUILTIN_SCHEME):
        df = _read_builtin(uri, columns)
    else:
        fs, path = _resolve(uri)
        try:
            exists = fs.exists(path)
        except OSError as e:
            raise DataNotFoundError(
                f"data file {uri!r} cannot be reached ({e}); check the URI and credentials",
                check="not_found",
            ) from e
        if not exists:
            raise DataNotFoundError(
                f"data file {uri!r} does not exist; give the path or URI of a CSV, "
                f"Parquet or JSON-lines file",
                check="not_found",
            )
        df = _read_path(fs, path, uri, columns)

    if df.shape[0] == 0 or df.shape[1] == 0:
        raise _empty_error(uri, df)
    return df


def read_parquet(uri: str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file whatever its name: how steps read each other's Dataset artifacts,
    whose paths KFP chooses and which carry no suffix.

    Raises:
        DataNotFoundError: nothing exists at ``uri``.
        DataFormatError: the file is not Parquet.
        EmptyDataError: the table has no rows or no columns.
    """
    fs, path = _resolve(uri)
    if not fs.exists(path):
        raise DataNotFoundError(
            f"Parquet data {uri!r} does not exist; did the upstream step run?", check="not_found"
        )
    df = _read_parquet(fs, path, uri, columns, is_dir=fs.isdir(path))
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise _empty_error(uri, df)
    return df


def _read_path(fs: Any, path: str, uri: str, columns: list[str] | None) -> pd.DataFrame:
    suffix, _ = _split_suffix(path)
    if fs.isdir(path):
        files = [p for p in fs.find(path) if not posixpath.basename(p).startswith(("_", "."))]
        if not files:
            raise _empty_error(uri)
        has_parquet = any(_split_suffix(p)[0] in _PARQUET_SUFFIXES for p in files)
        if suffix not in _PARQUET_SUFFIXES and not has_parquet:
            raise _format_error(
                uri,
                "it is a directory holding no .parquet or .pq files",
                check="unsupported_format",
            )
        return _read_parquet(fs, path, uri, columns, is_dir=True)
    if suffix in _CSV_SUFFIXES:
        return _read_csv(fs, path, uri, _CSV_SUFFIXES[suffix], columns)
    if suffix in _PARQUET_SUFFIXES:
        return _read_parquet(fs, path, uri, columns, is_dir=False)
    if suffix in _JSON_SUFFIXES:
        return _read_json(fs, path, uri, columns)
    raise DataFormatError(
        f"data file {uri!r} has suffix {suffix or '(none)'!r}, which kfgpu does not read; "
        f"pass a file in one of the supported formats: {SUPPORTED_FORMATS}",
        check="unsupported_format",
    )


def write_parquet(df: pd.DataFrame, path: str) -> None:
    """Write ``df`` to a local Parquet file atomically, without its index.

    The frame is written to a temporary file in the destination directory and renamed into
    place, so readers never see a partial file. Parent directories are created.

    Args:
        df: the frame to write.
        path: local destination path (a ``file://`` prefix is accepted).

    Raises:
        SchemaError: the frame has columns Parquet cannot store (e.g. non-string names or
            mixed-type object columns).
    """
    import pyarrow as pa

    with atomic_local_file(path) as (tmp, dest):
        try:
            df.to_parquet(tmp, index=False, engine="pyarrow")
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise SchemaError(
                f"frame cannot be written to Parquet file {dest!r}: {e}; make column names "
                f"strings and each column a single type"
            ) from e


def artifact_metadata(df: pd.DataFrame) -> dict[str, Any]:
    """The metadata every Dataset artifact carries: content hash, rows, columns, schema."""
    fp = fingerprint(df)
    return {
        "fingerprint": fp["sha256"],
        "rows": fp["rows"],
        "columns": fp["columns"],
        "schema": fp["schema"],
    }


def fingerprint(df: pd.DataFrame) -> dict[str, Any]:
    """Summarise a frame's content in a deterministic, order-sensitive hash.

    The hash covers every value (row and column order included, index excluded), the column
    names and the dtypes, so renaming a column, changing a dtype or editing a value changes
    it. It is the same across processes and machines for the same pandas version.

    Args:
        df: the frame to fingerprint.

    Returns:
        ``{"sha256": hex digest, "rows": int, "columns": int, "schema": {column: dtype}}``.
    """
    import numpy as np
    import pandas as pd

    h = hashlib.sha256()
    schema = {str(c): str(t) for c, t in zip(df.columns, df.dtypes, strict=True)}
    header = [[str(c), str(t)] for c, t in zip(df.columns, df.dtypes, strict=True)]
    h.update(json.dumps({"shape": list(df.shape), "columns": header}).encode("utf-8"))
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        try:
            hashed = pd.util.hash_pandas_object(col, index=False)
        except TypeError:
            # Unhashable values (lists, dicts from JSON): hash their canonical text.
            hashed = pd.util.hash_pandas_object(
                col.map(lambda v: json.dumps(v, sort_keys=True, default=repr)), index=False
            )
        h.update(hashed.to_numpy(dtype=np.uint64).astype("<u8").tobytes())
    return {
        "sha256": h.hexdigest(),
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "schema": schema,
    }
