"""A params.yaml change retrains the model and changes the digest; reverting restores it.
A change outside the image's inputs (tests, docs) leaves the digest alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import dvc, imagetool_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _digest(repo: Path) -> str:
    proc = imagetool_cli(repo, "build", "--no-load")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _layers(repo: Path) -> list[str]:
    last = json.loads((repo / "build/image/last-build.json").read_text())
    return [layer["digest"] for layer in last["layers"]]


def test_params_change_changes_digest_and_revert_restores_it(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    locked = json.loads((repo / "image.lock").read_text())["digest"]
    before = _digest(repo)
    assert before == locked
    layers_before = _layers(repo)

    params = repo / "params.yaml"
    original = params.read_text()
    changed = original.replace("C: 1.0", "C: 0.25", 1)
    assert changed != original, "params.yaml has no `C: 1.0` to change"
    params.write_text(changed)
    dvc(repo, "repro")
    after = _digest(repo)
    assert after != before
    # Only the model layer (model, metadata, dvc.lock) moved; base, venv and code are shared.
    layers_after = _layers(repo)
    assert layers_after[:-1] == layers_before[:-1]
    assert layers_after[-1] != layers_before[-1]

    params.write_text(original)
    dvc(repo, "repro")
    assert _digest(repo) == before


def test_docs_and_tests_do_not_change_the_digest(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    before = _digest(repo)
    (repo / "docs/CONTRACTS.md").write_text("changed\n")
    (repo / "tests/imagetool/test_new.py").write_text("def test_x() -> None: ...\n")
    (repo / "README.md").write_text("changed\n")
    import subprocess

    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    (repo / "build/image/last-build.json").unlink()  # force a real BuildKit run
    assert _digest(repo) == before
