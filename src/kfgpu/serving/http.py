"""The HTTP connection layer under the model server: read timeouts, a connection limit,
JSON for malformed HTTP.

uvicorn (which KServe runs) has a keep-alive timeout but no header or body read timeout:
a client that sends half a request holds its connection, and a task, forever (slow-loris).
It answers malformed HTTP in plain text and has no cap on open connections (its
``limit_concurrency`` answers 503 in plain text once the cap is reached by requests, not
by idle sockets). :class:`GuardedHttpToolsProtocol` is uvicorn's ``httptools`` protocol with:

* a **header deadline**: a request's headers must arrive within ``header_timeout_s`` of its
  first byte (or of the connection, for the first request);
* a **body deadline**: its body within ``body_timeout_s`` of the headers;
* a **header size limit** (``max_header_bytes``: 431);
* a **connection limit** (``max_connections``: 503 and close for the connection over it);
* ``{"error": ...}`` JSON for each of these and for malformed HTTP (400), with
  ``Connection: close``, and one log line each (no traceback).

A request closed by a deadline is marked in its ASGI scope (``CLOSED_KEY``) so that the
application does not log the resulting disconnect a second time.

This module subclasses uvicorn internals (``HttpToolsProtocol`` and its parser
callbacks); ``tests/unit/serving/test_http.py`` fails loudly if they change.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kfgpu.errors import ConfigError

__all__ = [
    "CLOSED_KEY",
    "LIMITS_ATTR",
    "GuardedHttpToolsProtocol",
    "HttpLimits",
    "MalformedRequestFilter",
    "raw_response",
]

#: The ASGI scope key set on a request whose connection a deadline closed.
CLOSED_KEY = "kfgpu.closed"
#: The attribute of uvicorn's ``Config`` that carries the :class:`HttpLimits`.
LIMITS_ATTR = "kfgpu_http_limits"

log = logging.getLogger("kfgpu.serving")

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class HttpLimits:
    """Connection-level limits of the model server.

    Attributes:
        header_timeout_s: seconds a request's headers may take to arrive.
        body_timeout_s: seconds its body may take once the headers are in.
        max_connections: most open connections; the next one gets 503 and is closed.
        max_header_bytes: largest request head (request line and headers).
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for key in ("header_timeout_s", "body_timeout_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{key}={v!r} is invalid; use a number of seconds > 0")
        for key in ("max_connections", "max_header_bytes"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key}={v!r} is invalid; use an integer >= 1")


def raw_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and limits (see the module)."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits: HttpLimits = getattr(config, LIMITS_ATTR, None) or HttpLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = "idle"  # idle -> headers -> body -> app -> idle (keep-alive)
        self._head_bytes = 0
        self._head_too_large = False

    # ---- deadlines ------------------------------------------------------------------
    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase = phase
        timeout = (
            self._limits.header_timeout_s if phase == "headers" else self._limits.body_timeout_s
        )
        self._deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response is under way) and close the connection."""
        self._disarm()
        self._phase = "closed"
        cycle = self.cycle
        if cycle is not None:
            cycle.scope[CLOSED_KEY] = message  # type: ignore[literal-required]
        if (cycle is None or not cycle.response_started) and not self.transport.is_closing():
            self.transport.write(raw_response(status, message))
        self.transport.close()

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == "headers":
            message = (
                f"request headers not received within {self._limits.header_timeout_s:g} s "
                "(--header-timeout); connection closed"
            )
        else:
            message = (
                f"request body not received within {self._limits.body_timeout_s:g} s "
                "(--body-timeout); connection closed"
            )
        log.warning("408 from %s: %s", self._peer(), message)
        self._refuse(408, message)

    # ---- uvicorn hooks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            message = (
                f"too many connections (the limit is {self._limits.max_connections}, "
                "--max-connections); retry later"
            )
            log.warning("503 to %s: %s", self._peer(), message)
            self._refuse(503, message)
            return
        self._head_bytes = 0
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        if self._phase == "closed":
            return
        super().data_received(data)
        if self._phase == "headers":
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self._reject_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != "headers":  # the next request on a kept-alive connection
            self._head_bytes = 0
            self._arm("headers")

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self._limits.max_header_bytes:
            self._head_too_large = True
            # httptools turns this into HttpParserError; uvicorn then calls send_400_response.
            raise _HeadTooLarge
        super().on_headers_complete()
        if self._phase == "headers":
            self._arm("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._phase in ("headers", "body"):
            self._disarm()
            self._phase = "app"

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == "app":
            self._phase = "idle"

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._phase = "closed"
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own line for this ("Invalid HTTP request received.") is filtered out
        # (see MalformedRequestFilter): this one names the client.
        if self._head_too_large:
            self._reject_head()
            return
        message = f"malformed HTTP request ({msg.rstrip('.')}); send HTTP/1.1"
        log.warning("400 from %s: %s", self._peer(), message)
        self._refuse(400, message)

    def _reject_head(self) -> None:
        message = f"request head over {self._limits.max_header_bytes} bytes; send shorter headers"
        log.warning("431 from %s: %s", self._peer(), message)
        self._refuse(431, message)


class _HeadTooLarge(Exception):
    pass


class MalformedRequestFilter(logging.Filter):
    """Drops uvicorn's "Invalid HTTP request received." line: the protocol above logs one
    line per malformed request itself, with the client's address."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."
