"""Client-error type and the one builder of the JSON error body every 4xx/5xx response uses."""

from typing import Any, Literal

import orjson

# Enough to show a client what is wrong without letting a bad batch make a huge error body.
MAX_REPORTED_ERRORS = 20


def safe_text(value: object, limit: int = 80) -> str:
    """Client-supplied text made safe for a JSON body: valid UTF-8 (lone surrogates escaped), bounded.

    A container is summarised, never rendered: str() of a client's array costs its whole size (and
    fails past the recursion limit for a deep one) before any truncation could help.
    """
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(row: int | None, field: str | None, message: str) -> dict[str, Any]:
    """One entry of an error body: which row (0-based) and which field, or null when not applicable."""
    return {"row": row, "field": None if field is None else safe_text(field), "message": message}


class ClientError(Exception):
    """A request the service refuses with a 4xx status and a JSON body naming what is wrong."""

    def __init__(self, status: int, code: str, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = problems if problems is not None else [problem(None, None, message)]


ErrorFormat = Literal["lockstep", "v2"]


def error_body(error: ClientError, request_id: str | None, protocol: ErrorFormat = "lockstep") -> bytes:
    """The one error body, in either format:
    - lockstep's envelope: {"error": {status, code, message, errors: [{row, field, message}], request_id}};
    - V2's (the Open Inference Protocol's `{"error": "..."}`; the rest are extra keys clients may
      ignore): {"error": message, code, errors, request_id}.
    """
    problems = error.problems[:MAX_REPORTED_ERRORS]
    if protocol == "v2":
        return orjson.dumps(
            {"error": error.message, "code": error.code, "errors": problems, "request_id": request_id}
        )
    envelope = {"status": error.status, "code": error.code, "message": error.message}
    return orjson.dumps({"error": envelope | {"errors": problems, "request_id": request_id}})


# Raised by every route that needs the model before the lifespan has loaded it.
NOT_READY = ClientError(503, "not_ready", "model not loaded")
