"""api.read_timeouts against a real `python -m api` over loopback sockets: read deadlines, the
connection limit, oversize bodies that every common client can read the 413 of, and clients that go away."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import requests

from harness import DEFAULT, running_server

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
# The server's deadline starts when it accepts the connection (or has the headers), a moment before
# the client's clock here starts: a reply can come a hair under the deadline as the client measures it.
TIMER_SLACK = 0.05
MAX_CONNECTIONS = 40
LIMIT = 16 * 1024 * 1024  # the default body limit
GENERATED_ID = re.compile(rb"[0-9a-f]{32}")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """One server with short deadlines and a small connection limit; yields its port."""
    with running_server(
        DEFAULT,
        LOCKSTEP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        LOCKSTEP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        LOCKSTEP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    ) as running:
        yield running.port


def read_reply(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def parse_reply(data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, orjson.loads(body)


def metric(port: int, route: str, method: str, status: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(
        rf'lockstep_http_requests_total\{{method="{method}",route="{route}",status="{status}"\}} (\S+)', text
    )
    return float(found.group(1)) if found else 0.0


def predict_head(length: int, request_id: str = "") -> bytes:
    extra = f"X-Request-ID: {request_id}\r\n" if request_id else ""
    return (
        f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_a_trickled_body_gets_a_408_at_the_body_deadline(server: int) -> None:
    before = metric(server, "/predict", "POST", 408)
    with socket.create_connection(("127.0.0.1", server)) as sock:
        started = time.monotonic()
        sock.sendall(predict_head(1000, "slow-body-1") + b'{"instances": [')
        for _ in range(10):  # a byte every 0.1 s: alive, but far too slow
            sock.sendall(b" ")
            time.sleep(0.1)
        data = read_reply(sock, BODY_TIMEOUT + 5)
        elapsed = time.monotonic() - started
    status, headers, body = parse_reply(data)
    assert (status, body["error"]["code"]) == (408, "read_timeout")
    assert body["error"]["message"] == f"request body not received within {BODY_TIMEOUT:g} s"
    assert headers["x-request-id"] == body["error"]["request_id"] == "slow-body-1"
    assert headers["connection"] == "close"
    assert BODY_TIMEOUT - TIMER_SLACK <= elapsed < BODY_TIMEOUT + 1.5
    assert metric(server, "/predict", "POST", 408) == before + 1


def test_headers_that_never_end_get_a_408_at_the_header_deadline(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\n")
        data = read_reply(sock, HEADER_TIMEOUT + 5)
        elapsed = time.monotonic() - started
    status, headers, body = parse_reply(data)
    assert (status, body["error"]["code"]) == (408, "read_timeout")
    assert body["error"]["message"] == f"request headers not received within {HEADER_TIMEOUT:g} s"
    assert GENERATED_ID.fullmatch(headers["x-request-id"].encode())
    assert HEADER_TIMEOUT - TIMER_SLACK <= elapsed < HEADER_TIMEOUT + 1.5


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        started = time.monotonic()
        assert read_reply(sock, HEADER_TIMEOUT + 5) == b""  # nothing to answer: just closed
        assert HEADER_TIMEOUT - TIMER_SLACK <= time.monotonic() - started < HEADER_TIMEOUT + 1.5


def test_connections_beyond_the_limit_get_a_503_at_once(server: int, example: dict[str, Any]) -> None:
    held = [socket.create_connection(("127.0.0.1", server)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # let the server accept them all
        with socket.create_connection(("127.0.0.1", server)) as extra:
            started = time.monotonic()
            status, headers, body = parse_reply(read_reply(extra, 5))
            assert time.monotonic() - started < 1
        assert (status, body["error"]["code"]) == (503, "too_many_connections")
        assert headers["retry-after"] == "1"
        assert GENERATED_ID.fullmatch(headers["x-request-id"].encode())
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    served = requests.post(f"http://127.0.0.1:{server}/predict", json={"instances": [example]}, timeout=10)
    assert served.status_code == 200  # the held connections closed: room again


def _urllib(url: str, body: bytes) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, orjson.loads(reply.read()), reply.headers["x-request-id"]
    except urllib.error.HTTPError as refused:
        return refused.code, orjson.loads(refused.read()), refused.headers["x-request-id"]


def _requests(url: str, body: bytes) -> tuple[int, dict[str, Any], str]:
    reply = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
    return reply.status_code, reply.json(), reply.headers["x-request-id"]


def _httpx(url: str, body: bytes) -> tuple[int, dict[str, Any], str]:
    reply = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=60)
    return reply.status_code, reply.json(), reply.headers["x-request-id"]


@pytest.mark.parametrize("size", [LIMIT + 1, 64_000_000], ids=["just-over", "64MB"])
@pytest.mark.parametrize("post", [_urllib, _requests, _httpx], ids=["urllib", "requests", "httpx"])
def test_every_client_reads_the_413_of_an_oversize_body(server: int, post: Any, size: int) -> None:
    """urllib sends the whole body before reading: without draining it saw a broken pipe."""
    status, body, request_id = post(f"http://127.0.0.1:{server}/predict", b" " * size)
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert body["error"]["message"] == f"request body exceeds {LIMIT} bytes"
    assert body["error"]["request_id"] == request_id
    assert GENERATED_ID.fullmatch(request_id.encode())


def test_a_client_that_leaves_mid_body_is_counted_499_and_the_server_carries_on(
    server: int, example: dict[str, Any]
) -> None:
    before = metric(server, "/predict", "POST", 499)
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(predict_head(1000) + b'{"instances": [')
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while metric(server, "/predict", "POST", 499) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "/predict", "POST", 499) == before + 1
    served = requests.post(f"http://127.0.0.1:{server}/predict", json={"instances": [example]}, timeout=10)
    assert served.status_code == 200
