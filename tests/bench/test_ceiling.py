"""bench.ceiling: the benchmark's ceiling route, mounted through api.app's hook and absent from the
production app."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from bench.ceiling import CEILING_PATH, ceiling_routes
from harness import DEFAULT
from tests.api.support import TestClient


def example() -> dict[str, Any]:
    metadata = DEFAULT.metadata_document()
    return {f["name"]: metadata["example"][f["name"]] for f in metadata["features"]}


def test_ceiling_route_validates_like_predict() -> None:
    with TestClient(create_app(DEFAULT.settings(), mounts=[ceiling_routes])) as client:
        assert client.post(CEILING_PATH, json={"instances": [example()]}).json() == {"ok": True}
        refused = client.post(CEILING_PATH, json={"instances": [{}]})
        assert refused.status_code == 422
        # The same refusal as /predict gives, in the same envelope.
        predicted = client.post("/predict", json={"instances": [{}]}).json()
        assert refused.json()["error"]["errors"] == predicted["error"]["errors"]


def test_the_production_app_has_no_ceiling_route() -> None:
    app = create_app(DEFAULT.settings())
    with TestClient(app) as plain:
        assert plain.post(CEILING_PATH, json={}).status_code == 404
        assert CEILING_PATH not in plain.get("/openapi.json").json()["paths"]
