"""`python -m api`: check the artifacts, then serve with uvicorn (uvloop + httptools with read deadlines)."""

import functools
import os
import shutil
import sys
import tempfile

from pydantic import ValidationError


def main(app: str = "api.app:app_from_env") -> int:
    """Refuse to start, with one line on stderr, if the settings or the model artifacts are bad.

    `app`: the uvicorn factory to serve (the benchmark serves a variant with another runner).
    """
    from api.model import load_model
    from api.settings import Settings
    from contract import ContractError

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(
            f"lockstep: bad setting LOCKSTEP_{str(first['loc'][0]).upper()}: {first['msg']}", file=sys.stderr
        )
        return 2
    try:
        # Same checks the lifespan repeats per worker; here they fail fast with one line, no traceback.
        load_model(settings)
    except ContractError as exc:
        print(f"lockstep: refusing to start: {exc}", file=sys.stderr)
        return 2

    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers are separate processes; prometheus_client merges their metrics through files here.
        try:
            metrics_dir = tempfile.mkdtemp(prefix="lockstep-metrics-")
        except OSError as exc:
            print(
                f"lockstep: LOCKSTEP_WORKERS>1 needs a writable TMPDIR or PROMETHEUS_MULTIPROC_DIR: {exc}",
                file=sys.stderr,
            )
            return 2
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    import uvicorn

    from api.logs import log_config
    from api.read_timeouts import ReadTimeoutProtocol

    # httptools with read deadlines and a connection limit; a partial pickles, so workers get it too.
    protocol = functools.partial(
        ReadTimeoutProtocol,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=settings.max_connections,
    )

    try:
        uvicorn.run(
            app,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http=protocol,  # type: ignore[arg-type]
            lifespan="on",
            log_config=log_config(settings.log_level),
            log_level=settings.log_level,
            access_log=False,  # api.request_context writes one JSON line per request instead
            server_header=False,
            timeout_graceful_shutdown=settings.graceful_timeout_seconds,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
