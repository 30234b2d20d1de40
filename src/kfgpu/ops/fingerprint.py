"""A fingerprint of the data behind a URI: what the pipeline's cache key must include.

KFP's cache key (``backend/src/v2/cacheutils/cache.go``, ``GenerateCacheKey``) is made of the
task's input parameter values, its input artifacts' names, its output specs, the image,
command and arguments, PVC names and environment. A step that reads ``data_uri`` therefore
caches on the URI *string*: a file replaced under the same name would hit the cache and train
on stale data. :func:`source_fingerprint` hashes what the URI points at now; the pipeline
passes it to ``validate_data`` as a parameter so the URI and its content key the cache
together.

* Local files: the sha256 of their bytes (streamed). Local directories: of every file's
  relative path and bytes.
* Remote files (any fsspec URI): the store's version identity without downloading: ETag,
  checksum, generation or version id, size and modification time, per object (a directory or
  prefix: per object under it). When a store reports none of those, the bytes are hashed.
* ``kfgpu://`` built-in data sets: generated deterministically from the URI, so the URI and
  the kfgpu version are the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kfgpu._version import __version__
from kfgpu.errors import DataNotFoundError

__all__ = ["source_fingerprint"]

_IDENTITY_KEYS = (
    "ETag",
    "etag",
    "md5Hash",
    "md5",
    "crc32c",
    "generation",
    "VersionId",
    "version_id",
    "content_md5",
)
_CHUNK = 1 << 20


def _hash_stream(h: Any, f: Any) -> None:
    while chunk := f.read(_CHUNK):
        h.update(chunk)


def _local(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            _hash_stream(h, f)
        return h.hexdigest()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        with p.open("rb") as f:
            _hash_stream(h, f)
        h.update(b"\0")
    return h.hexdigest()


def _identity(info: dict[str, Any]) -> dict[str, Any]:
    ident = {k: str(info[k]) for k in _IDENTITY_KEYS if info.get(k) not in (None, "")}
    for k in ("size", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(k) not in (None, ""):
            ident[k] = str(info[k])
    return ident


def source_fingerprint(uri: str) -> str:
    """``sha256:<hex>`` of the data ``uri`` points at now (see the module docstring).

    Raises:
        DataNotFoundError: nothing is at ``uri``.
    """
    if uri.startswith("kfgpu://"):
        digest = hashlib.sha256(f"kfgpu {__version__} {uri}".encode()).hexdigest()
        return f"sha256:{digest}"
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise DataNotFoundError(f"data_uri {uri!r}: no such file or directory")
        return f"sha256:{_local(path)}"
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root):
        raise DataNotFoundError(f"data_uri {uri!r}: nothing at this URI")
    if fs.isdir(root):
        entries = fs.find(root, detail=True)
        infos = sorted(entries.items()) if isinstance(entries, dict) else []
    else:
        infos = [(root, fs.info(root))]
    h = hashlib.sha256()
    for name, info in infos:
        ident = _identity(info)
        h.update(name.encode() + b"\0")
        if any(k in ident for k in _IDENTITY_KEYS):
            h.update(json.dumps(ident, sort_keys=True).encode())
        else:
            with fs.open(name, "rb") as f:
                _hash_stream(h, f)
        h.update(b"\0")
    return f"sha256:{h.hexdigest()}"
