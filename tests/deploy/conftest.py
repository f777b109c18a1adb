"""Fixtures for the deploy tests: the engine, the image built once, a real registry on loopback
(Debian's docker-registry, the reference registry), and a single-node swarm.

Everything started here is removed again at the end of the session; the swarm is left only if
this session created it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagetool import image
from tools import registry
from tools.registry import OciTarball, Registry

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def engine() -> None:
    proc = run([str(ROOT / "scripts/docker-engine.sh"), "start"], check=False)
    assert proc.returncode == 0, f"cannot start the Docker engine (run `make engine`): {proc.stderr}"


@pytest.fixture(scope="session")
def built_image(engine: None) -> OciTarball:
    """The tree's image, built (or found up to date) as `make image` does, and loaded."""
    for module, cmd in (("imagetool.base", "build"), ("imagetool.wheels", "download")):
        run([sys.executable, "-m", module, cmd])
    result, _ = image.build(ROOT)
    return registry.open_tarball(result.oci.path)


def _install_registry() -> str:
    if shutil.which("docker-registry") is None:
        run(["apt-get", "install", "-y", "-qq", "docker-registry"])
    found = shutil.which("docker-registry")
    assert found, "docker-registry is not installed (apt-get install docker-registry)"
    return found


@pytest.fixture(scope="session")
def registry_server() -> Iterator[Registry]:
    """The reference registry on a free loopback port with a throwaway filesystem store."""
    binary = _install_registry()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lockstep-registry-") as tmp:
        config = Path(tmp) / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n"
            f"  filesystem:\n    rootdirectory: {tmp}/store\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        log = (Path(tmp) / "registry.log").open("w")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                        break
                except OSError:
                    assert proc.poll() is None, (Path(tmp) / "registry.log").read_text()
                    assert time.monotonic() < deadline, "the registry did not answer within 15 s"
                    time.sleep(0.1)
            yield Registry.parse(f"127.0.0.1:{port}/test")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()


@pytest.fixture(scope="session")
def pushed(registry_server: Registry, built_image: OciTarball) -> str:
    """The tree's image pushed once; its digest."""
    return registry.push_image(registry_server, built_image, built_image.digest, tag="latest")
