"""The service tests' client: FastAPI's TestClient (the artifacts and settings are in harness/)."""

from __future__ import annotations

import warnings

from starlette.exceptions import StarletteDeprecationWarning

# Starlette 1.x prefers httpx2 for its TestClient and warns (an error under this project's
# filterwarnings) when only httpx is installed; the client works the same either way.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]
