"""``serve()``: run the real KServe ModelServer around a bundle.

The bundle comes from a local path or from the MLflow registry (``models:/NAME@ALIAS``
or ``models:/NAME/VERSION``: the registered version holds the bundle under
``artifacts/bundle``; it is downloaded and verified like any other). The server answers

* V1 ``POST /v1/models/<name>:predict`` and V2 ``POST /v2/models/<name>/infer``;
* liveness ``GET /v2/health/live`` (and ``/``), readiness ``GET /v2/health/ready``,
  ``GET /v1/models/<name>`` and ``GET /v2/models/<name>/ready``;
* ``GET /metrics``: KServe's own histograms and kfgpu's (:mod:`kfgpu.serving.metrics`).

A request body larger than ``max_request_bytes`` is refused with 413 before it is read
whole; too many rows get 413, a body that is not JSON 415, any other malformed request 400,
each with ``{"error": "<message naming the field>"}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from kfgpu.errors import BundleError, ConfigError

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "BodySizeLimit",
    "V2JsonContentType",
    "resolve_bundle",
    "serve",
]

#: Default request body limit: 8 MiB (about 40,000 rows of a 10-column record batch).
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``.

    Checks ``Content-Length`` first and counts the bytes of a chunked body as they arrive,
    so a huge body is never buffered whole.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, size: str) -> None:
        message = (
            f"request body is {size} bytes; the limit is {self.max_bytes} "
            "(--max-request-bytes): send fewer rows per request"
        )
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send, str(declared))
                    return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            if refused:
                await self._refuse(send, f"more than {seen}")


class _TooLarge(Exception):
    pass


class V2JsonContentType:
    """ASGI middleware: a V2 infer request with neither a Content-Type nor the binary
    extension's ``Inference-Header-Content-Length`` is taken as JSON.

    tritonclient's HTTP client sends JSON-only requests without a Content-Type, and KServe
    0.21 reads such a body as binary and refuses it for lacking the binary header.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path", "").startswith("/v2/models/")
        ):
            names = {k for k, _ in scope.get("headers", [])}
            if b"content-type" not in names and b"inference-header-content-length" not in names:
                scope = dict(scope)
                scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


def resolve_bundle(source: str, *, tracking_uri: str = "", download_dir: str = "") -> Path:
    """A local bundle directory for ``source``: a path, or an MLflow ``models:/`` URI.

    ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` are resolved through the registry
    (``tracking_uri``, else ``MLFLOW_TRACKING_URI``) and the version's ``artifacts/bundle``
    is downloaded into ``download_dir`` (default: a new temporary directory).

    Raises:
        BundleError: the path does not exist, or the registry has no such version.
    """
    if not source.startswith("models:/"):
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not path.is_dir():
            raise BundleError(
                f"model bundle {source!r} does not exist or is not a directory; pass a bundle "
                "directory or a models:/NAME@ALIAS URI"
            )
        return path
    import mlflow
    import mlflow.artifacts
    from mlflow import MlflowClient

    ref = source[len("models:/") :].strip("/")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    client = MlflowClient(tracking_uri=uri or None, registry_uri=uri or None)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        elif "/" in ref:
            name, version = ref.split("/", 1)
            client.get_model_version(name, version)
        else:
            raise ConfigError(
                f"model URI {source!r} names no version; use models:/NAME@ALIAS or "
                "models:/NAME/VERSION"
            )
    except ConfigError:
        raise
    except Exception as e:
        raise BundleError(
            f"cannot resolve {source!r} in the MLflow registry at {uri!r}: {e}"
        ) from e
    dst = download_dir or tempfile.mkdtemp(prefix="kfgpu-serve-")
    previous = mlflow.get_tracking_uri()
    if uri:
        mlflow.set_tracking_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}/artifacts/bundle", dst_path=dst
        )
    except Exception as e:
        raise BundleError(
            f"{source!r} (version {version}) holds no kfgpu bundle under artifacts/bundle: {e}"
        ) from e
    finally:
        mlflow.set_tracking_uri(previous)
    return Path(local)


def _import_kserve() -> Any:
    """Import kserve without letting it parse this process's command line.

    ``kserve.model_server`` parses ``sys.argv`` at import time (its own flags, with prefix
    matching); the kfgpu CLI's arguments are not meant for it.
    """
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve
        import kserve.model_server
    finally:
        sys.argv = saved
    return kserve


def serve(
    source: str,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    model_name: str = "",
    max_batch_size: int = 64,
    max_wait_ms: float = 2.0,
    max_rows: int = 10_000,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    device: str = "auto",
    precision: str = "auto",
    grpc_port: int = 0,
    tracking_uri: str = "",
    access_log: bool = False,
    log_uri: str = "",
    log_sample_rate: float = 1.0,
) -> None:
    """Serve a bundle (path or ``models:/`` URI) until interrupted.

    Args:
        source: a bundle directory, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        port: HTTP port.
        host: address to bind; ``0.0.0.0`` in a container.
        model_name: the name in the URL paths; default the registered model's name, else
            the bundle directory's name.
        max_batch_size: rows per forward pass; 1 turns micro-batching off.
        max_wait_ms: how long a batch may wait to fill under concurrent load.
        max_rows: most rows in one request.
        max_request_bytes: largest request body.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (float16 autocast on CUDA), ``32`` or ``16``.
        grpc_port: also serve KServe's gRPC V2 API on this port; 0: no gRPC.
        tracking_uri: MLflow registry for ``models:/`` sources.
        access_log: log every request (uvicorn's access log and KServe's timing trace).
        log_uri: write a sample of the requests' features and predictions there as Parquet
            (a directory or fsspec URL; see :mod:`kfgpu.monitoring.logger`); empty: none.
        log_sample_rate: the share of requests logged, in (0, 1].
    """
    if max_request_bytes < 1:
        raise ConfigError(f"max_request_bytes={max_request_bytes!r} is invalid; use >= 1")
    path = resolve_bundle(source, tracking_uri=tracking_uri)
    if not model_name:
        model_name = (
            source[len("models:/") :].split("@")[0].split("/")[0]
            if source.startswith("models:/")
            else path.resolve().name
        )
    kserve = _import_kserve()
    import kserve.model_server as model_server
    from fastapi.responses import JSONResponse

    from kfgpu.serving.predictor import BundleModel, RequestRejected

    logger = None
    if log_uri:
        from kfgpu.bundle import read_description
        from kfgpu.monitoring.logger import InferenceLogger

        desc = read_description(path)
        # The version logged with each row: the registry reference, or the bundle's
        # content (the hash of its checksum file) for a bundle served from a path.
        version = (
            source[len("models:/") :]
            if source.startswith("models:/")
            else hashlib.sha256((path / "CHECKSUMS.sha256").read_bytes()).hexdigest()[:12]
        )
        logger = InferenceLogger(
            log_uri,
            model=model_name,
            model_version=version,
            labels=[str(c) for c in desc.get("labels", {}).get("classes", [])],
            sample_rate=log_sample_rate,
        )
    model = BundleModel(
        model_name,
        path,
        device=device,
        precision=precision,  # type: ignore[arg-type]
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_rows=max_rows,
        logger=logger,
    )
    model.load()

    app = model_server.app

    async def rejected(_request: Any, exc: RequestRejected) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    app.add_exception_handler(RequestRejected, rejected)
    app.add_middleware(V2JsonContentType)
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)

    # KServe 0.21 binds its REST server to 0.0.0.0 unconditionally; bind where asked.
    base = model_server.RESTServer

    class _BoundRESTServer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.config.host = host

    model_server.RESTServer = _BoundRESTServer
    server = kserve.ModelServer(
        http_port=port,
        grpc_port=grpc_port or 8081,
        enable_grpc=bool(grpc_port),
        workers=1,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    # One log line per request (uvicorn's access log, KServe's timing trace) costs more
    # than a small model's forward pass; the metrics carry the same facts.
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    try:
        server.start([model])
    finally:
        if logger is not None:
            logger.close()  # what is queued is written before the process ends
