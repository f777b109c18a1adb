"""api.body: the body reader enforces its byte limit while reading, drains what clients send before
they read the answer, and refuses a declared oversize body without reading it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


def test_the_limit_is_enforced_while_reading() -> None:
    """Past the limit the reader keeps nothing, drops the rest up to DRAIN_FACTOR x the limit, then stops."""
    from api.body import DRAIN_FACTOR, read_json_body
    from api.errors import ClientError

    served = 0

    async def receive() -> dict[str, Any]:
        nonlocal served
        served += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    scope = {"headers": [(b"content-type", b"application/json")]}
    with pytest.raises(ClientError) as refused:
        asyncio.run(read_json_body(scope, receive, limit=2500))
    assert refused.value.status == 413
    assert served == DRAIN_FACTOR * 2500 // 1000 + 1  # 3 chunks to pass the limit, 8 more discarded


def test_a_declared_oversize_body_within_the_drain_bound_is_read_and_dropped() -> None:
    """So that clients which send the whole body before reading (urllib) get the 413, not a reset."""
    from api.body import read_json_body
    from api.errors import ClientError

    chunks = [b"x" * 1000] * 3

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop(), "more_body": bool(chunks)}

    scope = {"headers": [(b"content-type", b"application/json"), (b"content-length", b"3000")]}
    with pytest.raises(ClientError) as refused:
        asyncio.run(read_json_body(scope, receive, limit=1000))
    assert (refused.value.status, refused.value.code) == (413, "body_too_large")
    assert chunks == []


def test_declared_oversize_is_refused_before_reading() -> None:
    from api.body import read_json_body
    from api.errors import ClientError

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    # Beyond DRAIN_FACTOR x the limit: answered at once, nothing read.
    scope = {"headers": [(b"content-type", b"application/json"), (b"content-length", b"999999")]}
    with pytest.raises(ClientError) as refused:
        asyncio.run(read_json_body(scope, receive, limit=1000))
    assert refused.value.status == 413
