"""The raw ASGI endpoints the hot routes (POST /predict, V2 infer, the benchmark's ceiling) are
served by, and the router that sends requests to them before FastAPI's.

`RawRoutes` sits inside the request-context middleware and answers these directly: FastAPI's
per-request machinery (router, dependency solving, exception middleware, Request/Response objects)
costs more, measured, than validating and scoring a row. A core reads the request and returns the
response JSON, or raises ClientError, which leaves as the endpoint's error format.
"""

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ClientError, ErrorFormat, error_body
from api.request_context import request_id_of
from api.responses import send_json

Core = Callable[[Scope, Receive], Awaitable[bytes]]


def raw_endpoint(core: Core, protocol: ErrorFormat = "lockstep") -> ASGIApp:
    """`core` as an ASGI app: 200 and its JSON, or the refusal in `protocol`'s error format."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = 200, await core(scope, receive)
        except ClientError as exc:
            status, body = exc.status, error_body(exc, request_id_of(scope), protocol)
        except ClientDisconnect:
            return  # nobody to answer
        await send_json(send, status, body)

    return app


class RawRoutes:
    """Routes (method, path) to its raw endpoint, anything else to the app (FastAPI's router).

    The mapping is kept by reference: emptying it (app.state.lean_routes) sends every request
    through FastAPI, whose routes answer alike (tested)."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], ASGIApp]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
