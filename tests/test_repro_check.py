"""`make test`'s pipeline step fails when `dvc repro` would rewrite dvc.lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from contract import MODEL_FILE
from harness import venv_env
from imagetool.images.repro_check import drift
from tests.malformed_locks import BadLock, bad_lock_params

LOCK = """schema: '2.0'
stages:
  train:
    cmd: python -m pipeline train
    outs:
    - path: models/model.joblib
      md5: {md5}
"""


def repro_check(cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m imagetool repro-check ARGS` in `cwd`, the venv first on PATH (for dvc)."""
    return subprocess.run(
        [sys.executable, "-m", "imagetool", "repro-check", *args],
        cwd=cwd,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_drift_is_empty_for_identical_locks() -> None:
    assert drift(LOCK.format(md5="a" * 32), LOCK.format(md5="a" * 32)) == []


def test_drift_names_the_output_and_both_md5s() -> None:
    assert drift(LOCK.format(md5="a" * 32), LOCK.format(md5="b" * 32)) == [
        f"models/model.joblib: md5 {'a' * 32} -> {'b' * 32}"
    ]


def test_drift_reports_a_lock_written_where_none_was() -> None:
    assert drift(None, LOCK.format(md5="a" * 32)) == [f"models/model.joblib: md5 (none) -> {'a' * 32}"]


def test_drift_reports_a_change_outside_the_outputs() -> None:
    before = LOCK.format(md5="a" * 32)
    assert drift(before, before.replace("python -m pipeline train", "python -m pipeline train2")) == [
        "dvc.lock changed (dependencies or params recorded differently; outputs unchanged)"
    ]


@pytest.mark.slow
def test_check_repro_fails_when_the_committed_lock_does_not_reproduce(
    fresh_clone: Callable[[], Path],
) -> None:
    """A committed dvc.lock whose model md5 the pipeline cannot reproduce: exit 1, output named."""
    repo = fresh_clone()
    lock = repo / "dvc.lock"
    doc = yaml.safe_load(lock.read_text())
    # Record another md5 for the model: what a change that alters the model's bytes looks like.
    [model] = [out for out in doc["stages"]["train"]["outs"] if out["path"] == str(MODEL_FILE)]
    model["md5"] = "f" * 32
    lock.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = repro_check(repo, timeout=600)
    assert run.returncode == 1, run.stderr
    assert "`dvc repro` changed dvc.lock" in run.stderr
    assert f"{MODEL_FILE}: md5 {'f' * 32} -> " in run.stderr


@pytest.mark.parametrize("case", bad_lock_params(at_load_only=True))
def test_check_repro_refuses_a_malformed_committed_lock_naming_the_field(
    case: BadLock, repo_root: Path, tmp_path: Path
) -> None:
    """Exit 2 and one line, before `dvc repro` runs (cwd is no DVC repository: it could not)."""
    lock = tmp_path / "dvc.lock"
    lock.write_bytes(case.spoil((repo_root / "dvc.lock").read_bytes()))
    run = repro_check(tmp_path, str(lock), timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == f"error: {case.expected(lock, MODEL_FILE)}"
    assert run.stdout == ""
