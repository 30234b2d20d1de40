"""Credentials in URIs never leave the process in clear.

A URI may carry a secret: ``http://alice:PASSWORD@mlflow:5000``,
``postgresql://optuna:PASSWORD@db/optuna``, a presigned ``...?X-Amz-Signature=...``, an Azure
SAS ``...&sig=...``, a ``?token=...``. The process uses such a URI as given (to connect); every
copy that leaves it (a printed line, a log record, an artifact, ``bundle.json``, an MLflow
param or tag, an error message) goes through :func:`redact` first and shows ``***`` instead::

    >>> redact("http://alice:S3CRET@host:5000/x?token=abc&rows=10")
    'http://alice:***@host:5000/x?token=***&rows=10'

:func:`redact` works on any text (a log line or a JSON document with several URIs in it);
:func:`redact_obj` on nested dicts and lists. Two catch-alls cover what third-party code
prints or logs (MLflow prints its tracking URI, credentials included, when a run ends):
:class:`RedactingFilter` on logging handlers and :class:`RedactingStream` around
``sys.stdout``/``sys.stderr``; :func:`install` sets both up once per process. Every kfgpu
step calls it (:func:`kfgpu._step.step`), and so do ``kfgpu`` and :mod:`kfgpu.local`; a step
also passes the text files it wrote through :func:`redact_file`.

Not covered: what kfgpu never sees. On a cluster, KFP stores a run's parameters in the run's
spec and its launcher logs the executor input; a URI with a password given as a pipeline
parameter is there in clear. Give credentials to pods from Secrets instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "MASK",
    "RedactingFilter",
    "RedactingStream",
    "install",
    "redact",
    "redact_file",
    "redact_obj",
    "without_masked",
]

MASK = "***"

#: ``scheme://user:password@``: the password runs to the last ``@`` before the host (a raw
#: ``@`` in a password is common), never across whitespace, quotes or a path.
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"<>]*:)(?P<secret>[^\s/?#'\"<>]*)@"
)

#: Query (or fragment) parameters whose value is a credential: ``token``, ``access_token``,
#: ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Signature``,
#: ``sig`` (Azure SAS), ``password``, ``api_key``, ``client_secret``... Over-matching a key only
#: hides a value in a display; under-matching leaks it.
_SECRET_WORDS = (
    "token|secret|password|passwd|pwd|passphrase|key|sig|signature|credential|credentials"
    "|auth|authorization|session"
)
_QUERY = re.compile(
    r"(?P<head>[?&;#](?P<key>[A-Za-z0-9_.\-]*?(?:"
    + _SECRET_WORDS
    + r")[A-Za-z0-9_.\-]*)=)(?P<secret>[^&#;\s'\"<>]+)",
    re.IGNORECASE,
)


#: A URI in running text: a scheme, ``://``, then up to whitespace, a quote or a bracket.
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def _redact_uri(match: re.Match[str]) -> str:
    uri = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@" if m["secret"] else m[0], match[0])
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", uri)


def redact(text: str) -> str:
    """``text`` with every URI password and credential query value replaced by ``***``.

    Only inside URIs (``scheme://...``): ``a&&e.key=1`` in a report's inline script is code,
    not a query string.
    """
    if "://" not in text:
        return text
    return _URI.sub(_redact_uri, text)


_MASKED_USERINFO = re.compile(
    r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s:/?#@'\"<>]*:" + re.escape(MASK) + "@"
)
_MASKED_QUERY = re.compile(r"[&;]?[A-Za-z0-9_.\-]+=" + re.escape(MASK) + r"(?=[&;#\s'\"<>]|$)")


def without_masked(uri: str) -> str:
    """A redacted URI made usable again: ``user:***@`` and ``key=***`` parameters removed.

    For a URI read back from an artifact (a bundle's lineage): connecting with ``***`` as the
    password would fail, without it the client's own credentials apply (for MLflow,
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``).
    """
    if MASK not in uri:
        return uri
    out = _MASKED_USERINFO.sub(r"\1", uri)
    out = _MASKED_QUERY.sub("", out)
    return out.replace("?&", "?").rstrip("?")


def redact_obj(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_obj(v) for v in value)
    return value


#: Text files up to this size are checked by :func:`redact_file`; larger ones are data.
MAX_TEXT_FILE = 8 << 20


def redact_file(path: str | os.PathLike[str]) -> bool:
    """Redact a small text file in place (reports, JSON, Markdown, HTML); whether it changed.

    Binary files (Parquet, safetensors) and files over :data:`MAX_TEXT_FILE` are left alone.
    """
    p = Path(path)
    try:
        if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_TEXT_FILE:
            return False
        data = p.read_bytes()
    except OSError:
        return False
    if b"\0" in data[:8192]:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    clean = redact(text)
    if clean == text:
        return False
    tmp = p.with_name(f".{p.name}.redacted-{os.getpid()}")
    tmp.write_text(clean, encoding="utf-8")
    os.replace(tmp, p)
    return True


class RedactingFilter(logging.Filter):
    """Redacts each record's message (args merged in) and its exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before they reach ``target``.

    Text is held until a newline (a URI is never split between two writes of one line), then
    written redacted; :meth:`flush` writes a held partial line too.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._pending = ""
        self._lock = threading.RLock()

    def write(self, s: str) -> int:
        with self._lock:
            self._pending += s
            # A carriage return ends a line too (progress bars redraw one line with it).
            end = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
            if end:
                done, self._pending = self._pending[:end], self._pending[end:]
                self.target.write(redact(done))
        return len(s)

    def flush(self) -> None:
        if getattr(self.target, "closed", False):
            return  # the target went first (a test's capture ended): nothing to write to
        with self._lock:
            if self._pending:
                self.target.write(redact(self._pending))
                self._pending = ""
        self.target.flush()

    def close(self) -> None:
        """Write what is held; the target stays open (it is not this stream's to close)."""
        with contextlib.suppress(OSError, ValueError):
            self.flush()
        super().close()

    def __getattr__(self, name: str) -> Any:
        # reconfigure(), line_buffering, name, mode...: the target's.
        if name == "target":
            raise AttributeError(name)
        return getattr(self.target, name)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self.target, "isatty", lambda: False)())

    def fileno(self) -> int:
        return int(self.target.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.target, "encoding", "utf-8"))

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)

    @property
    def buffer(self) -> Any:
        # Raw bytes bypass redaction; text is what this process's code and libraries write.
        return getattr(self.target, "buffer", None)


_FILTER = RedactingFilter()
_install_lock = threading.Lock()


def _filter_handlers() -> None:
    seen: set[int] = set()
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg
        for lg in list(logging.Logger.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if id(handler) not in seen and _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
            seen.add(id(handler))


def install() -> None:
    """Redact this process's ``sys.stdout``, ``sys.stderr`` and logging handlers (idempotent).

    Handlers created later do not have the filter; calling again adds it (each kfgpu step
    calls this when it starts, after the libraries it imports have set up their logging).
    """
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, RedactingStream):
                setattr(sys, name, RedactingStream(stream))
        _filter_handlers()
