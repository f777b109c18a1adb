"""lockstep prediction service: a FastAPI app serving the DVC-tracked model.

Importing this package does nothing: `create_app` is resolved lazily so that light
entry points (`python -m api.healthcheck`) do not pay for FastAPI and numpy.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(name)
