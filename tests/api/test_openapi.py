"""api.openapi: the OpenAPI document states the model's real features, with its example; and
schemathesis, generating requests from that document, finds no 5xx and no answer it does not
describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from api.app import create_app
from api.settings import Settings
from harness import Artifacts, make_settings
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


EXAMPLES_PER_OPERATION_AND_MODE = 60


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_conforming_responses(mode: GenerationMode) -> None:
    check_no_server_errors(make_settings(max_rows=50), mode)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_with_categorical_columns_and_gaps(
    mode: GenerationMode, trained: Callable[[str], Artifacts]
) -> None:
    check_no_server_errors(trained("penguins-forest").settings(max_rows=50), mode)


def check_no_server_errors(app_settings: Settings, mode: GenerationMode) -> None:
    app = create_app(app_settings)
    with TestClient(app):  # runs the lifespan: the document is built from the loaded model
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # An Err (an operation the schema cannot describe) has no .ok(): the test fails on it.
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {op.label for op in operations} >= {"POST /predict", "GET /model", "GET /readyz"}
        if mode is GenerationMode.NEGATIVE:  # operations without inputs have nothing to make invalid
            operations = [op for op in operations if op.method.upper() == "POST"]
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                response = case.call_and_validate()
                assert response.status_code < 500

            check()
