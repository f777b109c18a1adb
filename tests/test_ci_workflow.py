"""The GitHub Actions workflow users copy: every check, inputs from the store, two BuildKit versions.

It cannot be executed here (no GitHub), so its structure is checked instead: the steps, their
shell syntax, where the store comes from (DVC remote from secrets, else a cache keyed by the store
lock), that a second job builds with the hosted runner's own Docker, and that the publish job pushes
image.lock's digest to GHCR, signs and attests it keyless and verifies it, with the permissions
scoped to that job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagetool import provenance

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
    adds = [s for s in _runs(workflow) if "dvc remote add --local --default" in s and "$DVC_REMOTE_URL" in s]
    assert adds
    # DVC re-hashes what it pulls only with `verify`: a poisoned remote is then refused at pull time.
    assert all("dvc remote modify --local ci verify true" in s for s in adds)


def test_no_engine_version_is_pinned_for_the_digest(workflow: dict[Any, Any]) -> None:
    """The digest does not depend on the builder: nothing pins one to match image.lock."""
    assert "LOCKSTEP_ENGINE_PACKAGES" not in yaml.safe_dump(workflow)


def test_hosted_runner_docker_verifies_with_the_containerd_image_store(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["hosted-docker"]
    assert "container" not in job, "must use the runner's own Docker, not a job container"
    script = "\n".join(_runs(workflow, "hosted-docker"))
    assert '"containerd-snapshotter": true' in script
    assert "systemctl restart docker" in script
    assert "python -m imagetool image verify" in script
    assert "make engine" not in script


# --- publish: push to GHCR by digest, keyless signature and attestations, verified ------------------

ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def publish(workflow: dict[Any, Any]) -> dict[str, Any]:
    job = workflow["jobs"]["publish"]
    assert isinstance(job, dict)
    return job


def _publish_script(workflow: dict[Any, Any]) -> str:
    """Every publish step's script, continuation lines joined."""
    return "\n".join(_runs(workflow, "publish")).replace("\\\n", " ")


def _commands(workflow: dict[Any, Any], program: str) -> list[list[str]]:
    lines = _publish_script(workflow).splitlines()
    return [shlex.split(line.strip()) for line in lines if line.strip().startswith(f"{program} ")]


def test_publish_runs_after_the_digest_proofs_on_pushes_to_main_and_tags_only(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert {"ci", "hosted-docker"} <= set(publish["needs"])
    assert any("make verify" in script for script in _runs(workflow, "ci"))
    condition = " ".join(publish["if"].split())
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/tags/')" in condition


def test_write_permissions_and_the_oidc_token_belong_to_the_publish_job_alone(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert publish["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        if name != "publish":
            assert "permissions" not in job, f"{name} must keep the workflow's read-only permissions"


def test_github_token_reaches_only_the_push_and_the_cosign_login(workflow: dict[Any, Any]) -> None:
    users = [step for step in _steps(workflow, "publish") if "secrets.GITHUB_TOKEN" in yaml.safe_dump(step)]
    assert [step["run"] for step in users] == [
        'make push REGISTRY="$REGISTRY"',
        'cosign login ghcr.io --username "$REGISTRY_USERNAME" --password-stdin <<< "$REGISTRY_PASSWORD"',
    ]
    for step in users:
        assert step["env"] == {
            "REGISTRY_USERNAME": "${{ github.actor }}",
            "REGISTRY_PASSWORD": "${{ secrets.GITHUB_TOKEN }}",
        }
    assert "GITHUB_TOKEN" not in yaml.safe_dump(workflow.get("env", {}))
    for job in workflow["jobs"].values():
        assert "GITHUB_TOKEN" not in yaml.safe_dump(job.get("env", {}))


def test_image_step_names_the_lowercased_ghcr_repository_at_image_lock_digest(
    workflow: dict[Any, Any], repo_root: Path, tmp_path: Path
) -> None:
    """The step's own script, run here: GITHUB_ENV gets REGISTRY and IMAGE = REGISTRY/lockstep@digest."""
    [script] = [s for s in _runs(workflow, "publish") if "imagetool registry reference" in s]
    github_env = tmp_path / "github_env"
    env = {**os.environ, "GITHUB_REPOSITORY": "Some-Owner/Lockstep", "GITHUB_ENV": str(github_env)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    script = script.replace(".venv/bin/python", sys.executable)  # the venv this test runs in
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo_root, env=env, check=True)
    digest = json.loads((repo_root / "image.lock").read_text())["digest"]
    assert github_env.read_text().splitlines() == [
        "REGISTRY=ghcr.io/some-owner/lockstep",
        f"IMAGE=ghcr.io/some-owner/lockstep/lockstep@{digest}",
    ]


def test_push_is_make_push_to_that_registry_before_any_signing(workflow: dict[Any, Any]) -> None:
    script = _publish_script(workflow)
    assert 'make push REGISTRY="$REGISTRY"' in script
    assert script.index("make push") < script.index("cosign sign")


def test_cosign_signs_attests_and_verifies_the_digest_never_a_tag(workflow: dict[Any, Any]) -> None:
    commands = _commands(workflow, "cosign")
    verbs = [c[1] for c in commands]
    assert verbs == ["login", "sign", "attest", "attest", "verify", "verify-attestation"]
    for command in commands[1:]:
        assert command[-1] == "$IMAGE", f"{command}: must name $IMAGE (REGISTRY/lockstep@sha256:...)"
    assert "--yes" in commands[1]  # no prompt in CI
    attest = {c[c.index("--type") + 1]: c[c.index("--predicate") + 1] for c in commands[2:4]}
    assert attest == {
        "slsaprovenance1": "build/provenance.predicate.json",
        "cyclonedx": "image/sbom.cdx.json",
    }
    assert all("--key" not in c for c in commands), "keyless: no key in CI"


def test_slsaprovenance1_is_the_predicate_type_make_provenance_writes(workflow: dict[Any, Any]) -> None:
    """cosign's `--type slsaprovenance1` is https://slsa.dev/provenance/v1, the statement's type."""
    assert provenance.PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    script = _publish_script(workflow)
    for command in ("make provenance", "make verify-provenance", "make check-sbom"):
        assert command in script
    assert (
        "imagetool provenance predicate build/provenance.intoto.json build/provenance.predicate.json"
        in script
    )
    assert script.index("imagetool provenance predicate") < script.index("cosign attest")


def test_verification_expects_this_workflows_identity_and_github_s_issuer(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert publish["env"]["SIGNER_IDENTITY"] == "${{ github.server_url }}/${{ github.workflow_ref }}"
    assert publish["env"]["SIGNER_ISSUER"] == ISSUER
    checks = [c for c in _commands(workflow, "cosign") if c[1].startswith("verify")]
    for command in checks:
        assert command[command.index("--certificate-identity") + 1] == "$SIGNER_IDENTITY"
        assert command[command.index("--certificate-oidc-issuer") + 1] == "$SIGNER_ISSUER"
    [attestations] = [c for c in checks if c[1] == "verify-attestation"]
    assert attestations[attestations.index("--type") + 1] == "$type"
    assert "for type in slsaprovenance1 cyclonedx; do" in _publish_script(workflow)


def test_actions_and_cosign_are_pinned(workflow: dict[Any, Any], publish: dict[str, Any]) -> None:
    for job in workflow["jobs"]:
        for step in _steps(workflow, job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), step[
                    "uses"
                ]
    [installer] = [
        s for s in publish["steps"] if str(s.get("uses", "")).startswith("sigstore/cosign-installer@")
    ]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", installer["with"]["cosign-release"])


def test_publish_runs_are_never_cancelled_halfway(workflow: dict[Any, Any]) -> None:
    cancel = workflow["concurrency"]["cancel-in-progress"]
    assert "github.ref != 'refs/heads/main'" in cancel
    assert "!startsWith(github.ref, 'refs/tags/')" in cancel
