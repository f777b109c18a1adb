"""Fixtures shared by every test package."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def stage_outputs(stage: str) -> list[str]:
    """The files dvc.yaml declares as `stage`'s outputs (outs, metrics and plots)."""
    declared = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = [e for key in ("outs", "metrics", "plots") for e in declared.get(key, [])]
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def lock_stage_outputs(workdir: Path, stage: str) -> None:
    """Record `stage`'s outputs in workdir/dvc.lock from their real bytes, as `dvc repro` does
    after each stage: tests that run stages without DVC give the next stage the lock entry its
    md5 check (contract.load_verified_pickle) needs, instead of skipping that check."""
    lock_file = workdir / "dvc.lock"
    lock: dict[str, Any] = (
        yaml.safe_load(lock_file.read_text()) if lock_file.exists() else {"schema": "2.0", "stages": {}}
    )
    outs = []
    for path in stage_outputs(stage):
        data = (workdir / path).read_bytes()
        outs.append({"path": path, "hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)})
    lock["stages"][stage] = {"cmd": f"python -m pipeline {stage}", "outs": outs}
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))


class _OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for code a poisoned pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def malicious_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates `marker`: if the file exists, the payload ran."""
    return pickle.dumps(_OpensAFile(marker))


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
