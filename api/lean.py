"""Lean ASGI handlers for the hot routes, dispatched by the request middleware.

Profiling showed FastAPI's per-request machinery (router, dependency solving, exception
middleware, Request/Response objects) costing more than validation and prediction together.
POST /predict and the ceiling therefore answer straight from raw ASGI: same core (api.handlers),
same error envelope, same request id, metrics and access log, a fraction of the overhead.
The FastAPI routes stay registered: they define the OpenAPI document and answer other methods.
"""

from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from api import handlers
from api.errors import ClientError, error_body
from api.middleware import request_context
from api.state import ServiceState

Core = Callable[[ServiceState, Scope, Receive], Awaitable[bytes]]
_JSON = (b"content-type", b"application/json")


def _asgi(state: ServiceState, core: Core) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = 200, await core(state, scope, receive)
        except ClientError as exc:
            context = request_context(scope)
            request_id = context.request_id if context else None
            status, body = exc.status, error_body(exc.status, exc.code, exc.message, exc.problems, request_id)
        except ClientDisconnect:
            return  # nobody to answer
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def lean_routes(state: ServiceState, ceiling_path: str | None) -> dict[tuple[str, str], ASGIApp]:
    """(method, path) -> ASGI app for the routes served without FastAPI's routing."""
    routes = {("POST", "/predict"): _asgi(state, handlers.predict)}
    if ceiling_path is not None:
        routes[("POST", ceiling_path)] = _asgi(state, handlers.ceiling)
    return routes
