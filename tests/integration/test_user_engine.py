"""`make image` and `make verify` build with the engine the user already has, when its BuildKit is
new enough, and install or start nothing beside it.

The stored second builder (Debian unstable's docker-cli, docker-buildx, dockerd and containerd, run
from the store on sockets of their own) stands in for "the user's Docker": the whole make target
runs with its CLI first on PATH and DOCKER_HOST at its socket, as a Docker CE or Desktop user's
shell would be. Engines too old for it are stood in for by a Docker API that answers as they do.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT as ROOT
from imagetool import engine, platforms
from imagetool.images import second_builder
from imagetool.images.image_lock import ImageLock

SYSTEM_STATE = [Path("/var/lib/dpkg/status"), Path("/etc/docker/daemon.json")]


def _fingerprint() -> dict[str, str]:
    """What installing or (re)starting an engine system-wide would change: the dpkg database, the
    system engine's settings and its running daemons."""
    marks = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in SYSTEM_STATE if p.is_file()}
    for name in ("dockerd", "containerd"):
        pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False).stdout
        marks[name] = " ".join(sorted(pids.split()))
    return marks


@pytest.mark.docker
@pytest.mark.slow
def test_make_verify_uses_the_users_engine_and_installs_nothing(built_inputs: None) -> None:
    """Every platform rebuilds to image.lock's digests on "the user's" engine: a newer BuildKit
    than the system engine's, so this is also the proof that the digest does not depend on it."""
    lock = json.loads((ROOT / "image.lock").read_text())
    wanted = [ImageLock(lock).record(plat)["digest"] for plat in platforms.ALL]
    before = _fingerprint()
    with second_builder.running() as client:
        env = {**os.environ, **client, "PLATFORM": ""}  # empty: every platform, as a user's `make verify`
        user = subprocess.run(
            ["docker", "version", "--format", "{{.Client.Version}} {{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        done = subprocess.run(
            ["make", "--no-print-directory", "verify"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    system = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert user[1].split(".")[0] != system.split(".")[0], (user, system)  # really another engine
    for verb in ("install", "start"):
        assert f"using the engine at {client['DOCKER_HOST']}: Docker Engine {user[1]}" in done.stderr
        assert f"nothing to {verb}" in done.stderr
    assert done.stdout.split()[-len(wanted) :] == wanted, done.stdout
    assert f"built with engine {user[1]}" in done.stderr
    assert _fingerprint() == before, "an engine was installed, configured or restarted system-wide"


class _FakeDockerAPI(http.server.BaseHTTPRequestHandler):
    """Answers /_ping, /version and /info as an engine of ``server`` would; nothing else."""

    server: Any

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            body: Any = "OK"
        elif path.endswith("/version"):
            body = self.server.version
        elif path.endswith("/info"):
            body = self.server.info
        else:
            self.send_error(404)
            return
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Api-Version", self.server.version["ApiVersion"])
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, tuple[str, int]]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


@contextmanager
def _engine_answering(tmp_path: Path, version: str, api: str, containerd_store: bool) -> Iterator[str]:
    sock = tmp_path / "docker.sock"
    server = _UnixHTTPServer(str(sock), _FakeDockerAPI)
    server.version = {  # type: ignore[attr-defined]
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": version}],
        "Version": version,
        "ApiVersion": api,
        "MinAPIVersion": "1.12",
        "Os": "linux",
        "Arch": "amd64",
    }
    driver = (
        [["driver-type", "io.containerd.snapshotter.v1"]]
        if containerd_store
        else [["Backing Filesystem", "extfs"]]
    )
    server.info = {"DriverStatus": driver}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{sock}"
    finally:
        server.shutdown()
        server.server_close()


def _imagetool_engine(verb: str, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetool", "engine", verb],
        cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("verb", ["install", "start", "check"])
def test_an_engine_older_than_buildkit_0_13_is_one_line_naming_its_version(tmp_path: Path, verb: str) -> None:
    before = _fingerprint()
    with _engine_answering(tmp_path, "24.0.7", "1.43", containerd_store=True) as host:
        done = _imagetool_engine(verb, host)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert f"the Docker engine at {host} is Docker Engine - Community 24.0.7" in lines[0]
    assert "older than BuildKit 0.13" in lines[0]
    assert "Traceback" not in done.stderr
    assert _fingerprint() == before  # refused before anything was installed or started


def test_an_engine_without_the_containerd_image_store_says_how_to_enable_it(tmp_path: Path) -> None:
    with _engine_answering(tmp_path, "27.3.1", "1.47", containerd_store=False) as host:
        done = _imagetool_engine("install", host)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "27.3.1" in done.stderr
    assert "containerd-snapshotter" in done.stderr
    assert "Use containerd for pulling" in done.stderr


@pytest.mark.parametrize(
    ("version", "buildkit", "refused"),
    [
        ("26.1.5+dfsg1", "v0.0.0+unknown", False),  # Debian's build: BuildKit does not say
        ("25.0.5", None, True),
        ("28.5.2", "v0.25.1", False),
        ("27.0.3", "v0.12.5", True),  # BuildKit's own word wins over the engine's version
        ("not-a-version", None, True),
    ],
)
def test_which_engines_are_new_enough(version: str, buildkit: str | None, refused: bool) -> None:
    found = engine.Engine(
        "unix:///x.sock", "default", "Docker Engine", version, ("Engine",), buildkit, "0.13.1", True
    )
    why = engine.problem(found)
    assert (why is not None) == refused, why
    if why:
        assert version in why
        assert "\n" not in why


def test_the_system_engine_is_usable_and_lists_arm64() -> None:
    """The engine `make test` runs passes its own check, and its BuildKit runs arm64 (the list a
    host that is not Linux, such as macOS with Docker Desktop, relies on instead of binfmt_misc)."""
    found = engine.require()
    assert engine.problem(found) is None
    assert found.containerd_store
    assert found.buildx
    assert {"linux/amd64", "linux/arm64"} <= set(engine.emulated_platforms())


@pytest.mark.parametrize("verb", ["install", "start"])
def test_a_docker_host_that_does_not_answer_is_named_and_nothing_is_installed(
    tmp_path: Path, verb: str
) -> None:
    """DOCKER_HOST says which engine the user wants: when it is down, installing or starting this
    host's engine instead would build elsewhere than asked."""
    before = _fingerprint()
    done = _imagetool_engine(verb, f"unix://{tmp_path}/nothing.sock")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: DOCKER_HOST=unix://{tmp_path}/nothing.sock: no Docker engine answers")
    assert _fingerprint() == before


def test_a_host_that_is_not_linux_asks_the_engine_which_platforms_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """macOS (Docker Desktop): no binfmt_misc to read, and `arm64` for its own machine. The engine's
    BuildKit list decides instead; the real system engine answers here."""
    monkeypatch.setattr("sys.platform", "darwin")
    monkeypatch.setenv(platforms.BINFMT_DIR_ENV, str(tmp_path))  # no handler this host could see
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert platforms.ARM64.runnable_problem() is None  # the engine lists linux/arm64
    riscv = platforms.Platform("linux/riscv64", "riscv64", "riscv64", "-riscv64", "qemu-riscv64")
    problem = riscv.runnable_problem()
    assert problem is not None
    assert problem.startswith("linux/riscv64: the Docker engine does not run riscv64 binaries")
    monkeypatch.setattr("platform.machine", lambda: "arm64")  # Apple Silicon
    assert platforms.ARM64.native()
    assert not platforms.AMD64.native()
