"""The stack's former front proxy, kept only as the baseline of `make bench-proxy`
(bench/proxy_overhead.py). Not deployed: HAProxy replaced it (deploy/proxy/haproxy.cfg), for the
faults listed in docs/deploy.md (Docker Swarm). What follows is its original description.

Front proxy for the Swarm stack: HTTP/1.1, round-robin over the service's tasks, retries.

Why it exists: the hosts' kernel has no IPVS, so Swarm's routing mesh and VIP load balancing do
not answer. This proxy is published on a host-mode port and finds the replicas itself through the
overlay network's DNS (`tasks.<service>`, one A record per running task), re-resolved every
PROXY_RESOLVE_SECONDS so that a rolling update's new tasks are used and its old ones dropped.

A request is retried on another replica when the connection to one fails or closes before a
response head arrived: that is what a task being stopped looks like (it drains what it started,
then refuses connections). Retrying is safe here because every route of the service is a pure
function of the request. Only Content-Length bodies are accepted (411 otherwise).

Standard library only: it runs on the project's Debian base root filesystem (python3 alone).
Environment: PROXY_PORT (8080), PROXY_UPSTREAM (tasks.api), PROXY_UPSTREAM_PORT (8000),
PROXY_RESOLVE_SECONDS (1), PROXY_RETRY_SECONDS (10: how long to keep trying other replicas).
`GET /_proxy/stats` answers the proxy's own counters as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
import time

PORT = int(os.environ.get("PROXY_PORT", "8080"))
UPSTREAM = os.environ.get("PROXY_UPSTREAM", "tasks.api")
UPSTREAM_PORT = int(os.environ.get("PROXY_UPSTREAM_PORT", "8000"))
RESOLVE_SECONDS = float(os.environ.get("PROXY_RESOLVE_SECONDS", "1"))
RETRY_SECONDS = float(os.environ.get("PROXY_RETRY_SECONDS", "10"))
RESPONSE_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "transfer-encoding"}


class RetryError(Exception):
    """The backend failed before answering: the request may go to another replica."""


class BadRequestError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Proxy:
    def __init__(self) -> None:
        self.backends: list[str] = []
        self.rr = itertools.count()
        self.idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "resolves": 0}

    async def resolve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(OSError):
                infos = await loop.getaddrinfo(UPSTREAM, UPSTREAM_PORT, type=socket.SOCK_STREAM)
                found = sorted({str(info[4][0]) for info in infos})
                for gone in set(self.idle) - set(found):
                    for _, writer in self.idle.pop(gone):
                        writer.close()
                self.backends = found
                self.stats["resolves"] += 1
            await asyncio.sleep(RESOLVE_SECONDS)

    def pick(self, avoid: set[str]) -> str | None:
        fresh = [b for b in self.backends if b not in avoid] or list(self.backends)
        return fresh[next(self.rr) % len(fresh)] if fresh else None

    async def connect(self, backend: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        pool = self.idle.get(backend, [])
        while pool:
            reader, writer = pool.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(backend, UPSTREAM_PORT, limit=MAX_HEAD), 1.0
            )
        except (OSError, TimeoutError) as exc:
            raise RetryError(f"connect {backend}: {exc}") from None
        return reader, writer, False

    async def exchange(self, backend: str, head: bytes, body: bytes) -> tuple[bytes, bytes, bool]:
        """Send one request; returns (response head, body, backend keeps the connection)."""
        reader, writer, _ = await self.connect(backend)
        try:
            writer.write(head + body)
            await writer.drain()
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), RESPONSE_TIMEOUT)
            status_line, headers = parse_head(raw)
            payload = await read_body(reader, headers, status_line)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError) as exc:
            # Nothing reached the client yet, so another replica can answer instead.
            writer.close()
            raise RetryError(f"{backend} closed before a whole response: {exc!r}") from None
        except BaseException:
            writer.close()
            raise
        keep = headers.get("connection", "").lower() != "close" and "content-length" in headers
        if keep:
            self.idle.setdefault(backend, []).append((reader, writer))
        else:
            writer.close()
        return raw, payload, keep

    async def forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k not in HOP_BY_HOP and k != "content-length"]
        lines.append(f"content-length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        deadline = time.monotonic() + RETRY_SECONDS
        tried: set[str] = set()
        while True:
            backend = self.pick(tried)
            if backend is not None:
                try:
                    raw, payload, _ = await self.exchange(backend, head, body)
                    return rebuild_response(raw, payload)
                except (RetryError, ConnectionError) as exc:
                    print(f"proxy: retry: {exc}", file=sys.stderr, flush=True)
                    tried.add(backend)
            if time.monotonic() > deadline:
                self.stats["failed"] += 1
                return simple_response(503, "no replica answered")
            self.stats["retries"] += 1
            if len(tried) >= len(self.backends):
                tried.clear()  # every replica failed once: wait for DNS to move on
                await asyncio.sleep(0.05)

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                keep = True
                try:
                    request_line, headers = parse_head(raw)
                    method, target, version = request_line.split(" ", 2)
                    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                    if "chunked" in headers.get("transfer-encoding", "").lower():
                        raise BadRequestError(411, "send a content-length body")
                    size = int(headers.get("content-length", "0"))
                    if not 0 <= size <= MAX_BODY:
                        raise BadRequestError(413, "body too large")
                    body = await reader.readexactly(size)
                except BadRequestError as exc:
                    writer.write(simple_response(exc.status, exc.reason))
                    await writer.drain()
                    return
                except ValueError:
                    writer.write(simple_response(400, "malformed request"))
                    await writer.drain()
                    return
                self.stats["requests"] += 1
                if target == "/_proxy/stats":
                    stats = {**self.stats, "backends": self.backends}
                    response = simple_response(200, json.dumps(stats), "application/json", keep)
                else:
                    peer = writer.get_extra_info("peername")
                    headers["x-forwarded-for"] = peer[0] if peer else "unknown"
                    response = await self.forward(method, target, headers, body)
                writer.write(response)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def parse_head(raw: bytes) -> tuple[str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(line)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str], status_line: str) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers: dropped
                return b"".join(parts)
            parts.append(chunk[:-2])
    if status_line.split(" ")[1] in ("204", "304"):
        return b""
    return await reader.read()  # delimited by the backend closing the connection


def rebuild_response(raw: bytes, payload: bytes) -> bytes:
    status_line, headers = parse_head(raw)
    lines = [status_line]
    lines += [f"{k}: {v}" for k, v in headers.items() if k not in HOP_BY_HOP and k != "content-length"]
    lines.append(f"content-length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def simple_response(
    status: int, text: str, content_type: str = "application/json", keep: bool = False
) -> bytes:
    body = text.encode() if content_type == "application/json" and text.startswith("{") else None
    if body is None:
        body = json.dumps({"detail": f"proxy: {text}"}).encode()
    reason = {200: "OK", 400: "Bad Request", 411: "Length Required", 413: "Payload Too Large"}.get(
        status, "Service Unavailable"
    )
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    head += "" if keep else "connection: close\r\n"
    return (head + "\r\n").encode() + body


async def main() -> None:
    proxy = Proxy()
    resolver = asyncio.create_task(proxy.resolve_forever())
    server = await asyncio.start_server(proxy.serve_client, "0.0.0.0", PORT, limit=MAX_HEAD, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"proxy: :{PORT} -> {UPSTREAM}:{UPSTREAM_PORT}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    resolver.cancel()


if __name__ == "__main__":
    asyncio.run(main())
