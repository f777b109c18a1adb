"""api.request_context through TestClient: request ids, the access log, the request metrics' labels,
an unexpected error's 500 envelope and a client gone mid-body (499)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from api.app import create_app
from tests.api.support import TestClient, assert_error


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


@pytest.mark.parametrize("via", ["lean", "fastapi"])
def test_an_unexpected_error_is_a_500_envelope_with_the_request_id(
    default_artifacts: Any, example: dict[str, Any], via: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(default_artifacts.settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        if via == "fastapi":
            app.state.lean_routes.clear()
        model = app.state.service.model

        def broken(batch: Any) -> Any:
            raise RuntimeError("model exploded")

        model.runner.predict = broken  # a fault in the model, not in the code under test
        body = {"instances": [example]}
        assert_error(
            client.post("/predict", json=body, headers={"X-Request-ID": "boom-1"}),
            500,
            "internal_error",
            "boom-1",
        )
        error = assert_error(client.post("/predict", json=body), 500, "internal_error")
        assert error["message"] == "internal error"  # nothing of the exception leaks
        metrics = client.get("/metrics").text
    assert re.search(
        r'lockstep_http_requests_total\{method="POST",route="/predict",status="500"\} 2\.0', metrics
    )
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert [r.__dict__["request_id"] for r in logged] == ["boom-1", error["request_id"]]


def test_a_client_that_disconnects_mid_body_gets_nothing_and_is_counted_499(ready_app: Any) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"instances": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    asyncio.run(ready_app(scope, receive, send))
    assert sent == []
    text = ready_app.state.service.metrics.exposition().decode()
    assert re.search(
        r'lockstep_http_requests_total\{method="POST",route="/predict",status="499"\} 1\.0', text
    )


@pytest.mark.parametrize("method", ["PROPFIND", "MKCOL", "PURGE", "BREW"])
def test_unusual_methods_share_one_metrics_label(default_artifacts: Any, method: str) -> None:
    with TestClient(create_app(default_artifacts.settings())) as client:
        reply = client.request(method, "/predict")
        assert_error(reply, 405, "method_not_allowed")
        text = client.get("/metrics").text
    assert f'method="{method}"' not in text
    assert re.search(
        r'lockstep_http_requests_total\{method="<other>",route="/predict",status="405"\} 1\.0', text
    )
