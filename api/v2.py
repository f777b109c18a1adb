"""The Open Inference Protocol (KServe "V2", Triton and Seldon's REST API) beside POST /predict.

Routes: GET /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{v}],
.../ready, and POST .../infer. The model's name is `Settings.v2_model_name`; its version is the model
md5, as /predict reports it. Errors are the protocol's `{"error": "..."}` (plus the named problems
and request id /predict gives): 400 for a bad request, 404 for an unknown model or version.
Bodies follow the specification (kserve/open-inference-protocol, specification/protocol/
inference_rest.md and open_inference_rest.yaml); tests/api/test_v2.py checks them against it.

An infer request carries either one tensor per feature ([N] or [N, 1]; numbers as FP*/INT*/UINT*,
categories as BYTES; null is a missing value, as in /predict), or, for a model whose features are all
numeric, one [N, F] numeric tensor in feature order (any name: MLServer's and Triton's clients name
it freely). BOOL and BYTES are never read as numbers, and a mixed model has no single-tensor form,
since a V2 tensor has one datatype. Outputs: `label` (BYTES [N]) and `probabilities` (FP64 [N, C],
classes as in GET /model) for a classifier, `value` (FP64 [N]) for a regressor; `outputs` in the
request selects among them.

The codec (api/v2_codec.py) turns the tensors into the same `Batch` /predict builds (missing-value
and unknown-category counts included), scored by the same `score(batch)`, counted the same way. A
flat FP64 `data` list goes to numpy in one call: no per-row objects on the way.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Receive, Scope

from api.body import load_json, read_json_body
from api.dense_json import v2_request
from api.errors import ClientError, error_body, safe_text
from api.raw import raw_endpoint
from api.request_context import request_context, request_id_of
from api.state import ServiceState
from api.tokens import BodyTokens
from api.v2_codec import DATATYPES, FLOAT_TYPES, JSON, V2Codec, bad_request


class V2Service:
    """The V2 endpoints of one app: they answer from the state's model, once the lifespan loaded it."""

    def __init__(self, state: ServiceState):
        self.state = state
        self.name = state.settings.v2_model_name
        self._codec: V2Codec | None = None

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.name}/infer"

    def paths(self) -> set[str]:
        """Concrete paths, for the request metrics' route label."""
        base = f"/v2/models/{self.name}"
        return {"/v2", "/v2/health/live", "/v2/health/ready", base, f"{base}/ready", self.infer_path}

    def codec(self, name: str, version: str | None = None) -> V2Codec:
        """The model's codec; 404 for another name or version, 400 (the protocol's "not ready") unloaded."""
        if name != self.name:
            message = f"unknown model {safe_text(name)!r}: this server has {self.name!r}"
            raise ClientError(404, "model_not_found", message)
        model = self.state.model
        if model is None:
            raise ClientError(400, "not_ready", f"model {self.name!r} is not ready")
        if version is not None and version != model.version:
            message = f"model {self.name!r} has no version {safe_text(version)!r}; it serves {model.version}"
            raise ClientError(404, "version_not_found", message)
        if self._codec is None or self._codec.model is not model:
            self._codec = V2Codec(model, self.name)
        return self._codec

    async def infer(self, scope: Scope, receive: Receive, name: str, version: str | None = None) -> bytes:
        codec = self.codec(name, version)
        body = await read_json_body(_assume_json(scope), receive, self.state.settings.max_body_bytes)
        tokens = BodyTokens.of(body)
        excess = tokens.excess(body, codec.max_strings, codec.max_values)
        if excess:
            raise bad_request(f"{excess} this model's largest request")
        # Float tensors' numbers straight to float64 when the body is sure; else orjson, else the
        # standard parser, which reads NaN and Infinity so they are refused by name.
        doc = v2_request(body, FLOAT_TYPES)
        strict = doc is not None
        if doc is None:
            doc, strict = load_json(body)
        batch, outputs = codec.decode(doc, tokens if strict else None)
        scores = await codec.model.score(batch)
        self.state.metrics.observe_predictions(batch, scores.labels)
        context = request_context(scope)
        if context is not None:
            context.rows = batch.rows
        request_id = doc.get("id") if "id" in doc else (context.request_id if context else None)
        return codec.encode(scores, outputs, batch.rows, request_id)

    def lean_infer(self) -> ASGIApp:
        """POST /v2/models/{name}/infer as raw ASGI, dispatched before FastAPI's routing (as /predict is)."""
        return raw_endpoint(lambda scope, receive: self.infer(scope, receive, self.name), "v2")


def _assume_json(scope: Scope) -> Scope:
    """V2 clients (Triton's among them) may send a JSON body with no Content-Type: read it as JSON."""
    if any(name == b"content-type" for name, _ in scope["headers"]):
        return scope
    return {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}


def _answer(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
# The protocol's InferenceRequest; which names, datatypes and shapes this model takes is in its
# metadata (GET /v2/models/{name}), and anything else is answered with a 400 naming it.
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "title": "InferenceRequest",
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                        },
                    },
                },
            }
        }
    },
}
_ERROR_SCHEMA = {
    "title": "V2Error",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: the protocol's error object for each refusal status."""
    return {
        status: {"description": "refused", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for status in statuses
    }


def build_v2_router(service: V2Service) -> APIRouter:
    """The V2 routes, bound to one V2Service; errors leave as the protocol's error object."""
    router = APIRouter(prefix="/v2", tags=["v2"])

    def refusal(request: Request, exc: ClientError) -> Response:
        return _answer(error_body(exc, request_id_of(request.scope), "v2"), exc.status)

    @router.get("")
    async def server_metadata() -> Response:
        """Server metadata: name, version and the protocol extensions supported (none)."""
        return _answer(orjson.dumps({"name": "lockstep", "version": "1", "extensions": []}))

    @router.get("/health/live")
    async def live() -> Response:
        """Liveness: 200 while the process serves HTTP."""
        return _answer(b'{"live":true}')

    @router.get("/health/ready", responses=_documented(400))
    async def ready() -> Response:
        """Readiness: 200 once the model is loaded; 400 before (the protocol's 4xx for false)."""
        # `ready`, as KServe, Triton and MLServer answer: the specification's text shows `live` here,
        # a copy of the liveness object (its OpenAPI file gives these probes no body at all).
        if service.state.model is None:
            return _answer(b'{"ready":false}', 400)
        return _answer(b'{"ready":true}')

    @router.get("/models/{name}", responses=_documented(400, 404))
    @router.get("/models/{name}/versions/{version}", responses=_documented(400, 404))
    async def model_metadata(request: Request, name: str, version: str | None = None) -> Response:
        """Model metadata: name, versions (the model md5), platform, input and output tensors."""
        try:
            return _answer(service.codec(name, version).metadata_document)
        except ClientError as exc:
            return refusal(request, exc)

    @router.get("/models/{name}/ready", responses=_documented(400, 404))
    @router.get("/models/{name}/versions/{version}/ready", responses=_documented(400, 404))
    async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
        """Model readiness: 200 when loaded, 400 before, 404 for another model or version."""
        try:
            codec = service.codec(name, version)
        except ClientError as exc:
            return refusal(request, exc)
        return _answer(orjson.dumps({"name": codec.name, "ready": True}))

    refusals = _documented(400, 404, 413, 415, 422)

    @router.post("/models/{name}/infer", responses=refusals, openapi_extra={"requestBody": _INFER_BODY})
    @router.post(
        "/models/{name}/versions/{version}/infer",
        responses=refusals,
        openapi_extra={"requestBody": _INFER_BODY},
    )
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        """Inference: one tensor per feature, or one [N, F] numeric tensor; label/probabilities or value."""
        # The configured model's unversioned path is answered by the lean handler before routing.
        try:
            return _answer(await service.infer(request.scope, request.receive, name, version))
        except ClientError as exc:
            return refusal(request, exc)

    return router
