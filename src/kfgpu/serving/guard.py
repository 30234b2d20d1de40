"""The model server's front door: an ASGI middleware in front of KServe's routes.

:class:`Guard` wraps the KServe FastAPI application and decides, before KServe sees a
request:

* **Auth.** With a token configured, every inference, metadata and repository route needs
  ``Authorization: Bearer <token>`` (compared in constant time); liveness, readiness and
  ``/metrics`` stay open so that probes and scrapers need no secret. Anything else: 401.
* **Model repository off.** ``/v2/repository/...`` (load, unload, index) answers 404 unless
  the server was started with ``--enable-repository``.
* **Readiness that tells the truth.** ``/v2/health/ready`` is 200 only while every served
  model is loaded and its batcher runs (KServe's answers 200 with no model at all).
* **The body, bounded.** A POST body is read here, whole, before KServe runs: over
  ``max_request_bytes`` -> 413 (declared or counted, chunked or not); a client that
  disconnects mid-body gets one log line (KServe would log two tracebacks).
* **V2 bodies checked** (:mod:`kfgpu.serving.wire`) before KServe decodes them: binary
  extension sizes and prefixes, JSON structure. A V2 request without a Content-Type and
  without the binary header is taken as JSON (tritonclient sends none).
* **Versions.** ``/v2/models/<name>/versions/<v>/...`` is served when ``v`` is the served
  version and 404 otherwise (KServe answers 501).

Every refusal is ``{"error": "..."}`` and one log line. Error handlers that make KServe's
and FastAPI's own errors the same shape are in :func:`install_error_handlers`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from kfgpu.errors import ConfigError, RequestError
from kfgpu.serving.http import CLOSED_KEY
from kfgpu.serving.wire import check_binary_request, check_v2_json

__all__ = ["Guard", "GuardSettings", "install_error_handlers", "reject_line"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A handler the guard tries first for a checked POST: ``(scope, body, receive, send)``
#: -> True when it answered the request, False to pass it on to KServe's routes.
FastPath = Callable[[Scope, bytes, Receive, Send], Awaitable[bool]]

log = logging.getLogger("kfgpu.serving")

_OPEN_EXACT = frozenset({"/", "/metrics", "/v2/health/live", "/v2/health/ready"})
_MODEL_READY = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/ready$|^/v1/models/[^/:]+$")
_VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/.*)?$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class GuardSettings:
    """What the guard enforces.

    Attributes:
        token: the bearer token every protected route needs; empty: no auth.
        max_request_bytes: largest request body (413 above).
        enable_repository: serve KServe's model repository routes (load/unload).
        model_version: the served version, named in ``/versions/<v>/`` paths.
    """

    token: str = ""
    max_request_bytes: int = 8 * 1024 * 1024
    enable_repository: bool = False
    model_version: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.max_request_bytes, bool) or self.max_request_bytes < 1:
            raise ConfigError(f"max_request_bytes={self.max_request_bytes!r} is invalid; use >= 1")
        if self.token and (
            self.token != self.token.strip()
            or not self.token.isprintable()
            or not self.token.isascii()
            or " " in self.token
        ):
            raise ConfigError(
                "the auth token has spaces, control or non-ASCII characters; write the token "
                "(printable ASCII, as an HTTP header carries it) alone on one line"
            )


def reject_line(scope: Scope, status: int, message: str) -> str:
    """The one log line of a refused request."""
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "unknown client"
    return f"{status} {scope.get('method', '')} {scope.get('path', '')} from {peer}: {message}"


async def _respond(
    send: Send,
    status: int,
    content: dict[str, Any],
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(content).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: auth, repository switch, readiness, bounded and checked bodies.

    Args:
        app: the KServe application.
        settings: what to enforce.
        ready: an async callable that says whether every served model is ready.
        fast_path: tried first for a POST that passed every check (see :data:`FastPath`).
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: GuardSettings,
        ready: Callable[[], Awaitable[bool]],
        fast_path: FastPath | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.ready = ready
        self.fast_path = fast_path
        self._token = settings.token.encode()

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        log.warning(reject_line(scope, status, message))
        await _respond(send, status, {"error": message}, close=close, headers=headers)

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> str:
        """Empty when the request carries the token, else why not."""
        value = b""
        for k, v in headers:
            if k == b"authorization":
                value = v
                break
        if not value:
            return "this route needs Authorization: Bearer <token> (the server's --auth-token-file)"
        scheme, _, presented = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(presented.strip(), self._token):
            return "the bearer token is not valid for this server"
        return ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if path == "/v2/health/ready":
            if await self.ready():
                await _respond(send, 200, {"ready": True})
            else:
                await self._reject(
                    scope, send, 503, "the model is not loaded; the server is not ready"
                )
            return
        if self._token and path not in _OPEN_EXACT and not _MODEL_READY.match(path):
            why = self._authorized(headers)
            if why:
                await self._reject(
                    scope, send, 401, why, headers=[(b"www-authenticate", b"Bearer")]
                )
                return
        if path.startswith("/v2/repository") and not self.settings.enable_repository:
            await self._reject(
                scope,
                send,
                404,
                "the model repository API (load/unload) is off on this server; start it with "
                "--enable-repository to manage models over HTTP",
            )
            return
        if path.startswith("/v1/models/") and path.endswith(":explain"):
            # KServe answers 501 with a traceback for a model without an explainer.
            await self._reject(
                scope,
                send,
                404,
                "this server has no explainer; POST /v1/models/<name>:predict",
            )
            return
        versioned = _VERSIONED.match(path)
        if versioned:
            version = versioned["version"]
            if not self.settings.model_version or version != self.settings.model_version:
                await self._reject(
                    scope,
                    send,
                    404,
                    f"model {versioned['name']!r} has no version {version!r}; this server "
                    f"serves version {self.settings.model_version!r}: omit /versions/<v>",
                )
                return
            scope = dict(scope)
            scope["path"] = f"/v2/models/{versioned['name']}{versioned['rest'] or ''}"
            scope["raw_path"] = scope["path"].encode()
        if method not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send, headers)
        if body is None:
            return
        scope_out = scope
        if (
            method == "POST"
            and scope["path"].startswith("/v2/models/")
            and scope["path"].endswith("/infer")
        ):
            checked = await self._check_v2(scope, send, headers, body)
            if checked is None:
                return
            scope_out = checked
        elif any(k.startswith(b"ce-") for k, _ in headers):
            # CloudEvents headers make KServe's V1 decoder build an event (and fail with
            # 500 on a partial set); kfgpu serves plain JSON only.
            scope_out = dict(scope)
            scope_out["headers"] = [(k, v) for k, v in headers if not k.startswith(b"ce-")]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.fast_path is not None and await self.fast_path(scope_out, body, replay, send):
            return
        await self.app(scope_out, replay, send)

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        limit = self.settings.max_request_bytes
        for k, v in headers:
            if k == b"content-length":
                if not v.isdigit():
                    await self._reject(
                        scope,
                        send,
                        400,
                        f"Content-Length is {v[:40]!r}; send a byte count",
                        close=True,
                    )
                    return None
                if int(v) > limit:
                    await self._reject(
                        scope,
                        send,
                        413,
                        f"request body is {int(v)} bytes; the limit is {limit} "
                        "(--max-request-bytes): send fewer rows per request",
                        close=True,
                    )
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if CLOSED_KEY not in scope:  # a deadline that closed it has logged already
                    log.warning(
                        reject_line(
                            scope, 499, f"client disconnected after {size} bytes of the body"
                        )
                    )
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(
                    scope,
                    send,
                    413,
                    f"request body is more than {limit} bytes, the limit "
                    "(--max-request-bytes): send fewer rows per request",
                    close=True,
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _check_v2(
        self, scope: Scope, send: Send, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Scope | None:
        header_length = None
        content_type = None
        for k, v in headers:
            if k == b"inference-header-content-length":
                header_length = v
            elif k == b"content-type":
                content_type = v
        try:
            if header_length is not None:
                check_binary_request(body, header_length.decode("latin-1"))
                # KServe reads a binary body as bytes only when it is not declared JSON.
                if content_type is None or content_type.startswith(b"application/json"):
                    scope = dict(scope)
                    scope["headers"] = [
                        *(h for h in headers if h[0] != b"content-type"),
                        (b"content-type", b"application/octet-stream"),
                    ]
                return scope
            if content_type is not None and not content_type.split(b";")[0].strip().endswith(
                b"json"
            ):
                raise RequestError(
                    f"Content-Type {content_type.decode('latin-1')[:60]!r} with no "
                    "Inference-Header-Content-Length header; send application/json, or the "
                    "binary extension with that header",
                    field="content-type",
                    status=415,
                )
            check_v2_json(body)
        except RequestError as e:
            await self._reject(scope, send, e.status, str(e))
            return None
        if content_type is None:
            scope = dict(scope)
            scope["headers"] = [*headers, _JSON]
        return scope


def install_error_handlers(app: Any) -> None:
    """Make every error of KServe's and FastAPI's own routes ``{"error": ...}`` with the
    right status and one log line (KServe's handlers log a traceback per bad request).

    Call after KServe registered its handlers: these replace them.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import errors as kerrors
    from starlette.exceptions import HTTPException

    from kfgpu.serving.predictor import RequestRejected

    def handler(status: int | None) -> Callable[[Any, Exception], Awaitable[JSONResponse]]:
        async def handle(request: Any, exc: Exception) -> JSONResponse:
            code = status if status is not None else int(getattr(exc, "status", 400))
            message = " ".join(str(exc).split()) or type(exc).__name__
            log.warning(reject_line(request.scope, code, message))
            return JSONResponse(status_code=code, content={"error": message})

        return handle

    async def validation(request: Any, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        parts = []
        for err in errors[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        message = "malformed request: " + ("; ".join(parts) or "invalid body")
        log.warning(reject_line(request.scope, 400, message))
        return JSONResponse(status_code=400, content={"error": message})

    async def http_error(request: Any, exc: Exception) -> JSONResponse:
        code = int(getattr(exc, "status_code", 500))
        detail = str(getattr(exc, "detail", "") or "")
        if code == 404:
            message = (
                f"no route {request.method} {request.url.path}; this server answers "
                "/v1/models/<name>:predict and /v2/models/<name>/infer"
            )
        elif code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = detail or f"HTTP {code}"
        log.warning(reject_line(request.scope, code, message))
        headers = getattr(exc, "headers", None)
        return JSONResponse(status_code=code, content={"error": message}, headers=headers)

    async def internal(request: Any, exc: Exception) -> JSONResponse:
        log.error(reject_line(request.scope, 500, f"{type(exc).__name__}: {exc}"), exc_info=exc)
        return JSONResponse(
            status_code=500, content={"error": f"internal error ({type(exc).__name__})"}
        )

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestRejected, handler(None))
    app.add_exception_handler(kerrors.InvalidInput, handler(400))
    app.add_exception_handler(kerrors.ModelNotFound, handler(404))
    app.add_exception_handler(kerrors.ModelNotReady, handler(503))
    app.add_exception_handler(kerrors.ServerNotReady, handler(503))
    app.add_exception_handler(kerrors.ServerNotLive, handler(503))
    app.add_exception_handler(NotImplementedError, handler(501))
    app.add_exception_handler(kerrors.InferenceError, internal)
    app.add_exception_handler(Exception, internal)
