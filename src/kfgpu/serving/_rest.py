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

from kserve.logging import logger as kserve_logger
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from kserve.protocol.rest.server import RESTServer

from kfgpu.serving.guard import Guard, GuardSettings, install_error_handlers
from kfgpu.serving.http import (
    LIMITS_ATTR,
    GuardedHttpToolsProtocol,
    HttpLimits,
    MalformedRequestFilter,
)

__all__ = [
    "WORKER_PING_TIMEOUT_S",
    "GuardedRESTServer",
    "PatientRESTServerMultiProcess",
    "ServerSettings",
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

        app.add_middleware(Guard, settings=self.kfgpu.guard, ready=ready)


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
