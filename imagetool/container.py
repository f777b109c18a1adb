"""Start the image hardened, as `make run` does, and wait until the service is ready."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# As `make run` (mk/image.mk): read-only root, no capabilities or new privileges, memory and pids
# caps; the image's USER is non-root.
HARDENED_FLAGS = (
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--memory",
    "336m",
    "--memory-swap",
    "336m",
    "--pids-limit",
    "128",
)


@dataclass(frozen=True)
class Container:
    id: str
    url: str
    ready_seconds: float  # from `docker run` to the first 200 from /readyz


def wait_ready(url: str, cid: str, timeout: float = 30.0) -> float:
    """Poll /readyz until it answers 200; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.01)
    logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, check=False)
    raise TimeoutError(f"container not ready within {timeout}s:\n{logs.stdout}\n{logs.stderr}")


@contextmanager
def hardened_container(tag: str, timeout: float = 30.0) -> Iterator[Container]:
    """Run `tag` hardened on a free loopback port; removed again on exit."""
    started = time.monotonic()
    cid = subprocess.run(
        ["docker", "run", "-d", *HARDENED_FLAGS, "-p", "127.0.0.1::8000", tag],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        mapping = subprocess.run(
            ["docker", "port", cid, "8000/tcp"], capture_output=True, text=True, check=True
        ).stdout
        url = f"http://127.0.0.1:{mapping.split(':')[-1].strip()}"
        ready = wait_ready(url, cid, timeout)
        yield Container(cid, url, ready - started)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
