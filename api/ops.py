"""The operational routes: liveness, readiness, the served model's description and Prometheus metrics."""

import orjson
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import NOT_READY
from api.state import ServiceState

JSON = "application/json"


def ops_router(state: ServiceState) -> APIRouter:
    """GET /healthz, /readyz, /model and /metrics, bound to one ServiceState."""
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
            raise NOT_READY
        return Response(state.model_document, media_type=JSON)

    @router.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus metrics in text exposition format."""
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
