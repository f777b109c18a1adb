"""HTTP handlers. They close over the app's ServiceState rather than looking it up per request."""

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import handlers
from api.errors import ClientError
from api.state import ServiceState

JSON = "application/json"
CEILING_PATH = "/_bench/ceiling"
_NOT_READY = ClientError(503, "not_ready", "model not loaded")


def build_router(state: ServiceState) -> APIRouter:
    """All routes of the service, bound to one ServiceState."""
    router = APIRouter()

    @router.get("/healthz", tags=["ops"])
    async def healthz() -> Response:
        """Liveness: the process is up and serving HTTP."""
        return Response(b'{"status":"ok"}', media_type=JSON)

    @router.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        """Readiness: the model has been verified against dvc.lock and loaded."""
        if state.model is None:
            return Response(b'{"status":"not ready"}', status_code=503, media_type=JSON)
        return Response(
            orjson.dumps({"status": "ready", "model_version": state.model.version}), media_type=JSON
        )

    @router.get("/model", tags=["model"])
    async def model_info() -> Response:
        """Served model: version (md5), training params, metrics, features, library versions, lock hashes."""
        if state.model is None:
            raise _NOT_READY
        return Response(state.model_document, media_type=JSON)

    @router.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus metrics in text exposition format."""
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @router.post("/predict", tags=["model"])
    async def predict(request: Request) -> Response:
        """Predict label and class probabilities for one or more instances (named or positional)."""
        # Normally answered by api.lean before routing; this route defines its OpenAPI entry.
        return Response(await handlers.predict(state, request.scope, request.receive), media_type=JSON)

    if state.settings.enable_ceiling_route:

        @router.post(CEILING_PATH, include_in_schema=False)
        async def ceiling(request: Request) -> Response:
            """Benchmark ceiling: the same body reading and validation as /predict, then a constant."""
            return Response(await handlers.ceiling(state, request.scope, request.receive), media_type=JSON)

    return router
