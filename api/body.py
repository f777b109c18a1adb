"""Reads a JSON request body, refusing wrong content types (415) and oversize bodies (413) early."""

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from api.errors import ClientError, problem

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
    chunks: list[bytes] = []
    size = 0
    while True:
        received = await receive()
        if received["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = received.get("body", b"")
        size += len(chunk)
        if size > limit:  # chunked uploads carry no Content-Length: enforce the limit as bytes arrive
            chunks.clear()
            if received.get("more_body", False):
                await _discard_rest(receive, size, DRAIN_FACTOR * limit)
            raise _too_large(limit)
        chunks.append(chunk)
        if not received.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
