"""The per-request envelope: X-Request-ID, one JSON access-log line and metrics per request.

Written against raw ASGI rather than BaseHTTPMiddleware, which costs a task and a stream
per request: this middleware is on every request's path, including the benchmarked ones.
"""

import logging
import re
import uuid
from collections.abc import Collection
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ClientError, error_body
from api.metrics import ServiceMetrics
from api.responses import send_json

access_log = logging.getLogger("api.access")
log = logging.getLogger("api.middleware")  # the name log readers already filter on

# Echo a client's id only if it is short and harmless in headers and logs.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
OTHER_ROUTE = "<other>"
# The HTTP parser accepts ~30 methods (PROPFIND, MKCOL, ...): the rest share one metrics label.
_METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "<other>"
# No response at all: the client went away first (nginx's code for "client closed request").
CLIENT_CLOSED = 499
# The connection's read deadline passed before the request arrived (set by api.read_timeouts).
READ_TIMEOUT_KEY = "lockstep.read_timeout"
_INTERNAL_ERROR = "internal error"


class RequestContext:
    """Per-request values shared between the middleware and the handlers (via scope["lockstep"])."""

    __slots__ = ("request_id", "rows")

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.rows: int | None = None


def request_context(scope: Scope) -> RequestContext | None:
    """The context the middleware attached to this request, if any."""
    context = scope.get("lockstep")
    return context if isinstance(context, RequestContext) else None


def request_id_of(scope: Scope) -> str | None:
    """This request's id (what X-Request-ID answers), or None outside the middleware."""
    context = request_context(scope)
    return context.request_id if context is not None else None


def _incoming_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    """Assigns the request id, adds it to the response, then logs and measures the request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Collection[str]):
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        raw_id = _incoming_request_id(scope) or uuid.uuid4().hex.encode()
        context = RequestContext(raw_id.decode())
        scope["lockstep"] = context
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answered here rather than by Starlette's outermost error middleware, which runs
            # outside this one and so would send the 500 without the request id.
            if status is not None:
                raise  # the response has begun: the server can only drop the connection
            log.error("unhandled error", exc_info=exc, extra={"request_id": context.request_id})
            body = error_body(ClientError(500, "internal_error", _INTERNAL_ERROR), context.request_id)
            await send_json(send_with_id, 500, body)
        finally:
            seconds = perf_counter() - started
            path = scope["path"]
            if status is None:
                status = 408 if scope.get(READ_TIMEOUT_KEY) else CLIENT_CLOSED
            # Unknown paths and methods share one label each so that scanners cannot blow up the
            # metric's cardinality.
            route = path if path in self.routes else OTHER_ROUTE
            method = scope["method"] if scope["method"] in _METRIC_METHODS else OTHER_METHOD
            self.metrics.observe_request(route, method, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                fields: dict[str, Any] = {
                    "request_id": context.request_id,
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "rows": context.rows,
                    "client": (scope.get("client") or (None,))[0],
                }
                access_log.info("request", extra=fields)
