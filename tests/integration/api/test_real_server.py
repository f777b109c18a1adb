"""The service as deployed: `python -m api` with several workers, and its healthcheck command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson
import pytest

from harness import DEFAULT, running_server


def healthcheck(port: int) -> int:
    env = {**os.environ, "LOCKSTEP_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "api.healthcheck"], env=env, capture_output=True, timeout=30
    ).returncode


def predictions_counted(port: int) -> float:
    """lockstep_http_requests_total for 200s from POST /predict, as one scrape of /metrics reports it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    [count] = re.findall(
        r'lockstep_http_requests_total\{method="POST",route="/predict",status="200"\} (\S+)', text
    )
    return float(count)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_workers_share_metrics_and_the_healthcheck_follows_readiness(example: dict[str, Any]) -> None:
    body = orjson.dumps({"instances": [example]})
    with running_server(DEFAULT, LOCKSTEP_WORKERS="2") as server:
        process, port = server.process, server.port
        assert healthcheck(port) == 0
        for _ in range(12):  # new connection each time: the kernel spreads them over both workers
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert reply.status == 200
        # Summed over the workers, whichever answers the scrape. A request is counted just after its
        # answer is sent (the duration covers the whole send), so the last one may land a moment later.
        deadline = time.monotonic() + 5
        while (count := predictions_counted(port)) != 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count == 12
        process.terminate()
        process.wait(timeout=60)
    assert healthcheck(port) == 1
