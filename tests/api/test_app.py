"""api.app's wiring: readiness and /predict answer 503 until the lifespan has loaded the model, and a
trailing slash is a 404, never a redirect."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from harness import make_settings
from tests.api.support import TestClient, assert_error


def test_before_the_model_is_loaded_readiness_and_predict_answer_503(example: dict[str, Any]) -> None:
    client = TestClient(create_app(make_settings()))  # no `with`: the lifespan has not loaded the model
    ready = client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    assert (ready.status_code, ready.json(), ready.headers["x-request-id"]) == (
        503,
        {"status": "not ready"},
        "probe-1",
    )
    assert_error(client.post("/predict", json={"instances": [example]}), 503, "not_ready")
    assert_error(client.get("/model"), 503, "not_ready")
    assert client.get("/healthz").status_code == 200  # alive, only not ready


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/healthz/"), ("GET", "/readyz/"), ("POST", "/predict/")]
)
def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_client_host(
    client: TestClient, method: str, path: str
) -> None:
    reply = client.request(method, path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert_error(reply, 404, "not_found")
    assert "location" not in reply.headers
