"""A local stand-in for the Kubernetes API: a request handler served on 127.0.0.1 and a real
``kubernetes.client.ApiClient`` pointed at it. Each test module writes its own handler (the
routes it needs); this serves it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def kube_api(handler: type[BaseHTTPRequestHandler]) -> Iterator[Any]:
    """Serve ``handler`` on 127.0.0.1 and yield an ``ApiClient`` for it; stop both after."""
    from kubernetes import client

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = client.ApiClient(config)
    try:
        yield api
    finally:
        api.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
