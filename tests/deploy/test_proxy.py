"""deploy/proxy/proxy.py over real sockets on loopback, against a backend that misbehaves on purpose:
a request whose connection is dropped before an answer is retried, bad requests get a 4xx, and no
backend at all is a 503 after the retry budget, never a hang."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

PROXY = Path(__file__).resolve().parents[2] / "deploy/proxy/proxy.py"


class FlakyBackend:
    """HTTP/1.1 on loopback that closes every `drop_every`-th connection without answering."""

    def __init__(self, drop_every: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.drop_every, self.connections, self.answered = drop_every, 0, 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn, self.connections), daemon=True).start()

    def handle(self, conn: socket.socket, n: int) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            if n % self.drop_every == 0:
                return  # closed before any response: what a stopping replica looks like
            head, _, body = data.partition(b"\r\n\r\n")
            size = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < size:
                body += conn.recv(65536)
            reply = json.dumps({"echo": body.decode()}).encode()
            self.answered += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                         + f"content-length: {len(reply)}\r\n\r\n".encode() + reply)  # fmt: skip

    def close(self) -> None:
        self.sock.close()


def start_proxy(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "PROXY_PORT": str(port),
        "PROXY_UPSTREAM": "127.0.0.1",
        "PROXY_UPSTREAM_PORT": str(upstream_port),
        "PROXY_RETRY_SECONDS": "1",
        "PROXY_RESOLVE_SECONDS": "0.2",
    }
    proc = subprocess.Popen([sys.executable, str(PROXY)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            assert time.monotonic() < deadline, "the proxy did not listen within 10 s"
            time.sleep(0.05)


@pytest.fixture
def backend() -> Iterator[FlakyBackend]:
    flaky = FlakyBackend(drop_every=2)
    yield flaky
    flaky.close()


@pytest.fixture
def proxy_port(backend: FlakyBackend) -> Iterator[int]:
    proc, port = start_proxy(backend.port)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def post(port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/predict", body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_a_dropped_connection_is_retried_and_every_request_answered(
    backend: FlakyBackend, proxy_port: int
) -> None:
    for i in range(20):
        status, body = post(proxy_port, f'{{"n": {i}}}'.encode())
        assert status == 200
        assert json.loads(body) == {"echo": f'{{"n": {i}}}'}
    assert backend.answered == 20
    assert backend.connections >= 39  # about every other connection was dropped, and retried


def test_stats_count_the_retries(proxy_port: int) -> None:
    for _ in range(6):
        post(proxy_port, b"{}")
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=5)
    try:
        conn.request("GET", "/_proxy/stats")
        stats = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert stats["retries"] >= 5
    assert stats["failed"] == 0
    assert stats["backends"] == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Content-Length": "-1"}, 413),
        ({"Content-Length": "x"}, 400),
    ],
    ids=["chunked", "negative-length", "bad-length"],
)
def test_bad_request_framing_gets_a_4xx(proxy_port: int, headers: dict[str, str], status: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        assert sock.recv(65536).startswith(f"HTTP/1.1 {status} ".encode())


def test_no_backend_is_a_503_after_the_retry_budget() -> None:
    proc, port = start_proxy(free_port())  # nothing listens there
    try:
        started = time.monotonic()
        status, body = post(port, b"{}")
        assert status == 503
        assert b"no replica answered" in body
        assert time.monotonic() - started < 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)
