"""SIGTERM to a real `python -m api` (uvicorn, uvloop, httptools): in-flight requests all complete."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from harness import DEFAULT, Server, running_server

IN_FLIGHT = 8
ROWS = 200


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server(DEFAULT) as started:
        yield started


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_drains_in_flight_requests(server: Server, example: dict[str, Any]) -> None:
    process, port = server.process, server.port
    body = orjson.dumps({"instances": [example] * ROWS})
    half = len(body) // 2
    connections = []
    for i in range(IN_FLIGHT):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: drain-{i}\r\n\r\n"
        )
        # Headers and half the body: the server has started each request and is waiting for the rest.
        connection.sendall(head.encode() + body[:half])
        connections.append(connection)
    time.sleep(0.5)

    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None, "exited with requests still in flight"
    with pytest.raises(ConnectionRefusedError):  # draining: no new connections are accepted
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    for connection in connections:
        connection.sendall(body[half:])
    for connection in connections:
        reply = http.client.HTTPResponse(connection)
        reply.begin()
        assert reply.status == 200
        assert len(orjson.loads(reply.read())["predictions"]) == ROWS
        connection.close()

    stdout = server.output(timeout=30)
    # uvicorn re-raises SIGTERM once drained, so the exit status is "terminated by SIGTERM" (143 in a shell).
    assert process.returncode in (0, -signal.SIGTERM)
    records = [orjson.loads(line) for line in stdout.splitlines()]  # every line is JSON
    drained = {r["request_id"]: r["status"] for r in records if r.get("path") == "/predict"}
    assert drained == {f"drain-{i}": 200 for i in range(IN_FLIGHT)}
    assert any("Shutting down" in r["message"] for r in records)
