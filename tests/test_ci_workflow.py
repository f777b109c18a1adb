"""The GitHub Actions workflow users copy: it runs every check, on the builder image.lock records.

It cannot be executed here (no GitHub), so its structure is checked instead: the steps, their
shell syntax, and that the pinned engine packages are the builder identity recorded with the
digest (a relock on another BuildKit must update the workflow too, or CI's verify would fail).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(".github/workflows/ci.yml")


@pytest.fixture(scope="module")
def workflow(repo_root: Path) -> dict[Any, Any]:
    doc = yaml.safe_load((repo_root / WORKFLOW).read_text())
    assert isinstance(doc, dict)
    return doc


def _runs(workflow: dict[Any, Any]) -> list[str]:
    [job] = workflow["jobs"].values()
    return [step["run"] for step in job["steps"] if "run" in step]


def test_workflow_runs_on_push_and_pull_request_within_the_ci_time_limit(workflow: dict[Any, Any]) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    [job] = workflow["jobs"].values()
    assert job["timeout-minutes"] <= 90
    assert workflow["permissions"] == {"contents": "read"}


@pytest.mark.parametrize(
    "command",
    [
        "make lint",
        "make check-lock",
        "make check-image-lock",
        "make engine",
        "make repro",
        "dvc status",
        "git diff --exit-code dvc.lock",
        "make test",
        "make verify",
    ],
)
def test_workflow_runs_every_check(workflow: dict[Any, Any], command: str) -> None:
    assert any(command in script for script in _runs(workflow))


def test_workflow_scripts_are_valid_shell(workflow: dict[Any, Any]) -> None:
    for script in _runs(workflow):
        done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{script!r}: {done.stderr}"


def test_workflow_pins_the_builder_that_image_lock_records(workflow: dict[Any, Any], repo_root: Path) -> None:
    pins = dict(p.split("=", 1) for p in workflow["env"]["LOCKSTEP_ENGINE_PACKAGES"].split())
    builder = json.loads((repo_root / "image.lock").read_text())["inputs"]["builder"]
    # Debian versions carry a revision after the upstream version that `docker version` reports.
    assert pins["docker.io"].startswith(builder["engine"] + "-")
    assert pins["docker-buildx"].startswith(builder["buildx"] + "-")
    assert pins["containerd"].startswith(builder["containerd"] + "-")
    assert pins["docker-cli"] == pins["docker.io"]
