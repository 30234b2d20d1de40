"""Run the model server in a child process on 127.0.0.1 and wait until it is ready.

For smoke tests, benchmarks and local replays: ``start_server(bundle, log)`` returns once
``/v2/models/<name>/ready`` answers 200; ``stop_server`` sends SIGTERM (the server drains
and its inference logger writes what it holds) and kills after a grace period.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Server", "free_port", "start_server", "stop_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server started by :func:`start_server`."""

    url: str
    model: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(
    bundle: str | os.PathLike[str],
    log: Path,
    *,
    model_name: str = "fraud",
    ready_timeout_s: float = 90.0,
    **kw: Any,
) -> Server:
    """:func:`kfgpu.serving.server.serve` in a child process; returns once it is ready.

    Args:
        bundle: a bundle directory or ``models:/`` URI.
        log: the child's stdout and stderr go there.
        model_name: the model's name in the URL paths.
        ready_timeout_s: give up (and kill the child) after this long.
        **kw: more :func:`~kfgpu.serving.server.serve` arguments (``port`` default: free).

    Raises:
        RuntimeError: the child exited, or was not ready in time (with its log's tail).
    """
    import httpx

    port = kw.pop("port", 0) or free_port()
    args = {"port": port, "model_name": model_name, **kw}
    code = f"from kfgpu.serving.server import serve; serve({str(bundle)!r}, **{args!r})"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as fh:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/{model_name}/ready", timeout=1).status_code == 200:
                return Server(url=url, model=model_name, proc=proc, log=log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=10)
    raise RuntimeError(f"server not ready in {ready_timeout_s:g} s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server, *, grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
