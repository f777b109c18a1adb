"""Schemathesis against the app's own OpenAPI document: no 5xx, responses conform to the schema.

Bounded in count (examples per operation and generation mode) and in time (pytest timeout).
Hypothesis is driven directly rather than through schemathesis' pytest plugin, whose lazy
fixture-based loader does not work with this project's pytest version.
"""

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
