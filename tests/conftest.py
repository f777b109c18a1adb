"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone would not have (paths from the repo root, and names anywhere).
_NOT_SOURCE_PATHS = {".venv", "build", ".git", ".dvc/cache", ".dvc/tmp", "store"}  # store/: DVC-tracked
_OUTPUT_PATHS = {"data/prepared", "models"}  # DVC outputs: made by `dvc repro`, git-ignored
_NOT_SOURCE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# The image's input store (tests/image/test_offline_store.py): a fresh clone has store.dvc, but
# without `dvc pull` DVC reports the store as not in the cache, so copies that exercise the
# pipeline's DVC commands (status, push, pull of the whole project) leave it out unless asked.
_STORE_DVC = "store.dvc"


def copy_repo(dest: Path, *, with_outputs: bool = False, with_store: bool = False) -> Path:
    """Copy the repo as a fresh clone would have it, plus the DVC outputs if `with_outputs`, and
    the image store's DVC file if `with_store`."""
    skip = _NOT_SOURCE_PATHS if with_outputs else _NOT_SOURCE_PATHS | _OUTPUT_PATHS
    if not with_store:
        skip = skip | {_STORE_DVC}

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(REPO_ROOT)
        return {n for n in names if n in _NOT_SOURCE_NAMES or (rel / n).as_posix() in skip}

    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    return dest


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter (dvc, pip-compile, ...)."""
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def repo_copy(tmp_path: Path) -> Callable[[], Path]:
    """Factory: a fresh-clone-like copy of the repo (tracked sources, no outputs, no DVC cache)
    in its own git repository, so tests can run `dvc` there without touching the real tree."""

    def make() -> Path:
        dest = copy_repo(tmp_path / f"repo{len(list(tmp_path.iterdir()))}")
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        return dest

    return make
