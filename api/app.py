"""App factory: `create_app(settings)` wires routes, middleware, error handlers, the OpenAPI document
and the lifespan that loads the model once."""

import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from api.errors import ClientError, error_body, problem
from api.metrics import multiprocess_enabled
from api.model import load_model
from api.openapi import install_openapi
from api.ops import ops_router
from api.predict import lean_routes, predict_router
from api.raw import RawRoutes
from api.request_context import RequestContextMiddleware, request_id_of
from api.settings import Settings
from api.state import ServiceState
from api.v2 import V2Service, build_v2_router

log = logging.getLogger("api.app")

_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    problems: list[dict[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = error_body(ClientError(status, code, message, problems), request_id_of(request.scope))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, expected or not, leaves as the JSON error envelope; never as a traceback."""

    async def client_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClientError)
        return _error_response(request, exc.status, exc.code, exc.message, exc.problems)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return _error_response(
            request, exc.status_code, code, message, [problem(None, None, message)], exc.headers
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            problem(None, ".".join(map(str, e.get("loc", ()))), str(e.get("msg"))) for e in exc.errors()
        ]
        return _error_response(request, 422, "invalid_request", "invalid request", problems)

    async def disconnected(request: Request, exc: Exception) -> Response:
        # The client is gone; this response is never read, it only ends the request cleanly.
        return _error_response(request, 400, "client_disconnected", "client disconnected", [])

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        message = "internal error"
        return _error_response(request, 500, "internal_error", message, [problem(None, None, message)])

    app.add_exception_handler(ClientError, client_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, unexpected)


def _lifespan(state: ServiceState) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        model = load_model(state.settings)  # ContractError: refuse to start, naming the file
        state.model_document = orjson.dumps(model.description)
        state.metrics.set_model(
            model.version, model.runner.kind, model.metadata.task, model.trained_with, model.classes
        )
        state.model = model
        # What is alive now (modules, the app, the model) lives as long as the process: frozen, it
        # is no longer walked by every full garbage collection, which a 1,000-row request's
        # objects trigger every few requests (a tenth of such a request's CPU time, measured).
        gc.collect()
        gc.freeze()
        log.info(
            "model loaded",
            extra={
                "model_version": model.version,
                "path": model.runner.kind,
                "reason": model.serving.reason,
                "load_seconds": round(time.perf_counter() - started, 4),
            },
        )
        try:
            yield
        finally:
            gc.unfreeze()
            state.model = None
            if multiprocess_enabled():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    return lifespan


# A hook for raw routes beside the service's own (the benchmark's ceiling, bench/ceiling.py): given
# the app's state, (method, path) -> raw ASGI app, dispatched before routing as /predict is.
Mount = Callable[[ServiceState], Mapping[tuple[str, str], ASGIApp]]


def create_app(settings: Settings, mounts: Sequence[Mount] = ()) -> FastAPI:
    """Build the app; the model is loaded (and verified) by the lifespan, not here. `mounts` add raw
    routes the production app does not have (`python -m api` mounts none)."""
    state = ServiceState(settings=settings)
    app = FastAPI(
        title="lockstep prediction service",
        version="1",
        description="Serves the DVC-tracked model; requests are validated against its own feature list.",
        lifespan=_lifespan(state),
        # No "/healthz/" -> "/healthz" redirects: Starlette builds their Location from the client's
        # Host header, which would let anyone make this service point a client elsewhere.
        redirect_slashes=False,
        # Swagger UI and ReDoc pages pull their scripts from a CDN: /docs only when asked for, no ReDoc.
        docs_url="/docs" if settings.enable_docs else None,
        redoc_url=None,
        # Metrics and logs are ours (Prometheus, JSON lines); FastAPI's OpenTelemetry layer stays off.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.service = state
    app.include_router(ops_router(state))
    app.include_router(predict_router(state))
    v2 = V2Service(state)
    app.include_router(build_v2_router(v2))
    _install_error_handlers(app)
    routes = {"/healthz", "/readyz", "/model", "/metrics", "/predict", "/openapi.json"}
    if settings.enable_docs:
        routes.add("/docs")
    routes |= v2.paths()
    lean = lean_routes(state)
    lean[("POST", v2.infer_path)] = v2.lean_infer()
    for mount in mounts:
        extra = mount(state)
        lean.update(extra)
        routes.update(path for _, path in extra)
    app.state.lean_routes = lean
    # Added first, so it runs inside the request context: a raw endpoint's request gets its id,
    # access-log line and metrics like any other.
    app.add_middleware(RawRoutes, routes=lean)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, routes=routes)
    install_openapi(app, state)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (`api.app:app_from_env`, factory=True): settings from LOCKSTEP_* variables."""
    return create_app(Settings())
