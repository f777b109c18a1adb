"""The benchmark's ceiling, mounted on the service by the bench and never by `python -m api`:
POST /_bench/ceiling reads and validates a body exactly as POST /predict does, then answers a
constant, so `make bench` can show what scoring and answering add to a request.

`python -m bench.ceiling` serves the app with it (LOCKSTEP_* settings, as `python -m api`).
"""

import sys
from collections.abc import Mapping
from functools import partial

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope

from api.app import create_app
from api.body import read_json_body
from api.errors import NOT_READY
from api.raw import raw_endpoint
from api.settings import Settings
from api.state import ServiceState

CEILING_PATH = "/_bench/ceiling"
CEILING_BODY = b'{"ok":true}'


async def ceiling(state: ServiceState, scope: Scope, receive: Receive) -> bytes:
    """The same reading and validation as api.predict.predict, then a constant."""
    if state.model is None:
        raise NOT_READY
    state.model.parser.parse(await read_json_body(scope, receive, state.settings.max_body_bytes))
    return CEILING_BODY


def ceiling_routes(state: ServiceState) -> Mapping[tuple[str, str], ASGIApp]:
    """The mount (api.app.Mount) of the ceiling route."""
    return {("POST", CEILING_PATH): raw_endpoint(partial(ceiling, state))}


def app_from_env() -> FastAPI:
    """uvicorn factory, as api.app:app_from_env, with the ceiling mounted."""
    return create_app(Settings(), mounts=[ceiling_routes])


if __name__ == "__main__":
    from api.__main__ import main

    sys.exit(main(app="bench.ceiling:app_from_env"))
