"""The GitHub Actions workflow users copy: every check, inputs from the store, two BuildKit versions.

It cannot be executed here (no GitHub), so its structure is checked instead: the steps, their
shell syntax, where the store comes from (DVC remote from secrets, else a cache keyed by the store
lock), and that a second job builds with the hosted runner's own Docker.
"""

from __future__ import annotations

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


def _steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    steps = workflow["jobs"][job]["steps"]
    assert isinstance(steps, list)
    return steps


def _runs(workflow: dict[Any, Any], job: str = "ci") -> list[str]:
    return [step["run"] for step in _steps(workflow, job) if "run" in step]


def test_workflow_runs_on_push_and_pull_request_within_the_ci_time_limit(workflow: dict[Any, Any]) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    for job in workflow["jobs"].values():
        assert job["timeout-minutes"] <= 90
    assert workflow["permissions"] == {"contents": "read"}


@pytest.mark.parametrize(
    "command",
    [
        "make lint",
        "make check-lock",
        "make check-image-lock",
        "make check-store",
        "make store",
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
    for job in workflow["jobs"]:
        for script in _runs(workflow, job):
            done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{script!r}: {done.stderr}"


@pytest.mark.parametrize("job", ["ci", "hosted-docker"])
def test_store_is_restored_from_a_cache_keyed_by_the_store_lock(workflow: dict[Any, Any], job: str) -> None:
    caches = [s for s in _steps(workflow, job) if str(s.get("uses", "")).startswith("actions/cache@")]
    assert caches, f"{job}: no cache step"
    assert caches[0]["with"]["path"] == "store"
    assert "hashFiles('image/store.lock.json')" in caches[0]["with"]["key"]


def test_dvc_remote_and_its_credentials_come_from_secrets(workflow: dict[Any, Any]) -> None:
    env = workflow["env"]
    for name in ("DVC_REMOTE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"
    assert any("dvc remote add --local --default" in s and "$DVC_REMOTE_URL" in s for s in _runs(workflow))


def test_no_engine_version_is_pinned_for_the_digest(workflow: dict[Any, Any]) -> None:
    """The digest does not depend on the builder: nothing pins one to match image.lock."""
    assert "LOCKSTEP_ENGINE_PACKAGES" not in yaml.safe_dump(workflow)


def test_hosted_runner_docker_verifies_with_the_containerd_image_store(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["hosted-docker"]
    assert "container" not in job, "must use the runner's own Docker, not a job container"
    script = "\n".join(_runs(workflow, "hosted-docker"))
    assert '"containerd-snapshotter": true' in script
    assert "systemctl restart docker" in script
    assert "python -m imagetool.image verify" in script
    assert "make engine" not in script
