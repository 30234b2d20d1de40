"""Write-then-rename for local files: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

__all__ = ["atomic_local_file", "atomic_write_text"]


@contextlib.contextmanager
def atomic_local_file(path: str) -> Iterator[tuple[str, str]]:
    """Yield ``(tmp, dest)``: write ``tmp``; it replaces ``dest`` only if the block succeeds.

    ``path`` is local (a ``file://`` prefix is accepted); parent directories are created.
    On any failure the temporary file is removed and ``dest`` is left as it was.
    """
    if path.startswith("file://"):
        path = path[len("file://") :]
    dest = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(dest)}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp, dest
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to the local file ``path`` through :func:`atomic_local_file`."""
    with atomic_local_file(os.fspath(path)) as (tmp, _), open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
