"""The repository as the tests and benchmarks use it: its root, a fresh-clone-like copy, a working
directory for single stages, the stage outputs as dvc.lock records them, and the dev venv's tools."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone would not have (paths from the repo root, and names anywhere).
_NOT_SOURCE_PATHS = {".venv", "build", ".git", ".dvc/cache", ".dvc/tmp", "store"}  # store/: DVC-tracked
_OUTPUT_PATHS = {"data/prepared", "models"}  # DVC outputs: made by `dvc repro`, git-ignored
_NOT_SOURCE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# The image's input store (tests/integration/test_offline_store.py): a fresh clone has store.dvc, but
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


def pipeline_workdir(dest: Path, *, data: str = "data/raw") -> Path:
    """The pipeline and the contract (their own copies), params.yaml, the toolchain lock (which
    image the stages run in) and one data folder in `dest`: enough to run `python -m pipeline STAGE`
    there without DVC."""
    for part in ("pipeline", "contract", data):
        shutil.copytree(REPO_ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "image/toolchain.lock.json"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, dest / name)
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


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter (dvc, pip-compile, ...)."""
    return str(Path(sys.executable).with_name(name))


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the running interpreter's bin first on PATH: dvc.yaml's commands
    run `python`, which must be this venv's, with the locked libraries."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **extra}
