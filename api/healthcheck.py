"""`python -m api.healthcheck`: exit 0 iff GET /readyz on the configured port answers 200.

Used as the image's HEALTHCHECK (the image has no curl). It reads LOCKSTEP_PORT and LOCKSTEP_HOST
directly instead of importing api.settings, so each probe costs milliseconds, not a pydantic import.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe readiness once; any error or non-200 answer is unhealthy."""
    host = os.environ.get("LOCKSTEP_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "", "::"):  # a wildcard bind is reachable on loopback
        host = "127.0.0.1"
    port = int(os.environ.get("LOCKSTEP_PORT", "8000"))
    url = f"http://{host}:{port}/readyz"
    try:
        with urllib.request.urlopen(
            url, timeout=float(os.environ.get("LOCKSTEP_HEALTHCHECK_TIMEOUT", "3"))
        ) as reply:
            healthy = reply.status == 200
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: {url} answered {reply.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
