"""Fixtures shared by every test package; the plain functions they use are in harness/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import REPO_ROOT, copy_repo, venv_env

# The suite builds and verifies linux/amd64: a linux/arm64 rebuild costs ~50 s under emulation, so
# the arm64 claims (rebuild == image.lock, serving, refusals) live in tests/integration/test_platforms.py,
# which names its platform, and share one build. `make test` has prepared both platforms' inputs.
# `make test PLATFORM=linux/arm64` runs the rest against arm64 instead.
if not os.environ.get("PLATFORM"):
    os.environ["PLATFORM"] = "linux/amd64"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def engine() -> None:
    """The Docker engine, (re)started: daemons do not survive between sessions."""
    proc = subprocess.run(
        [sys.executable, "-m", "imagetool", "engine", "start"],
        cwd=REPO_ROOT,
        env=venv_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"cannot start the Docker engine (run `make engine`): {proc.stderr}"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Callable[[], Path]:
    """Factory: a fresh-clone-like copy of the repo (tracked sources, no outputs, no DVC cache)
    in its own git repository, so tests can run `dvc` there without touching the real tree."""

    def make() -> Path:
        dest = copy_repo(tmp_path / f"repo{len(list(tmp_path.iterdir()))}")
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        return dest

    return make
