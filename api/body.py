"""Reading a request's JSON body: the Content-Type and size checks before it is buffered (415, 413),
the buffering, and the parse (orjson, else the standard parser so NaN and Infinity can be refused by
row and field), with the name of a parsed value's JSON type for error messages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from api.errors import ClientError, problem


def json_type(value: Any) -> str:
    """JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def load_json(body: bytes) -> tuple[Any, bool]:
    """The parsed document, and whether it is strict JSON (else it has NaN/Infinity: the exact path
    only), or a 400 naming why it is not JSON.

    orjson first. Only what it refuses goes to the standard parser, which reads NaN, Infinity and
    1e999 so they can be refused by row and field. That parser also accepts what orjson rightly
    refuses, lone UTF-16 surrogates (as raw bytes, or as a \\uD800-\\uDFFF escape without its pair),
    which no later step can encode: they are refused here, so no key, id, category or parameter
    anywhere in a document carries one.
    """
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")  # strict: refuses encoded surrogates, which json.loads would pass
        doc = json.loads(text)  # accepts NaN, Infinity, -Infinity and 1e999, which orjson refuses
        if _SURROGATE_ESCAPE.search(body):
            # Paired escapes are joined into one code point; a lone one stays and cannot be encoded.
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        return doc, False
    except json.JSONDecodeError as exc:
        message = f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeError:
        message = "malformed JSON: a string is not valid Unicode (UTF-8 without lone surrogates)"
    except (ValueError, RecursionError) as exc:
        message = f"malformed JSON: {exc.__class__.__name__}"
    raise ClientError(400, "malformed_json", message, [problem(None, None, message)])


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# An oversize body is read and dropped, up to this many times the limit, before the 413 is sent.
# Clients such as urllib and requests send the whole body before they read the answer: a server
# that answers and closes while they are still sending makes them see a connection reset instead
# of the 413. Beyond the bound the 413 goes out at once (the read deadline bounds the time).
DRAIN_FACTOR = 4


def _headers_of_interest(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """Content-Type and Content-Length, scanning the raw header list once (names are lower-case)."""
    content_type = content_length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = value
    return content_type, content_length


async def _discard_rest(receive: Receive, received: int, bound: int) -> None:
    """Read and drop the rest of a body while at most `bound` bytes have arrived in all."""
    while received <= bound:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _too_large(limit: int) -> ClientError:
    message = f"request body exceeds {limit} bytes"
    return ClientError(413, "body_too_large", message, [problem(None, None, message)])


async def _chunks(receive: Receive) -> AsyncIterator[tuple[bytes, bool]]:
    """The body's chunks as they arrive, each with whether more follow."""
    while True:
        received = await receive()
        if received["type"] == "http.disconnect":
            raise ClientDisconnect()
        more = bool(received.get("more_body", False))
        yield received.get("body", b""), more
        if not more:
            return


async def _read_declared(receive: Receive, declared: int, limit: int) -> bytes:
    """A body of `declared` bytes (Content-Length, within the limit), written into one buffer as it
    arrives: at its peak a request holds its body once, not its chunks and their join besides."""
    body = bytearray(declared)
    size = 0
    with memoryview(body) as view:
        async for chunk, _ in _chunks(receive):
            if size + len(chunk) > declared:  # the server's framing forbids it; refuse, never grow
                raise _too_large(limit)
            view[size : size + len(chunk)] = chunk
            size += len(chunk)
    del body[size:]
    # A bytearray reads as bytes everywhere the body goes (orjson, numpy, bytes methods, re).
    return body  # type: ignore[return-value]


async def read_json_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, counted while it arrives so an oversize one is refused before it is buffered."""
    content_type, content_length = _headers_of_interest(scope)
    media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media_type != b"application/json":
        shown = content_type.decode("latin-1") if content_type else "none"
        message = f"Content-Type must be application/json, got {shown}"
        raise ClientError(415, "unsupported_media_type", message, [problem(None, "Content-Type", message)])
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        if int(content_length) <= DRAIN_FACTOR * limit:
            await _discard_rest(receive, 0, DRAIN_FACTOR * limit)
        raise _too_large(limit)
    if content_length is not None and content_length.isdigit():
        return await _read_declared(receive, int(content_length), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk, more in _chunks(receive):
        size += len(chunk)
        if size > limit:  # chunked uploads carry no Content-Length: enforce the limit as bytes arrive
            chunks.clear()
            if more:
                await _discard_rest(receive, size, DRAIN_FACTOR * limit)
            raise _too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
