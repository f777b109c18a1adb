"""HAProxy in front of the stack (deploy/proxy/haproxy.cfg), over real sockets on the published
127.0.0.1 port: the cases the audit found the home-made proxy failing. A silent backend needs a
backend that never answers, and 204/304 answers need a backend that gives them, which the stack's
replicas do not: those cases run the same proxy image in front of a small scripted backend,
published on 127.0.0.1 as well."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from harness import free_port, wait_ready
from tests.integration.deploy.conftest import Stack, run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SERVER_TIMEOUT = 10  # haproxy.cfg's `timeout server`
HTTP_REQUEST_TIMEOUT = 10  # its `timeout http-request`
FRONTEND_MAXCONN = 1000  # its frontend `maxconn`


def connect(stack: Stack, timeout: float = 5.0) -> socket.socket:
    url = urlsplit(stack.url)
    return socket.create_connection((url.hostname, url.port), timeout=timeout)


def read_response(sock: socket.socket, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length; none for HEAD)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a complete response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    size = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return int(status_line.split()[1]), headers, rest


def test_head_healthz_is_answered_with_no_body_and_the_connection_stays_usable(stack: Stack) -> None:
    with connect(stack) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _headers, rest = read_response(sock, head_only=True)
        assert status in (200, 405), status  # whatever the service says, promptly (5 s socket timeout)
        assert rest == b""  # no body follows a HEAD answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    assert body


def test_expect_100_continue_gets_a_100_then_the_real_answer(stack: Stack) -> None:
    body = b'{"instances": []}'
    with connect(stack) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        status, _, _ = read_response(sock, head_only=True)
        assert status == 100
        sock.sendall(body)
        status, headers, reply = read_response(sock)
    assert status not in (100, 502, 503, 504), status  # the service's own verdict on an empty batch
    assert "x-request-id" in headers
    assert reply


def test_oversized_body_is_refused_before_reaching_a_replica(stack: Stack) -> None:
    """413 from HAProxy itself on the Content-Length alone (no body sent): no replica saw it (the
    service stamps x-request-id on everything it answers), so none can be retried or hurt."""
    before = stack.retries()
    with connect(stack) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (16 * 1024 * 1024 + 1)
        )
        status, headers, _ = read_response(sock)
    assert status == 413
    assert "x-request-id" not in headers
    assert stack.retries()["wretr"] == before["wretr"]


def test_a_body_at_the_limit_is_passed_on(stack: Stack) -> None:
    with connect(stack) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        status, headers, _ = read_response(sock)
    assert "x-request-id" in headers, status  # answered by a replica, whatever it thinks of `{}`


def test_duplicate_content_length_is_a_400(stack: Stack) -> None:
    with connect(stack) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n{}"
        )
        status, headers, _ = read_response(sock)
    assert status == 400
    assert "x-request-id" not in headers


def test_half_sent_headers_are_cut_after_the_http_request_timeout(stack: Stack) -> None:
    with connect(stack, timeout=HTTP_REQUEST_TIMEOUT + 10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        status, _, _ = read_response(sock)
        waited = time.monotonic() - started
        assert sock.recv(1) == b""  # then closed
    assert status == 408
    assert HTTP_REQUEST_TIMEOUT - 1 < waited < HTTP_REQUEST_TIMEOUT + 10


def test_connections_beyond_the_cap_wait_until_one_closes(stack: Stack) -> None:
    idle = [connect(stack) for _ in range(FRONTEND_MAXCONN)]
    try:
        time.sleep(0.5)  # all accepted by HAProxy: the cap is reached
        with connect(stack, timeout=2) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(TimeoutError):
                extra.recv(1)  # queued by the kernel, not served
            for sock in idle[:10]:
                sock.close()
            extra.settimeout(5)
            status, _, _ = read_response(extra)
        assert status == 200
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize("path", ["/stats", "/_proxy/stats", "/haproxy?stats", "/stats;csv"])
def test_statistics_are_not_on_the_published_port(stack: Stack, path: str) -> None:
    with connect(stack) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_response(sock)
    assert status == 404
    assert "x-request-id" in headers
    assert b"pxname" not in body
    assert b"Statistics Report" not in body


def test_statistics_answer_on_the_proxys_own_loopback(stack: Stack) -> None:
    stats = stack.proxy_stats()
    assert stats["public/FRONTEND"]["status"] == "OPEN"
    up = [k for k, row in stats.items() if k.startswith("api/api") and row["status"] == "UP"]
    assert len(up) == 2, {k: row["status"] for k, row in stats.items()}


# A backend with scripted answers: /readyz 200 (so HAProxy keeps it as a healthy server), 204 and
# 304 with the headers that tempt a proxy to wait for a body (a 304 keeps the Content-Length of the
# body it stands for), and silence for anything else, the connection held open.
SCRIPTED = """
import socket, threading
ANSWERS = {
    b"GET /readyz ": b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok",
    b"GET /no-content ": b"HTTP/1.1 204 No Content\\r\\n\\r\\n",
    b"GET /not-modified ": b"HTTP/1.1 304 Not Modified\\r\\ncontent-length: 1234\\r\\n\\r\\n",
}
def handle(conn):
    while request := conn.recv(65536):
        answer = next((a for prefix, a in ANSWERS.items() if request.startswith(prefix)), None)
        if answer is None:
            threading.Event().wait()  # silent
        conn.sendall(answer)
s = socket.create_server(("", 8000))
while True:
    threading.Thread(target=handle, args=(s.accept()[0],), daemon=True).start()
"""


@pytest.fixture
def scripted_backend(stack: Stack) -> Iterator[str]:
    """The stack's proxy image on its own network in front of SCRIPTED, aliased `tasks.api`; the
    proxy published on 127.0.0.1, and ready (the backend resolved and checked)."""
    name = f"proxy-silent-{free_port()}"
    api_image = run(["docker", "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                     stack.service("api")]).stdout.strip()  # fmt: skip
    port = free_port()
    run(["docker", "network", "create", name])
    try:
        run(["docker", "run", "-d", "--name", f"{name}-backend", "--network", name,
             "--network-alias", "tasks.api", "--entrypoint", "python", api_image,
             "-c", SCRIPTED])  # fmt: skip
        run(["docker", "run", "-d", "--name", f"{name}-proxy", "--network", name,
             "-p", f"127.0.0.1:{port}:8080", "--read-only", "--cap-drop", "ALL",
             stack.env["LOCKSTEP_PROXY_IMAGE"]])  # fmt: skip
        wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        run(["docker", "rm", "-f", f"{name}-proxy", f"{name}-backend"], check=False)
        run(["docker", "network", "rm", name], check=False)


def test_a_silent_backend_is_a_504_within_the_server_timeout(scripted_backend: str) -> None:
    url = urlsplit(scripted_backend)
    with socket.create_connection((url.hostname, url.port), timeout=SERVER_TIMEOUT + 10) as sock:
        sock.sendall(b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        status, _, _ = read_response(sock)
        waited = time.monotonic() - started
    assert status == 504
    assert SERVER_TIMEOUT - 1 < waited < SERVER_TIMEOUT + 5


def test_204_and_304_carry_no_body_and_the_connection_stays_usable(scripted_backend: str) -> None:
    url = urlsplit(scripted_backend)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        for path, expected in (("/no-content", 204), ("/not-modified", 304), ("/readyz", 200)):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, rest = read_response(sock, head_only=expected != 200)
            assert status == expected
            assert rest == (b"ok" if expected == 200 else b"")  # nothing read ahead of the next answer
