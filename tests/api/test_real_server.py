"""The service as deployed: `python -m api` with several workers, and its healthcheck command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from typing import Any

import orjson
import pytest

from tests.api.support import DEFAULT
from tests.helpers import running_server


def healthcheck(port: int) -> int:
    env = {**os.environ, "LOCKSTEP_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "api.healthcheck"], env=env, capture_output=True, timeout=30
    ).returncode


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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        [count] = re.findall(
            r'lockstep_http_requests_total\{method="POST",route="/predict",status="200"\} (\S+)', text
        )
        assert float(count) == 12  # summed over the workers, whichever answered the scrape
        process.terminate()
        process.wait(timeout=60)
    assert healthcheck(port) == 1
