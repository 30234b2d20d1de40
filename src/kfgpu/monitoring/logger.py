"""Inference logging: sampled request features and predictions, written in batches.

The request path only appends a reference to the request's columns and outputs to an
in-memory queue (no copy, no I/O, no lock held for more than an append); a background
thread samples, converts and writes Parquet files. When the queue is full, rows are dropped
and counted, never waited for: logging must not slow serving down.

Layout under ``uri`` (a local directory or any fsspec URL)::

    date=2026-11-22/part-20261122T101500.123456Z-<id>.parquet

Each file holds the raw feature columns, ``prediction``, ``proba_<class>`` (classification)
or ``value``, and ``_ts`` (UTC), ``_request_id``, ``_model``, ``_model_version``. Local
files are written beside their final name and renamed, so a reader never sees a
half-written file; object stores put whole objects.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["META_COLUMNS", "InferenceLogger", "LoggerStats"]

#: Columns the logger adds beside the features and the outputs.
META_COLUMNS = ("_ts", "_request_id", "_model", "_model_version")


@dataclass
class LoggerStats:
    """What a logger has done so far."""

    requests: int = 0
    rows_seen: int = 0
    rows_logged: int = 0
    rows_dropped: int = 0
    files: int = 0
    errors: int = 0
    last_error: str = ""
    paths: list[str] = field(default_factory=list)


@dataclass
class _Entry:
    ts: float
    request_id: str
    columns: Mapping[str, Sequence[Any]]
    n: int
    outputs: Any


class InferenceLogger:
    """Log a sample of what an endpoint sees.

    Args:
        uri: where the Parquet files go (a directory path or fsspec URL).
        model: the served model's name.
        model_version: its version (registry version, or the bundle's fingerprint).
        labels: class labels, in output column order (classification); empty for regression.
        sample_rate: the share of requests logged, in ``(0, 1]`` (whole requests are kept or
            skipped, seeded, so a request's rows stay together).
        batch_rows: write a file once this many rows are waiting.
        flush_seconds: and at least this often while rows are waiting.
        max_queue_rows: rows that may wait; more are dropped and counted.
        seed: the sampling seed.
    """

    def __init__(
        self,
        uri: str,
        *,
        model: str,
        model_version: str = "",
        labels: Sequence[str] = (),
        sample_rate: float = 1.0,
        batch_rows: int = 5000,
        flush_seconds: float = 10.0,
        max_queue_rows: int = 200_000,
        seed: int = 0,
    ) -> None:
        if not uri:
            raise ConfigError("log uri is empty; give a directory or an fsspec URL")
        if not (0.0 < sample_rate <= 1.0):
            raise ConfigError(f"sample_rate={sample_rate!r} is invalid: use a value in (0, 1]")
        if batch_rows < 1 or flush_seconds <= 0 or max_queue_rows < 1:
            raise ConfigError(
                f"batch_rows={batch_rows}, flush_seconds={flush_seconds}, "
                f"max_queue_rows={max_queue_rows}: use positive values"
            )
        import random

        self.uri = uri.rstrip("/")
        self.model = model
        self.model_version = model_version
        self.labels = [str(c) for c in labels]
        self.sample_rate = float(sample_rate)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_queue_rows = max_queue_rows
        self.stats = LoggerStats()
        self._random = random.Random(seed)
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kfgpu-inference-log", daemon=True)
        self._thread.start()

    # ---- the request path --------------------------------------------------------------
    def log(
        self,
        columns: Mapping[str, Sequence[Any]],
        n: int,
        outputs: np.ndarray,
        *,
        request_id: str = "",
    ) -> bool:
        """Queue one request's raw columns and outputs; True when it will be written.

        Never blocks on I/O. The caller must not mutate ``columns`` or ``outputs`` after.
        """
        self.stats.requests += 1
        self.stats.rows_seen += n
        if self._closed or n <= 0:
            return False
        if self.sample_rate < 1.0 and self._random.random() >= self.sample_rate:
            return False
        with self._lock:
            if self._queued_rows + n > self.max_queue_rows:
                self.stats.rows_dropped += n
                return False
            self._queue.append(_Entry(time.time(), request_id, columns, n, outputs))
            self._queued_rows += n
            full = self._queued_rows >= self.batch_rows
        if full:
            self._wake.set()
        return True

    # ---- the background writer ---------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._write_pending()
            if self._closed:
                self._write_pending()
                return

    def _take(self) -> list[_Entry]:
        with self._lock:
            entries = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
        return entries

    def _write_pending(self) -> None:
        entries = self._take()
        if not entries:
            return
        try:
            path = self._write(self.frame(entries))
        except Exception as e:  # a logging failure must never reach the request path
            self.stats.errors += 1
            self.stats.rows_dropped += sum(e_.n for e_ in entries)
            self.stats.last_error = f"{type(e).__name__}: {e}"
            print(f"inference log: could not write {self.uri}: {e}", flush=True)
            return
        self.stats.files += 1
        self.stats.rows_logged += sum(e.n for e in entries)
        self.stats.paths.append(path)

    def frame(self, entries: Sequence[_Entry]) -> pd.DataFrame:
        """The rows of ``entries`` as one frame (features, outputs, meta columns)."""
        import numpy as np
        import pandas as pd

        names = list(entries[0].columns)
        data: dict[str, Any] = {
            name: [v for e in entries for v in e.columns.get(name, [None] * e.n)] for name in names
        }
        out = np.concatenate([np.asarray(e.outputs, dtype=np.float32) for e in entries])
        if self.labels:
            out = out.reshape(len(out), -1)
            data["prediction"] = [self.labels[i] for i in out.argmax(axis=1)]
            for j, label in enumerate(self.labels):
                data[f"proba_{label}"] = out[:, j]
        else:
            data["value"] = out.reshape(-1)
        data["_ts"] = pd.to_datetime(
            np.repeat([e.ts for e in entries], [e.n for e in entries]), unit="s", utc=True
        )
        data["_request_id"] = [e.request_id for e in entries for _ in range(e.n)]
        data["_model"] = self.model
        data["_model_version"] = self.model_version
        return pd.DataFrame(data)

    def _write(self, df: pd.DataFrame) -> str:
        import fsspec

        now = time.gmtime()
        stamp = time.strftime("%Y%m%dT%H%M%S", now) + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"
        rel = f"date={time.strftime('%Y-%m-%d', now)}/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        fs, root = fsspec.core.url_to_fs(self.uri)
        final = f"{root}/{rel}"
        fs.makedirs(os.path.dirname(final), exist_ok=True)
        if fs.protocol in ("file", ("file", "local")) or "file" in (fs.protocol or ()):
            tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp")
            try:
                df.to_parquet(tmp, index=False)
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
        else:
            with fs.open(final, "wb") as f:
                df.to_parquet(f, index=False)
        return final

    def flush(self) -> None:
        """Write whatever is queued now, in the caller's thread."""
        self._write_pending()

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=60)
        self._write_pending()
