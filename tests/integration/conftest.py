"""Fixtures for the integration tests: built inputs, locked builds, a container, and repo copies
with the built inputs linked in (the engine is tests/conftest.py's).

The engine is (re)started here because daemons do not survive between sessions; `make test`
has already installed it (`make engine`) and built the base rootfs and wheels, which are cached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import copy_repo, free_port, venv_env
from imagetool import platforms
from imagetool.images import image, ocidiff
from imagetool.images.image_lock import validate_record
from imagetool.ship.container import Container, made_run


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=venv_env(), capture_output=True, text=True, check=check)


def imagetool_cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m imagetool image ARGS`` inside ``repo`` (its own copy of imagetool)."""
    return _run([sys.executable, "-m", "imagetool", "image", *args], cwd=repo, check=False)


def dvc(repo: Path, *args: str) -> None:
    _run([str(Path(sys.executable).with_name("dvc")), *args], cwd=repo)


@pytest.fixture(scope="session")
def built_inputs(engine: None) -> None:
    """Base rootfs and wheels present and matching their locks (cached no-ops after `make test`)."""
    for verb in (("base", "build"), ("wheels", "download")):
        proc = _run([sys.executable, "-m", "imagetool", *verb], cwd=ROOT, check=False)
        assert proc.returncode == 0, proc.stderr


def link_build_inputs(dest: Path) -> None:
    """Hard-link this tree's base rootfs and wheels, of every platform it has, into a repo copy:
    no copy of ~200 MB per test."""
    for plat in platforms.ALL:
        rootfs, wheels = plat.rootfs(ROOT / "build"), plat.wheels(ROOT / "build")
        if rootfs.is_file():
            copy = plat.rootfs(dest / "build")
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.link(rootfs, copy)
        if wheels.is_dir():
            plat.wheels(dest / "build").mkdir(parents=True)
            for whl in wheels.glob("*.whl"):
                os.link(whl, plat.wheels(dest / "build") / whl.name)


@pytest.fixture
def repo_copy(tmp_path: Path, built_inputs: None) -> Callable[[], Path]:
    """Factory: a committed git copy of the repo with its model and (hard-linked) build inputs."""

    def make() -> Path:
        dest = copy_repo(tmp_path / f"repo{len(list(tmp_path.iterdir()))}", with_outputs=True)
        link_build_inputs(dest)
        _run(["git", "init", "-q"], cwd=dest)
        _run(["git", "add", "-A"], cwd=dest)
        _run(
            ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=test", "commit", "-qm", "copy"],
            cwd=dest,
        )
        return dest

    return make


@dataclass
class LockedBuild:
    first: ocidiff.OciImage
    second: ocidiff.OciImage
    locked_digest: str


@pytest.fixture(scope="session")
def locked_builds(built_inputs: None, tmp_path_factory: pytest.TempPathFactory) -> LockedBuild:
    """Two --no-cache builds of the real tree (the expensive part: done once per session)."""
    out = tmp_path_factory.mktemp("oci")
    image.preflight(ROOT)
    inputs = image.current_inputs(ROOT)
    a = image.buildx(ROOT, inputs, out / "a.oci.tar", no_cache=True)
    b = image.buildx(ROOT, inputs, out / "b.oci.tar", no_cache=True)
    locked = validate_record(json.loads((ROOT / "image.lock").read_text()))
    return LockedBuild(a.oci, b.oci, locked["digest"])


@pytest.fixture(scope="session")
def locked_image(locked_builds: LockedBuild) -> Iterator[str]:
    """The locked build loaded into the engine under a tag of this test process."""
    tag = f"lockstep:test-{os.getpid()}"
    image.load_and_tag(image.BuildResult(locked_builds.first.digest, locked_builds.first, 0.0), [tag])
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def container(locked_image: str) -> Iterator[Container]:
    """The locked image started by `make run` itself (its flags, its recipe) until ready."""
    with made_run(locked_image, f"lockstep-test-{os.getpid()}", free_port()) as running:
        yield running
