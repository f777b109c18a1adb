"""Fixtures for the deploy tests: the engine, the image built once, a real registry on loopback
(Debian's docker-registry, the reference registry), and a single-node swarm.

Everything started here is removed again at the end of the session; the swarm is left only if
this session created it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import copy_repo, free_port, serving, venv_env, wait_ready
from imagetool.images import image
from imagetool.images import stack_images as stack_images_tool
from imagetool.ship import deploy, registry
from imagetool.ship.registry import Credentials, OciTarball, Registry
from tests.integration.conftest import link_build_inputs
from tests.integration.deploy.token_server import (
    ISSUER,
    SERVICE,
    SigningKey,
    TokenServer,
    token_server,
    write_bundle,
)


def run(
    cmd: list[str], cwd: Path = ROOT, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = venv_env(**(env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def imagetool(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m imagetool ARGS` in ``cwd``; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "imagetool", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def engine() -> None:
    proc = run([sys.executable, "-m", "imagetool", "engine", "start"], check=False)
    assert proc.returncode == 0, f"cannot start the Docker engine (run `make engine`): {proc.stderr}"


@pytest.fixture(scope="session")
def built_image(engine: None) -> OciTarball:
    """The tree's image, built (or found up to date) as `make image` does. Not loaded: that would
    retag the shared lockstep:latest; the tests pull it from their registry instead."""
    for verb in (("base", "build"), ("wheels", "download")):
        run([sys.executable, "-m", "imagetool", *verb])
    result, _ = image.build(ROOT, load=False)
    return registry.open_tarball(result.oci.path)


def _install(binary: str, package: str) -> str:
    if shutil.which(binary) is None:
        run(["apt-get", "install", "-y", "-qq", package])
    found = shutil.which(binary)
    assert found, f"{binary} is not installed (apt-get install {package})"
    return found


@contextmanager
def _serve_registry(tmp: Path, auth: str = "") -> Iterator[Registry]:
    """The reference registry on a free loopback port with a filesystem store under `tmp`;
    `auth` is the config's `auth:` section (none: anonymous)."""
    binary = _install("docker-registry", "docker-registry")
    port = free_port()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n"
        f"  filesystem:\n    rootdirectory: {tmp}/store\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    command = [binary, "serve", str(config)]
    # 401: up, and asking for credentials.
    with serving(command, port, "/v2/", log=tmp / "registry.log", ready=(200, 401), timeout=15):
        yield Registry.parse(f"127.0.0.1:{port}/test")


@pytest.fixture(scope="session")
def registry_server() -> Iterator[Registry]:
    """The reference registry on a free loopback port with a throwaway filesystem store."""
    with tempfile.TemporaryDirectory(prefix="lockstep-registry-") as tmp, _serve_registry(Path(tmp)) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_credentials() -> Credentials:
    return Credentials("lockstep-ci", secrets.token_urlsafe(18), "the test")


@pytest.fixture(scope="session")
def htpasswd_registry(registry_credentials: Credentials) -> Iterator[Registry]:
    """The reference registry with `auth: htpasswd` (bcrypt, the only format it reads; made by
    Apache's htpasswd). Anonymous: tests give it credentials where they mean to."""
    htpasswd = _install("htpasswd", "apache2-utils")
    with tempfile.TemporaryDirectory(prefix="lockstep-registry-basic-") as tmp:
        line = subprocess.run(
            [htpasswd, "-niB", "-C", "4", registry_credentials.username],
            input=registry_credentials.password, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (Path(tmp) / "htpasswd").write_text(line)
        auth = f"auth:\n  htpasswd:\n    realm: lockstep-test\n    path: {tmp}/htpasswd\n"
        with _serve_registry(Path(tmp), auth) as reg:
            yield reg


@pytest.fixture(scope="session")
def token_registry(registry_credentials: Credentials) -> Iterator[tuple[Registry, TokenServer]]:
    """The reference registry with `auth: token`, trusting a test key whose tokens the test's own
    token server (real HTTP on loopback) hands out for the test credentials."""
    key = SigningKey.generate()
    with (
        tempfile.TemporaryDirectory(prefix="lockstep-registry-token-") as tmp,
        token_server(key, registry_credentials.username, registry_credentials.password) as tokens,
    ):
        bundle = write_bundle(key, Path(tmp) / "root.pem")
        auth = (
            f"auth:\n  token:\n    realm: {tokens.url}\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n"
        )
        with _serve_registry(Path(tmp), auth) as reg:
            yield reg, tokens


@pytest.fixture(scope="session")
def pushed(registry_server: Registry, built_image: OciTarball) -> str:
    """The tree's image pushed once; its digest."""
    return registry.push_image(registry_server, built_image, built_image.digest, tag="latest")


@pytest.fixture(scope="session")
def params_changed_image(built_image: OciTarball, tmp_path_factory: pytest.TempPathFactory) -> OciTarball:
    """A second digest from an honest input change: train.C in a repo copy, `dvc repro`, build."""
    repo = copy_repo(tmp_path_factory.mktemp("params") / "repo", with_outputs=True)
    link_build_inputs(repo)
    run(["git", "init", "-q"], cwd=repo)
    params = repo / "params.yaml"
    changed = params.read_text().replace("C: 1.0", "C: 0.25", 1)
    assert changed != params.read_text(), "params.yaml has no `C: 1.0` to change"
    params.write_text(changed)
    run([str(Path(sys.executable).with_name("dvc")), "repro", "-q"], cwd=repo)
    run([sys.executable, "-m", "imagetool", "image", "build", "--no-load", "--allow-untracked"], cwd=repo)
    other = registry.open_tarball(repo / "build/image/lockstep.oci.tar")
    assert other.digest != built_image.digest
    return other


def swarm_state() -> str:
    return run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.strip()


@pytest.fixture(scope="session")
def swarm(engine: None) -> Iterator[None]:
    """A single-node swarm on loopback; left again at the end if this session created it."""
    created = swarm_state() != "active"
    if created:
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"])
    yield
    if created:
        run(["docker", "swarm", "leave", "--force"], check=False)
        # `swarm init` made this bridge for the tasks' egress; leaving does not remove it.
        run(["docker", "network", "rm", "docker_gwbridge"], check=False)


def http_json(url: str, timeout: float = 5.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.load(reply)


@dataclass
class Stack:
    """deploy/compose.yaml deployed as a swarm stack, from a copy of deploy/ pinned to a digest."""

    name: str
    files: Path
    env: dict[str, str]
    url: str  # HAProxy's published port on 127.0.0.1

    def deploy(self, digest: str) -> None:
        """What `make sync-deploy` then `make deploy-stack` do, against the test registry."""
        deploy.sync(digest, self.files)
        run(
            ["docker", "stack", "deploy", "--detach=false", "--resolve-image", "never", "-c",
             str(self.files / "compose.yaml"), self.name],
            env=self.env,
        )  # fmt: skip
        self.wait_ready()

    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_ready(f"{self.url}/readyz", timeout=timeout)  # through HAProxy

    def model_version(self) -> str:
        reply = http_json(f"{self.url}/readyz")
        assert isinstance(reply, dict)
        return str(reply["model_version"])

    def loopback_get(self, service: str, url: str) -> str:
        """GET `url` (on 127.0.0.1) inside a running task's own network namespace: how an operator
        on the host reaches what the stack keeps off every published port (HAProxy's statistics,
        Prometheus). Needs root, as `docker` does."""
        label = f"label=com.docker.swarm.service.name={self.service(service)}"
        [container, *_] = run(["docker", "ps", "-q", "--filter", label]).stdout.split()
        pid = run(["docker", "inspect", "--format", "{{.State.Pid}}", container]).stdout.strip()
        code = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
        return run(["nsenter", "-t", pid, "-n", sys.executable, "-c", code, url]).stdout

    def proxy_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's statistics (CSV from its loopback-only listener): `proxy/server` -> fields."""
        lines = self.loopback_get("proxy", "http://127.0.0.1:8404/stats;csv").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {f"{r['pxname']}/{r['svname']}": r for r in rows}

    def retries(self) -> dict[str, int]:
        """The api backend's retries and redispatches so far, and its 5xx answers."""
        row = self.proxy_stats()["api/BACKEND"]
        return {k: int(row[k] or 0) for k in ("wretr", "wredis", "hrsp_5xx")}


@pytest.fixture(scope="session")
def stack_images(built_image: OciTarball) -> Iterator[dict[str, str]]:
    """HAProxy's and Prometheus' images, built as `make stack-images` does (from the store's .debs,
    --network=none), loaded under this session's own tags (removed afterwards). Also their
    digests (`digest:NAME`), which a test compares with image.lock's `stack`."""
    results = stack_images_tool.build_oci()
    tags = {name: f"lockstep-{name}:test-{os.getpid()}" for name in results}
    for name, result in results.items():
        image.load_and_tag(result, [tags[name]])
    yield {
        "LOCKSTEP_PROXY_IMAGE": tags["proxy"],
        "LOCKSTEP_PROMETHEUS_IMAGE": tags["prometheus"],
        **{f"digest:{name}": result.digest for name, result in results.items()},
    }
    run(["docker", "rmi", *tags.values()], check=False)


@pytest.fixture(scope="session")
def stack(
    swarm: None,
    stack_images: dict[str, str],
    registry_server: Registry,
    pushed: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The stack running the tree's image (pulled from the test registry), ready behind its proxy."""
    name = f"ship-test-{os.getpid()}"
    files = shutil.copytree(ROOT / "deploy", tmp_path_factory.mktemp("stack") / "deploy")
    port = free_port()
    env = {
        "LOCKSTEP_REGISTRY": registry_server.reference.removesuffix(f"/{registry_server.repository}"),
        "LOCKSTEP_PORT": str(port),
        **{k: v for k, v in stack_images.items() if k.startswith("LOCKSTEP_")},
    }
    running = Stack(name, files, env, f"http://127.0.0.1:{port}")
    try:
        running.deploy(pushed)
        yield running
    finally:
        run(["docker", "stack", "rm", name], check=False)
        deadline = time.monotonic() + 60
        label = f"label=com.docker.stack.namespace={name}"
        while time.monotonic() < deadline and (
            run(["docker", "network", "ls", "-q", "--filter", label]).stdout.strip()
            or run(["docker", "ps", "-aq", "--filter", label]).stdout.strip()
        ):
            time.sleep(0.5)
        pulled = run(
            [
                "docker",
                "images",
                "--digests",
                "--format",
                "{{.Repository}}@{{.Digest}}",
                registry_server.reference,
            ]
        ).stdout.split()
        if pulled:
            run(["docker", "rmi", *pulled], check=False)
