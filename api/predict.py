"""POST /predict: reading, validating and scoring a body, writing the answer.

The request reaches the core (`predict`) two ways. The lean way is a raw ASGI app per
route (`lean_routes`, api.raw), which the request-context middleware calls directly, before
FastAPI's routing. The routed way (`predict_router`) is the FastAPI
route, which defines the OpenAPI entry and answers when the lean mapping is emptied. Both call the
same core and give the same error envelope.
"""

from functools import lru_cache, partial

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Receive, Scope

from api.body import read_json_body
from api.errors import NOT_READY
from api.raw import raw_endpoint
from api.request_context import request_context
from api.runners import Scores
from api.state import ServiceState

JSON = "application/json"
# A single row costs less as Python objects for orjson than spliced; from two rows splicing wins,
# and for many rows those per-row objects (two dicts a row) would be most of an answer's cost.
_SPLICE_ROWS = 2


async def predict(state: ServiceState, scope: Scope, receive: Receive) -> bytes:
    """Read, validate and score a /predict body; returns the response JSON or raises ClientError."""
    model = state.model
    if model is None:
        raise NOT_READY
    batch = model.parser.parse(await read_json_body(scope, receive, state.settings.max_body_bytes))
    scores = await model.score(batch)
    body = encode_predictions(model.version, model.classes, scores)
    state.metrics.observe_predictions(batch, scores.labels)
    context = request_context(scope)
    if context is not None:
        context.rows = batch.rows
    return body


def lean_routes(state: ServiceState) -> dict[tuple[str, str], ASGIApp]:
    """(method, path) -> raw ASGI app for POST /predict."""
    return {("POST", "/predict"): raw_endpoint(partial(predict, state))}


def predict_router(state: ServiceState) -> APIRouter:
    """The FastAPI route of POST /predict, bound to one ServiceState."""
    router = APIRouter()

    @router.post("/predict", tags=["model"], name="predict")  # the name makes the operationId
    async def predict_route(request: Request) -> Response:
        """Predict label and class probabilities for one or more instances (named or positional)."""
        return Response(await predict(state, request.scope, request.receive), media_type=JSON)

    return router


def encode_predictions(version: str, classes: tuple[str, ...], scores: Scores) -> bytes:
    """{"model_version", "predictions": [{"label", "probabilities": {class: p}} | {"value"}]}."""
    rows = scores.rows
    if rows < _SPLICE_ROWS:
        return orjson.dumps({"model_version": version, "predictions": _prediction_objects(classes, scores)})
    head = b'{"model_version":' + orjson.dumps(version) + b',"predictions":['
    return head + _spliced_predictions(classes, scores, rows) + b"]}"


def _prediction_objects(classes: tuple[str, ...], scores: Scores) -> list[dict[str, object]]:
    if scores.probabilities is None:
        return [{"value": v} for v in ([] if scores.values is None else scores.values.tolist())]
    assert scores.labels is not None
    return [
        {"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
        for i, p in zip(scores.labels, scores.probabilities.tolist(), strict=True)
    ]


@lru_cache(maxsize=8)
def _fragments(classes: tuple[str, ...]) -> tuple[list[bytes], list[bytes]]:
    """Per label, the JSON before a row's first probability; per later class, the JSON before its own."""
    keys = [orjson.dumps(c) for c in classes]
    heads = [b'{"label":' + key + b',"probabilities":{' + keys[0] + b":" for key in keys]
    return heads, [b"," + key + b":" for key in keys]


def number_texts(numbers: np.ndarray) -> list[bytes]:
    """orjson's text of each float64, in order: the same bytes it writes for the Python floats
    (tested), written straight from the array."""
    flat = np.ascontiguousarray(numbers, dtype=np.float64).reshape(-1)
    return orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")


def _spliced_predictions(classes: tuple[str, ...], scores: Scores, rows: int) -> bytes:
    """The predictions array's items, byte for byte what orjson writes for `_prediction_objects`,
    spliced from fragments and orjson's own text of every number: no Python object per row."""
    pieces: list[bytes]
    if scores.probabilities is None:
        assert scores.values is not None
        pieces = [b'{"value":'] * (3 * rows)
        pieces[1::3] = number_texts(scores.values)
        pieces[2::3] = [b"},"] * rows
        pieces[-1] = b"}"
        return b"".join(pieces)
    assert scores.labels is not None
    width = len(classes)
    numbers = number_texts(scores.probabilities)
    heads, separators = _fragments(classes)
    step = 2 * width + 1  # per row: head, p0, (separator, p)..., closing
    pieces = [b"}},"] * (rows * step)
    pieces[0::step] = [heads[i] for i in scores.labels]
    for k in range(width):
        pieces[2 * k + 1 :: step] = numbers[k::width]
        if k:
            pieces[2 * k :: step] = [separators[k]] * rows
    pieces[-1] = b"}}"
    return b"".join(pieces)
