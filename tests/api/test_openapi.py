"""api.openapi: the OpenAPI document states the model's real features, with its example."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from harness import make_settings
from tests.api.support import TestClient


def test_openapi_documents_the_real_features_with_the_example(
    client: TestClient, feature_names: list[str], example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    named = schemas["NamedInstance"]
    assert list(named["properties"]) == feature_names
    for feature in metadata["features"]:
        wanted = ["number", "null"] if feature["kind"] == "numeric" else ["string", "null"]
        assert named["properties"][feature["name"]]["type"] == wanted
    assert named["required"] == feature_names
    assert named["additionalProperties"] is False
    assert named["example"] == example
    assert (
        schemas["PositionalInstance"]["minItems"]
        == schemas["PositionalInstance"]["maxItems"]
        == len(feature_names)
    )
    assert list(schemas["Prediction"]["properties"]["probabilities"]["properties"]) == metadata["classes"]
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["named"]["value"] == {"instances": [example]}
    assert set(doc["paths"]["/predict"]["post"]["responses"]) >= {"200", "400", "413", "415", "422"}
    assert "/_bench/ceiling" not in doc["paths"]


def test_docs_pages_are_off_unless_enabled(client: TestClient) -> None:
    """Swagger UI's page loads its scripts from a CDN without integrity hashes: not served by default
    (LOCKSTEP_ENABLE_DOCS=1 turns /docs on); ReDoc (the same) never."""
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    with TestClient(create_app(make_settings(enable_docs=True))) as enabled:
        page = enabled.get("/docs")
        assert page.status_code == 200
        assert "swagger-ui" in page.text
        assert enabled.get("/redoc").status_code == 404
