"""uvicorn's httptools protocol with read deadlines and a per-worker connection limit.

uvicorn bounds idle keep-alive time but not the time a client may take to send a request: a
client that sends headers and then trickles its body (or never finishes its headers) holds a
connection, a task and a buffer for as long as it likes. Each connection here gets a deadline
for its headers and then one for its body; a client that misses one gets a 408 and is
disconnected. Connections beyond the worker's limit get a 503 as soon as they are accepted,
before any of their bytes are read.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import ClientError, error_body
from api.request_context import READ_TIMEOUT_KEY, request_context


def _raw_response(status: int, reason: str, code: str, message: str, request_id: str) -> bytes:
    """A complete HTTP/1.1 error response in the service's JSON envelope, closing the connection."""
    body = error_body(ClientError(status, code, message), request_id)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nx-request-id: {request_id}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode("latin-1") + b"\r\n" + body


class ReadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus header/body read deadlines and a connection limit (see the module doc)."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for = "connection"

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = f"this worker already has {self.max_connections} connections; retry shortly"
            transport.write(
                _raw_response(503, "Service Unavailable", "too_many_connections", message, uuid.uuid4().hex)
            )
            transport.close()
            return
        self._arm("connection", self.header_timeout)  # a connection that never sends a byte is closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm("headers", self.header_timeout)
        else:  # the first: its deadline runs from the connection, not from its first byte
            self._waiting_for = "headers"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm("body", self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # between requests uvicorn's keep-alive timeout applies

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        waiting, cycle = self._waiting_for, self.cycle
        answered = waiting == "body" and cycle is not None and cycle.response_started
        if answered and cycle is not None and not cycle.response_complete:
            return  # the app is answering before reading everything; uvicorn finishes that response
        if waiting != "connection" and not answered:  # a request has begun and has no answer yet
            seconds = self.body_timeout if waiting == "body" else self.header_timeout
            context = None
            if waiting == "body" and cycle is not None:
                cycle.scope[READ_TIMEOUT_KEY] = True  # type: ignore[literal-required]
                context = request_context(cycle.scope)  # type: ignore[arg-type]
            request_id = context.request_id if context else uuid.uuid4().hex
            message = f"request {waiting} not received within {seconds:g} s"
            self.transport.write(_raw_response(408, "Request Timeout", "read_timeout", message, request_id))
        self.transport.close()
