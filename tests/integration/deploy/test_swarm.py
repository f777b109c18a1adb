"""deploy/compose.yaml as a Docker Swarm stack on this engine (single-node swarm on loopback):
hardened like `make run`, its helper images equal to image.lock's, scraped by Prometheus, and
rolled from one digest to another and back, or a replica SIGKILLed, under steady load from `hey`
through HAProxy with zero failed requests."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.ship.registry import OciTarball, Registry, push_image
from tests.integration.deploy.conftest import Stack, run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RATE = 200  # requests per second: steady, well under one replica's capacity
RESULTS = REPO_ROOT / "build/deploy/rolling_update.json"
KILLED = RESULTS.with_name("replica_killed.json")
PROMETHEUS = "http://127.0.0.1:9090"  # on its container's loopback only


@dataclass
class Load:
    requests: int
    failed: int
    p99_ms: float
    seconds: float
    statuses: dict[str, int]


class SteadyLoad:
    """`hey` at RATE req/s of one-row /predict until stopped (SIGINT: it then prints its report)."""

    def __init__(self, stack: Stack, body: Path) -> None:
        self.proc = subprocess.Popen(
            ["hey", "-z", "600s", "-c", "4", "-q", str(RATE // 4), "-m", "POST", "-T", "application/json",
             "-D", str(body), f"{stack.url}/predict"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.started = time.monotonic()

    def __enter__(self) -> SteadyLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a failed step: no hey left behind for 600 s
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> Load:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        return parse_hey(out, time.monotonic() - self.started)


def parse_hey(report: str, seconds: float) -> Load:
    """Every answered request is under "Status code distribution", every other one under
    "Error distribution" (refused, reset, timed out)."""
    statuses = {code: int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)}
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+(?!\d+ responses)", report, re.M))
    p99 = re.search(r"99% in ([0-9.]+) secs", report)
    assert statuses, f"no status codes in hey's report:\n{report}"
    assert p99, f"no 99th percentile in hey's report:\n{report}"
    failed = errors + sum(n for code, n in statuses.items() if code != "200")
    return Load(sum(statuses.values()) + errors, failed, float(p99.group(1)) * 1000, seconds, statuses)


@pytest.fixture(scope="session")
def predict_body(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    example = json.loads((repo_root / "models/metadata.json").read_text())["example"]
    body = tmp_path_factory.mktemp("load") / "predict.json"
    body.write_text(json.dumps({"instances": [example]}))
    return body


def test_stack_file_is_valid_and_pins_the_service_by_digest(repo_root: Path) -> None:
    """By the index over both platforms: each node pulls its own manifest."""
    proc = run(["docker", "stack", "config", "-c", str(repo_root / "deploy/compose.yaml")])
    locked = json.loads((repo_root / "image.lock").read_text())["index"]["digest"]
    assert f"/lockstep@{locked}" in proc.stdout


def test_stack_images_are_image_locks(stack_images: dict[str, str], repo_root: Path) -> None:
    """Built again for this session (on a fresh CI engine: from nothing), the digests are the ones
    image.lock's `stack` records."""
    locked = json.loads((repo_root / "image.lock").read_text())["stack"]["digests"]
    assert {name: stack_images[f"digest:{name}"] for name in locked} == locked


def test_api_tasks_run_hardened_like_make_run(stack: Stack) -> None:
    label = f"label=com.docker.swarm.service.name={stack.service('api')}"
    ids = run(["docker", "ps", "-q", "--filter", label])
    [first, *_] = ids.stdout.split()
    config = json.loads(run(["docker", "inspect", first]).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert config["HostConfig"]["CapDrop"] == ["ALL"]
    assert config["State"]["Health"]["Status"] == "healthy"


def test_prometheus_scrapes_every_api_replica(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while True:
        reply = json.loads(stack.loopback_get("prometheus", f"{PROMETHEUS}/api/v1/targets?state=active"))
        assert isinstance(reply, dict)
        targets = reply["data"]["activeTargets"]
        if len(targets) == 2 and all(t["health"] == "up" for t in targets):
            break
        assert time.monotonic() < deadline, f"Prometheus targets not 2 x up after 30 s: {targets}"
        time.sleep(1)
    query = json.loads(
        stack.loopback_get("prometheus", f"{PROMETHEUS}/api/v1/query?query=up%7Bjob%3D%22lockstep%22%7D")
    )
    assert isinstance(query, dict)
    assert [r["value"][1] for r in query["data"]["result"]] == ["1", "1"]


def test_rolling_update_to_another_digest_and_back_fails_no_request(
    stack: Stack,
    registry_server: Registry,
    pushed: str,
    params_changed_image: OciTarball,
    predict_body: Path,
) -> None:
    """start-first, healthcheck-gated: under steady load, roll to the params-changed digest, then
    `docker service rollback`; hey must see only 200s. The figures go to build/deploy/."""
    other = push_image(registry_server, params_changed_image, params_changed_image.digest)
    before = stack.model_version()

    with SteadyLoad(stack, predict_body) as load:
        time.sleep(2)
        t0 = time.monotonic()
        stack.deploy(other)
        roll_seconds = time.monotonic() - t0
        time.sleep(2)
        roll = load.stop()
    rolled_to = stack.model_version()

    with SteadyLoad(stack, predict_body) as load:
        time.sleep(2)
        t0 = time.monotonic()
        run(["docker", "service", "rollback", "--detach=false", stack.service("api")])
        rollback_seconds = time.monotonic() - t0
        time.sleep(2)
        back = load.stop()

    figures = {
        "rate_per_second": RATE,
        "roll": {**asdict(roll), "update_seconds": round(roll_seconds, 1)},
        "rollback": {**asdict(back), "update_seconds": round(rollback_seconds, 1)},
        "from": pushed,
        "to": other,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    assert rolled_to != before, "the roll did not change the model the stack serves"
    assert stack.model_version() == before, "the rollback did not restore the first model"
    figures["proxy"] = stack.retries()
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    assert (roll.failed, back.failed) == (0, 0), figures
    assert roll.requests > RATE * 10, figures
    assert back.requests > RATE * 10, figures
    image = run(["docker", "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                 stack.service("api")]).stdout  # fmt: skip
    assert image.strip().endswith(f"@{pushed}")


def running_api_containers(stack: Stack) -> list[str]:
    label = f"label=com.docker.swarm.service.name={stack.service('api')}"
    return run(["docker", "ps", "-q", "--filter", label, "--filter", "health=healthy"]).stdout.split()


def test_a_killed_replica_costs_no_request(stack: Stack, predict_body: Path) -> None:
    """SIGKILL one replica under load: what it had not answered is retried on the other one by
    HAProxy (nothing of an answer was sent), and swarm replaces the task."""
    [victim, *_] = running_api_containers(stack)
    with SteadyLoad(stack, predict_body) as load:
        time.sleep(2)
        run(["docker", "kill", victim])
        deadline = time.monotonic() + 60
        while len(running_api_containers(stack)) < 2:
            assert time.monotonic() < deadline, "swarm did not replace the killed replica within 60 s"
            time.sleep(0.5)
        time.sleep(2)
        result = load.stop()
    stats = stack.retries()
    KILLED.write_text(json.dumps({**asdict(result), "proxy": stats}, indent=2) + "\n")
    assert result.failed == 0, (asdict(result), stats)
    assert result.requests > RATE * 3


def test_hey_report_parser_counts_errors_as_failed() -> None:
    report = (
        "Latency distribution:\n  99% in 0.0346 secs\n"
        "Status code distribution:\n  [200]\t90 responses\n  [502]\t3 responses\n\n"
        'Error distribution:\n  [7]\tPost "http://127.0.0.1:1/predict": connection refused\n'
    )
    load = parse_hey(report, 1.0)
    assert (load.requests, load.failed, load.p99_ms) == (100, 10, 34.6)
