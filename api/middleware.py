"""Pure-ASGI middleware: X-Request-ID, one JSON access-log line and metrics per request.

Written against raw ASGI rather than BaseHTTPMiddleware, which costs a task and a stream
per request: this middleware is on every request's path, including the benchmarked ones.
"""

import logging
import re
import uuid
from collections.abc import Collection, Mapping
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ServiceMetrics

access_log = logging.getLogger("api.access")

# Echo a client's id only if it is short and harmless in headers and logs.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
OTHER_ROUTE = "<other>"


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


def _incoming_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    """Assigns the request id, adds it to the response, then logs and measures the request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        routes: Collection[str],
        lean: Mapping[tuple[str, str], ASGIApp] | None = None,
    ):
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)
        # Hot routes answered directly (api.lean), skipping the framework's routing. Kept by
        # reference: emptying the mapping (app.state.lean_routes) sends everything through FastAPI.
        self.lean = lean if lean is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        raw_id = _incoming_request_id(scope) or uuid.uuid4().hex.encode()
        context = RequestContext(raw_id.decode())
        scope["lockstep"] = context
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw_id)]
            await send(message)

        handler = self.lean.get((scope["method"], scope["path"]), self.app)
        try:
            await handler(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            path = scope["path"]
            # Unknown paths share one label so scanners cannot blow up the metric's cardinality.
            route = path if path in self.routes else OTHER_ROUTE
            self.metrics.observe_request(route, scope["method"], status, seconds)
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
