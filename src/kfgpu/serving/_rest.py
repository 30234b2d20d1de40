"""KServe's REST server with kfgpu's guard, limits and error handlers installed.

KServe builds its FastAPI application in ``RESTServer.create_application``, in each worker
process (``--workers N`` spawns processes that unpickle the server and build the app
there). :class:`GuardedRESTServer` is that server plus, in every process: the bind
address, uvicorn's protocol with read deadlines (:mod:`kfgpu.serving.http`), the error
handlers and the :class:`~kfgpu.serving.guard.Guard` middleware. Importing this module
imports kserve (see :func:`kfgpu.serving.server.serve`, which installs it).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import orjson
from kserve.logging import logger as kserve_logger
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import is_structured_cloudevent
from starlette.requests import Request

from kfgpu.serving.guard import Guard, GuardSettings, install_error_handlers
from kfgpu.serving.http import (
    LIMITS_ATTR,
    GuardedHttpToolsProtocol,
    HttpLimits,
    MalformedRequestFilter,
)
from kfgpu.serving.predictor import BundleModel

__all__ = [
    "WORKER_PING_TIMEOUT_S",
    "GuardedRESTServer",
    "PatientRESTServerMultiProcess",
    "ServerSettings",
    "V1FastPath",
    "configure_logging",
    "install",
]


@dataclass(frozen=True)
class ServerSettings:
    """What every worker process of the REST server needs."""

    host: str
    guard: GuardSettings
    limits: HttpLimits
    access_log: bool = False


_active: ServerSettings | None = None


#: Seconds a worker process may take to answer KServe's liveness ping. KServe waits 5 s,
#: but a worker first imports kserve and torch and loads the bundle: on a busy node that
#: takes longer, and KServe would kill and respawn it forever.
WORKER_PING_TIMEOUT_S = 60.0


def install(settings: ServerSettings) -> None:
    """Make KServe build :class:`GuardedRESTServer` with ``settings`` (single and
    multi-process servers alike)."""
    global _active
    import kserve.model_server
    import kserve.protocol.rest.multiprocess.server as multiprocess

    _active = settings
    kserve.model_server.RESTServer = GuardedRESTServer
    multiprocess.RESTServer = GuardedRESTServer
    kserve.model_server.RESTServerMultiProcess = PatientRESTServerMultiProcess


def configure_logging(access_log: bool) -> None:
    """kfgpu's serving log (one line per refused request) on stderr; KServe's per-request
    lines off unless ``access_log``."""
    log = logging.getLogger("kfgpu.serving")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d kfgpu.serving %(levelname)s %(message)s")
        )
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)
    log.disabled = False
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, MalformedRequestFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(MalformedRequestFilter())
    if not access_log:
        # One log line per request (uvicorn's access log, KServe's timing trace) costs
        # more than a small model's forward pass; the metrics carry the same facts.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)


class GuardedRESTServer(RESTServer):
    """KServe's ``RESTServer`` with kfgpu's guard (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _active is None:
            raise RuntimeError("kfgpu.serving._rest.install() was not called before start")
        self.kfgpu = _active
        # KServe 0.21 binds 0.0.0.0 unconditionally; bind where asked.
        self.config.host = self.kfgpu.host
        self.config.http = GuardedHttpToolsProtocol
        setattr(self.config, LIMITS_ATTR, self.kfgpu.limits)

    def create_application(self) -> None:
        super().create_application()
        import kserve.model_server

        configure_logging(self.kfgpu.access_log)
        app = kserve.model_server.app
        if not self.kfgpu.access_log:
            # KServe's timing middleware only feeds the trace log turned off above.
            app.user_middleware = [
                m
                for m in app.user_middleware
                if getattr(m.cls, "__name__", "") != "TimingMiddleware"
            ]
        install_error_handlers(app)
        registry = self.dataplane.model_registry
        for model in registry.get_models().values():
            ensure_loaded = getattr(model, "ensure_loaded", None)
            if ensure_loaded is not None:
                ensure_loaded()  # a worker process: its copy of the model loads here

        async def ready() -> bool:
            all_ready = getattr(registry, "all_ready", None)
            if all_ready is not None:
                return bool(all_ready())
            models = registry.get_models()
            return bool(models) and all(m.ready for m in models.values())

        app.add_middleware(
            Guard,
            settings=self.kfgpu.guard,
            ready=ready,
            # With the access log on, requests keep KServe's whole route (and its timing
            # trace); otherwise V1 predictions take the short way.
            fast_path=None if self.kfgpu.access_log else V1FastPath(app, registry),
        )


_V1_PREFIX = "/v1/models/"
_V1_SUFFIX = ":predict"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class V1FastPath:
    """``POST /v1/models/<name>:predict`` of a ready kfgpu model without FastAPI's router
    and KServe's data plane: the same steps (JSON body decoded with orjson, the model's
    ``__call__``, the dict answered as KServe's ``ORJSONResponse`` renders it, errors
    through the application's exception handlers), fewer layers.

    Only the plain case is taken: ``Content-Type: application/json`` exactly, a JSON object
    that is not a structured CloudEvent, a registered model that serves. Anything else
    (no or another content type, malformed JSON, an unknown or unready model) returns
    False and goes KServe's way, so every refusal reads as it did.
    """

    def __init__(self, app: Any, registry: Any) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Any, body: bytes, receive: Any, send: Any) -> bool:
        path: str = scope["path"]
        if (
            scope["method"] != "POST"
            or not path.startswith(_V1_PREFIX)
            or not path.endswith(_V1_SUFFIX)
        ):
            return False
        name = path[len(_V1_PREFIX) : -len(_V1_SUFFIX)]
        if not name or "/" in name:
            return False
        model = self.registry.get_model(name)
        if not isinstance(model, BundleModel) or not model.serving():
            return False
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers[k.decode("latin-1")] = v.decode("latin-1")
        if headers.get("content-type") != "application/json":
            return False
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if type(payload) is not dict or is_structured_cloudevent(payload):
            return False
        try:
            response, _ = await model(payload, headers=headers)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # as from KServe's route: the server's 500 handler answers
            answer = await handler(Request(scope, receive), exc)
            await answer(scope, receive, send)
            return True
        content = orjson.dumps(response, option=_ORJSON_OPTIONS)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        return True

    def _handler(self, exc: Exception) -> Any:
        """The handler Starlette's exception middleware would pick for ``exc``."""
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None  # the server-error middleware's, which also re-raises
            if cls in handlers:
                return handlers[cls]
        return None


class PatientRESTServerMultiProcess(RESTServerMultiProcess):
    """KServe's multi-process server with :data:`WORKER_PING_TIMEOUT_S` for a worker's
    liveness answer (KServe's own loop, with that one number changed)."""

    async def keep_subprocess_alive(self, sockets: Any) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self._processes):
            if not process.is_alive(timeout=WORKER_PING_TIMEOUT_S):
                process.kill()
                await process.wait_for_termination()
                if self.should_exit.is_set():
                    return
                kserve_logger.info("Child process [%s] died", process.pid)
                process = RESTServerProcess(sockets, self._rest_server.run)
                process.start()
                self._processes[idx] = process
                kserve_logger.info("Started new child process [%s]", process.pid)
