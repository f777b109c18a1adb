"""Fixtures for the service's module tests: an app with its model loaded, for raw ASGI calls (the
artifacts, app clients and model families every level shares are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from tests.api.support import TestClient


@pytest.fixture(scope="module")
def ready_app(default_artifacts: Any) -> Iterator[Any]:
    """The ASGI app with its model loaded (lifespan run by a TestClient), for raw ASGI calls."""
    app = create_app(default_artifacts.settings())
    with TestClient(app):
        yield app
