"""Under `make run`'s own limits (336 MiB, no swap), the largest body of each kind the service
accepts (harness/bodies.py, at the default body limit) gets a 200 or a 4xx, never an OOM kill:
the container's OOM counter stays at zero, it keeps running, and it still answers."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from api.settings import Settings
from harness import REPO_ROOT, free_port
from harness.bodies import LARGEST, Model, post_status
from imagetool.ship.container import Container, made_run
from tests.api.support import deploy_memory_limits

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The container's memory cgroup, seen from inside it (cgroup v2, or v1's memory controller).
CGROUP_PROBE = """
import json, os
v2, v1 = "/sys/fs/cgroup", "/sys/fs/cgroup/memory"
def read(path):
    return open(path).read() if os.path.exists(path) else None
events = read(v2 + "/memory.events") or read(v1 + "/memory.oom_control") or ""
counts = dict(line.split() for line in events.splitlines() if len(line.split()) == 2)
peak = read(v2 + "/memory.peak") or read(v1 + "/memory.max_usage_in_bytes")
limit = read(v2 + "/memory.max") or read(v1 + "/memory.limit_in_bytes")
print(json.dumps({"oom_kill": int(counts.get("oom_kill", 0)), "peak": int(peak) if peak else None,
                  "limit": limit.strip() if limit else None}))
"""


@pytest.fixture(scope="module")
def bounded(request: pytest.FixtureRequest) -> Iterator[Container]:
    """A container of its own, started by `make run` itself (its memory and swap limits), of the
    session's build of this tree, or of LOCKSTEP_TEST_IMAGE (a tag already built from it)."""
    tag = os.environ.get("LOCKSTEP_TEST_IMAGE") or request.getfixturevalue("locked_image")
    with made_run(tag, f"lockstep-memory-{os.getpid()}", free_port()) as running:
        yield running


def cgroup(cid: str) -> dict[str, int | str | None]:
    out = subprocess.run(
        ["docker", "exec", cid, "python", "-c", CGROUP_PROBE], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, int | str | None] = json.loads(out)
    return result


def test_the_container_runs_under_the_make_run_memory_limit(bounded: Container) -> None:
    run_memory = deploy_memory_limits()["make run (imagetool/ship/container.py RUN_MEMORY)"]
    assert cgroup(bounded.id)["limit"] == str(int(run_memory * 2**20))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(LARGEST))
def test_the_largest_body_of_each_kind_is_answered_without_an_oom_kill(bounded: Container, kind: str) -> None:
    path, build = LARGEST[kind]
    metadata = json.loads((REPO_ROOT / "models/metadata.json").read_text())
    body = build(Model.of(metadata, Settings().max_rows), Settings().max_body_bytes)
    assert len(body) <= Settings().max_body_bytes
    status = post_status(bounded.url + path, body)
    assert status == 200 or 400 <= status < 500, status
    inspected = json.loads(
        subprocess.run(["docker", "inspect", bounded.id], capture_output=True, text=True, check=True).stdout
    )[0]["State"]
    assert inspected["Running"], inspected
    assert not inspected["OOMKilled"], inspected
    state = cgroup(bounded.id)
    assert state["oom_kill"] == 0, state
    with urllib.request.urlopen(f"{bounded.url}/healthz", timeout=10) as reply:
        assert reply.status == 200
    peak = state["peak"]
    print(f"\n{kind}: {status}, container peak so far {int(peak or 0) / 2**20:.0f} MiB")
