"""Sending a complete JSON response on raw ASGI: the hot endpoints (api.raw) and the request-context
middleware's 500 (api.request_context) both answer this way."""

from starlette.types import Send


async def send_json(send: Send, status: int, body: bytes) -> None:
    """A complete JSON response: its start (content type and length) and its body."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
