"""``serve()``: run the real KServe ModelServer around a bundle.

The bundle comes from a local path or from the MLflow registry (``models:/NAME@ALIAS``
or ``models:/NAME/VERSION``: the registered version holds the bundle under
``artifacts/bundle``; it is downloaded and verified like any other). The server answers

* V1 ``POST /v1/models/<name>:predict`` and V2 ``POST /v2/models/<name>/infer``;
* liveness ``GET /v2/health/live`` (and ``/``), readiness ``GET /v2/health/ready``,
  ``GET /v1/models/<name>`` and ``GET /v2/models/<name>/ready``;
* ``GET /metrics``: KServe's own histograms and kfgpu's (:mod:`kfgpu.serving.metrics`).

Hardened for a shared network (:mod:`kfgpu.serving.guard`, :mod:`kfgpu.serving.http`):
a bearer token on every inference, metadata and repository route when one is configured
(``auth_token_file`` or ``$KFGPU_AUTH_TOKEN``); the model repository's load/unload off
unless ``enable_repository``; header and body read deadlines, a connection limit; every
refusal ``{"error": "<message naming the field>"}`` with its 4xx (400 malformed, 401, 404,
408, 413 too large, 415 media type, 431, 503 not ready) and one log line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfgpu.errors import ConfigError
from kfgpu.registry.source import resolve_bundle, resolve_source

__all__ = [
    "AUTH_TOKEN_ENV",
    "DEFAULT_MAX_REQUEST_BYTES",
    "read_auth_token",
    "resolve_bundle",
    "resolve_source",
    "serve",
]

#: The environment variable that may hold the bearer token (``--auth-token-file`` wins).
AUTH_TOKEN_ENV = "KFGPU_AUTH_TOKEN"

#: Default request body limit: 8 MiB (about 40,000 rows of a 10-column record batch).
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024


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


def read_auth_token(path: str = "") -> str:
    """The bearer token: the file's content (one line) if ``path`` is set, else
    ``$KFGPU_AUTH_TOKEN``, else empty (no auth).

    Raises:
        ConfigError: the file cannot be read, is empty, or holds more than one line.
    """
    if path:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"auth_token_file={path!r} cannot be read ({e.__class__.__name__}); point it "
                "at a file holding the token (a mounted Secret)"
            ) from e
        token = text.strip()
        if not token or "\n" in token:
            raise ConfigError(
                f"auth_token_file={path!r} must hold one line, the token; it holds "
                f"{'nothing' if not token else 'several lines'}"
            )
        return token
    return os.environ.get(AUTH_TOKEN_ENV, "").strip()


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
    auth_token_file: str = "",
    enable_repository: bool = False,
    allow_modules: Sequence[str] = (),
    workers: int = 1,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 30.0,
    max_connections: int = 1000,
    timeout_keep_alive_s: int = 65,
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
        grpc_port: also serve KServe's gRPC V2 API on this port; 0: no gRPC (the gRPC
            server has none of the HTTP guard: keep it off on a shared network).
        tracking_uri: MLflow registry for ``models:/`` sources.
        access_log: log every request (uvicorn's access log and KServe's timing trace).
        log_uri: write a sample of the requests' features and predictions there as Parquet
            (a directory or fsspec URL; see :mod:`kfgpu.monitoring.logger`); empty: none.
        log_sample_rate: the share of requests logged, in (0, 1].
        auth_token_file: a file holding the bearer token every inference, metadata and
            repository route needs; empty: ``$KFGPU_AUTH_TOKEN``, and no auth when that is
            unset too.
        enable_repository: serve KServe's model repository routes (load/unload).
        allow_modules: module prefixes a bundle's ``model.family`` import path may name.
        workers: server processes (KServe's multi-process server); CPU serving.
        header_timeout_s: seconds a request's headers may take (then 408 and close).
        body_timeout_s: seconds a request's body may take after its headers.
        max_connections: most open connections per process (more: 503 and close).
        timeout_keep_alive_s: idle seconds before a kept-alive connection is closed (keep
            it above the ingress proxy's idle timeout).
    """
    from kfgpu.serving.guard import GuardSettings
    from kfgpu.serving.http import HttpLimits

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} is invalid; use an integer >= 1")
    if workers > 1 and log_uri:
        raise ConfigError(
            f"workers={workers} with log_uri: inference logging runs in one process; use "
            "workers=1 and scale with replicas"
        )
    if workers > 1 and grpc_port:
        raise ConfigError(f"workers={workers} with grpc_port: KServe runs gRPC in one process")
    token = read_auth_token(auth_token_file)
    limits = HttpLimits(
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_connections=max_connections,
    )
    path, registry_version = resolve_source(source, tracking_uri=tracking_uri)
    if not model_name:
        model_name = (
            source[len("models:/") :].split("@")[0].split("/")[0]
            if source.startswith("models:/")
            else path.resolve().name
        )
    from kfgpu.serving.predictor import bundle_fingerprint

    # The registry version (an alias resolved: the alias moves, the version does not), or
    # for a bundle path its fingerprint.
    version = registry_version or bundle_fingerprint(path)
    guard = GuardSettings(
        token=token,
        max_request_bytes=max_request_bytes,
        enable_repository=enable_repository,
        model_version=version.rsplit("/", 1)[-1],  # /versions/3/ for fraud/3
    )
    kserve = _import_kserve()

    from kfgpu.serving import _rest
    from kfgpu.serving.predictor import BundleModel, BundleRepository

    logger = None
    if log_uri:
        from kfgpu.bundle import read_description
        from kfgpu.monitoring.logger import InferenceLogger

        desc = read_description(path)
        logger = InferenceLogger(
            log_uri,
            model=model_name,
            model_version=version,
            labels=[str(c) for c in desc.classes],
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
        allow_modules=allow_modules,
        version=version,
    )
    model.load()
    _rest.install(
        _rest.ServerSettings(host=host, guard=guard, limits=limits, access_log=access_log)
    )
    server = kserve.ModelServer(
        http_port=port,
        grpc_port=grpc_port or 8081,
        enable_grpc=bool(grpc_port),
        workers=workers,
        enable_docs_url=False,
        enable_latency_logging=False,
        registered_models=BundleRepository(),
        timeout_keep_alive=timeout_keep_alive_s,
    )
    _rest.configure_logging(access_log)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else shown}:{port}"
    logging.getLogger("kfgpu.serving").info(
        "serving %r (version %s) at %s: POST %s/v1/models/%s:predict, POST %s/v2/models/%s/infer; "
        "auth %s; %d worker(s)",
        model_name,
        version,
        url,
        url,
        model_name,
        url,
        model_name,
        "bearer token" if token else "OFF (anyone who reaches the port can call the model)",
        workers,
    )
    try:
        server.start([model])
    finally:
        if logger is not None:
            logger.close()  # what is queued is written before the process ends
