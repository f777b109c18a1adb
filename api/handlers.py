"""What POST /predict and the benchmark ceiling do, independent of how the request reached them.

Both the FastAPI routes (api.routes) and the lean ASGI handlers (api.lean) call these, so the
two ways in cannot drift apart.
"""

from starlette.types import Receive, Scope

from api.body import read_json_body
from api.errors import ClientError
from api.middleware import request_context
from api.predictions import check_finite, encode_predictions
from api.state import ServiceState

CEILING_BODY = b'{"ok":true}'
_NOT_READY = ClientError(503, "not_ready", "model not loaded")


async def predict(state: ServiceState, scope: Scope, receive: Receive) -> bytes:
    """Read, validate and score a /predict body; returns the response JSON or raises ClientError."""
    model = state.model
    if model is None:
        raise _NOT_READY
    batch = model.parser.parse(await read_json_body(scope, receive, state.settings.max_body_bytes))
    scores = await model.scorer.predict(batch)
    check_finite(scores)
    body = encode_predictions(model.version, model.classes, scores)
    state.metrics.observe_predictions(batch, scores.labels)
    context = request_context(scope)
    if context is not None:
        context.rows = batch.rows
    return body


async def ceiling(state: ServiceState, scope: Scope, receive: Receive) -> bytes:
    """The benchmark ceiling: the same reading and validation as predict, then a constant."""
    if state.model is None:
        raise _NOT_READY
    state.model.parser.parse(await read_json_body(scope, receive, state.settings.max_body_bytes))
    return CEILING_BODY
