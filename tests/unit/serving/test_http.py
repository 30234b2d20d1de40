"""The connection layer (:mod:`kfgpu.serving.http`) against the real server: slow-loris
connections are closed by the read deadlines while normal requests stay fast, a client
that disconnects mid-body costs one log line, the connection cap answers 503.

The guarded server of ``conftest.py`` has 1.5 s header and body deadlines and 400
connections at most.
"""

from __future__ import annotations

import inspect
import json
import select
import socket
import statistics
import time

import httpx
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kfgpu.serving.http import GuardedHttpToolsProtocol
from tests.unit.serving.conftest import TOKEN, Server

DEADLINE_S = 1.5
STALLED = 200


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _connect(server: Server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    s.setblocking(False)
    return s


def _half_body_request(server: Server) -> bytes:
    return (
        (
            f"POST /v1/models/{server.model}:predict HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        + b'{"instances": ['
        + b" " * 485
    )


def _wait_closed(socks: list[socket.socket], limit_s: float) -> dict[socket.socket, bytes]:
    """Read every socket until the server closes it (or ``limit_s`` passes): what each got."""
    got = {s: b"" for s in socks}
    open_ = set(socks)
    deadline = time.monotonic() + limit_s
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_), [], [], 0.1)
        for s in ready:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                chunk = b""
            if chunk:
                got[s] += chunk
            else:
                open_.discard(s)
    for s in open_:
        got[s] = b"<still open>"
    return got


def _good_latency_ms(server: Server, records: list[dict[str, object]]) -> float:
    """Median time of five one-row V1 requests (one client; httpx builds an SSL context
    per client, which alone takes longer than the request)."""
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            t0 = time.perf_counter()
            r = client.post(
                f"{server.url}/v1/models/{server.model}:predict",
                json={"instances": records[:1]},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return statistics.median(times)


def test_uvicorn_internals_we_subclass_are_there() -> None:
    """Fails loudly when uvicorn renames what the guarded protocol hooks into."""
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "send_400_response",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
        assert getattr(GuardedHttpToolsProtocol, name) is not getattr(HttpToolsProtocol, name)
    params = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert params[:4] == ["self", "config", "server_state", "app_state"]
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in ("self.cycle", "self.connections", "self.client", "self.url", "self.headers"):
        assert attribute in source, attribute


def test_slow_loris_bodies_are_closed_by_the_deadline_and_good_requests_stay_fast(
    guarded: Server, records: list[dict[str, object]]
) -> None:
    socks = []
    t0 = time.monotonic()
    try:
        for _ in range(STALLED):
            s = _connect(guarded)
            s.sendall(_half_body_request(guarded))
            socks.append(s)
        sent_s = time.monotonic() - t0
        during_ms = _good_latency_ms(guarded, records)
        got = _wait_closed(socks, DEADLINE_S + sent_s + 5.0)
        closed_s = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    assert during_ms < 100, f"a normal request took {during_ms:.0f} ms during the stall"
    still_open = sum(1 for v in got.values() if v == b"<still open>")
    assert still_open == 0, f"{still_open} of {STALLED} stalled connections were not closed"
    assert closed_s < DEADLINE_S + sent_s + 5.0
    statuses = {v.split(b" ", 2)[1] for v in got.values() if v}
    assert statuses == {b"408"}, statuses
    body = next(iter(got.values())).partition(b"\r\n\r\n")[2]
    assert "--body-timeout" in json.loads(body)["error"]
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200


def test_stalled_headers_and_silent_connections_are_closed(guarded: Server) -> None:
    socks = []
    try:
        for i in range(40):
            s = _connect(guarded)
            if i % 2:
                s.sendall(b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        t0 = time.monotonic()
        got = _wait_closed(socks, DEADLINE_S + 5.0)
        waited = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    assert all(v != b"<still open>" for v in got.values())
    assert waited < DEADLINE_S + 5.0
    assert {v.split(b" ", 2)[1] for v in got.values()} == {b"408"}


def test_a_client_disconnect_writes_one_log_line_and_no_traceback(guarded: Server) -> None:
    s = socket.create_connection(("127.0.0.1", _port(guarded)), timeout=10)
    peer = f"127.0.0.1:{s.getsockname()[1]}"
    s.sendall(_half_body_request(guarded))
    time.sleep(0.2)
    s.close()
    time.sleep(0.5)
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200
    log = guarded.log.read_text()
    lines = [line for line in log.splitlines() if f"from {peer}" in line]
    assert len(lines) == 1, lines
    assert "disconnected" in lines[0]
    assert "Traceback" not in log


def test_the_connection_cap_answers_503_and_the_server_recovers(
    guarded: Server, records: list[dict[str, object]]
) -> None:
    socks = []
    try:
        for _ in range(420):
            socks.append(_connect(guarded))
        got = _wait_closed(socks, DEADLINE_S + 8.0)
    finally:
        for s in socks:
            s.close()
    statuses = [v.split(b" ", 2)[1] for v in got.values() if v and v != b"<still open>"]
    assert statuses.count(b"503") >= 15, statuses.count(b"503")
    assert set(statuses) <= {b"503", b"408"}
    assert _good_latency_ms(guarded, records) < 1000
