"""api.request_context through TestClient: request ids, the access log, the request metrics' labels."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.support import TestClient


def test_request_id_is_echoed_or_generated(client: TestClient, example: dict[str, Any]) -> None:
    echoed = client.post("/predict", json={"instances": [example]}, headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    # A header value unsafe for logs is replaced, not echoed.
    unsafe = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    spaced = client.get("/healthz", headers={"X-Request-ID": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", spaced.headers["x-request-id"])


def test_error_bodies_carry_the_request_id(client: TestClient) -> None:
    reply = client.post("/predict", json={"instances": []}, headers={"X-Request-ID": "req-42"})
    assert reply.status_code == 422
    assert reply.json()["error"]["request_id"] == "req-42"
    assert reply.headers["x-request-id"] == "req-42"


def test_access_log_is_one_json_record_per_request(
    client: TestClient, example: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="api.access"):
        client.post("/predict", json={"instances": [example, example]}, headers={"X-Request-ID": "log-me"})
    [record] = [r for r in caplog.records if r.name == "api.access"]
    assert record.__dict__["request_id"] == "log-me"
    assert record.__dict__["status"] == 200
    assert record.__dict__["rows"] == 2
    assert record.__dict__["path"] == "/predict"


def test_unknown_paths_share_one_metric_label(client: TestClient) -> None:
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/another-unknown").status_code == 404
    text = client.get("/metrics").text
    assert 'route="<other>"' in text
    assert "/no/such/path" not in text
