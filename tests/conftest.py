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
_NOT_SOURCE_PATHS = {".venv", "build", ".git", ".dvc/cache", ".dvc/tmp", "data/prepared", "models"}
_NOT_SOURCE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    rel = Path(directory).relative_to(REPO_ROOT)
    return {n for n in names if n in _NOT_SOURCE_NAMES or (rel / n).as_posix() in _NOT_SOURCE_PATHS}


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
        dest = tmp_path / f"repo{len(list(tmp_path.iterdir()))}"
        shutil.copytree(REPO_ROOT, dest, ignore=_ignore)
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        return dest

    return make
