"""The GitHub Actions workflow users copy: every check, inputs from the store, two BuildKit versions.

It cannot be executed here (no GitHub), so its structure is checked instead: the steps, their
shell syntax, where the store comes from (DVC remote from secrets, else a cache keyed by the store
lock), that a second job builds with the hosted runner's own Docker, and that the publish job pushes
both platforms' images and image.lock's index to GHCR, signs, attests and verifies them, with the
permissions scoped to that job.
"""

from __future__ import annotations

import hashlib
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

from imagetool.ship import provenance

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
    # `make verify` takes the runner's Docker as a user's (tests/integration/test_user_engine.py): no
    # `sudo`, so nothing could be installed system-wide, and no job container.
    assert "make verify PLATFORM=linux/amd64" in script
    assert "sudo make" not in script


# --- publish: no build, the tarball checked against image.lock, pushed, signed, verified ---------------

ISSUER = "https://token.actions.githubusercontent.com"
ON_PUBLISH = (
    "github.event_name == 'push' && (github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/tags/'))"
)
PUSH = 'python3 -m imagetool registry push "$REGISTRY" --oci "$OCI" --index --sbom-dir image'


@pytest.fixture(scope="module")
def publish(workflow: dict[Any, Any]) -> dict[str, Any]:
    job = workflow["jobs"]["publish"]
    assert isinstance(job, dict)
    return job


def _script(workflow: dict[Any, Any], job: str = "publish", step: str | None = None) -> str:
    """The job's scripts (or the one step whose name starts with `step`), continuation lines joined."""
    steps = [s for s in _steps(workflow, job) if "run" in s and (step is None or s["name"].startswith(step))]
    assert steps, f"{job}: no step {step!r}"
    return "\n".join(s["run"] for s in steps).replace("\\\n", " ")


def _commands(script: str, program: str) -> list[list[str]]:
    lines = [line.strip() for line in script.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(f"{program} ")]


def test_publish_runs_after_the_digest_proofs_on_pushes_to_main_and_tags_only(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert {"ci", "hosted-docker"} <= set(publish["needs"])
    assert any("make verify" in script for script in _runs(workflow, "ci"))
    assert " ".join(publish["if"].split()) == ON_PUBLISH


def test_publish_runs_no_build_step_and_no_project_dependency(publish: dict[str, Any]) -> None:
    """Third-party code from the build (pip packages, Debian packages, the engine) never runs
    beside the write permissions and the OIDC token: the job has no container, no make, no venv."""
    assert "container" not in publish, "no privileged job container"
    script = "\n".join(step.get("run", "") for step in publish["steps"])
    for forbidden in ("make ", ".venv", "pip ", "apt-get", "dvc ", "docker "):
        assert forbidden not in script, forbidden
    # The one piece of the project it runs is the push client, with the runner's python3.
    assert [line.strip() for line in script.splitlines() if "python" in line] == [PUSH]


def test_the_push_client_imports_only_the_standard_library(repo_root: Path) -> None:
    """What the publish job runs with the runner's bare python3 must need nothing installed."""
    code = (
        f"import sys; sys.path.insert(0, {str(repo_root)!r}); import imagetool.ship.registry; "
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=repo_root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['__main__', 'imagetool']"


def test_ci_hands_the_verified_tarball_and_predicate_to_publish_as_an_artifact(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    ci_steps = _steps(workflow, "ci")
    [upload] = [s for s in ci_steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert " ".join(upload["if"].split()) == ON_PUBLISH
    assert upload["with"]["name"] == "image"
    assert upload["with"]["path"].split() == [
        "build/image/verify.oci.tar",
        "build/image/verify-arm64.oci.tar",
        "build/provenance.predicate.json",
    ]
    names = [s.get("name", s.get("uses")) for s in ci_steps]
    verify = next(i for i, s in enumerate(ci_steps) if s.get("run") == "make verify")
    assert verify < names.index(upload["name"])  # `make verify` wrote both tarballs and proved them
    [download] = [
        s for s in publish["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@")
    ]
    assert download["with"] == {"name": "image", "path": "build"}
    assert publish["env"]["OCI"] == "build/image/verify.oci.tar"


def test_the_tarball_digest_is_checked_against_image_lock_before_anything_else(
    publish: dict[str, Any],
) -> None:
    runs = [s for s in publish["steps"] if "run" in s]
    assert runs[0]["name"].startswith("The tarballs hold image.lock's digests")


def _oci_tarball(path: Path, manifest: bytes, digest: str) -> Path:
    """A minimal OCI layout tarball: index.json naming `digest`, and the manifest blob."""
    import io
    import tarfile

    index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": digest, "size": len(manifest)}]})
    with tarfile.open(path, "w") as tf:
        for name, data in (("index.json", index.encode()), (f"blobs/sha256/{digest[7:]}", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "case",
    ["locked", "other-digest-in-lock", "other-arm64-digest-in-lock", "manifest-bytes-changed", "no-arm64"],
    ids=lambda c: str(c),
)
def test_the_digest_check_passes_only_for_image_lock_s_manifests(
    workflow: dict[Any, Any], tmp_path: Path, case: str
) -> None:
    """The step's own script, run here with tar, jq and sha256sum, on the two platforms' tarballs
    (as `make verify` names them) it must accept or refuse."""
    manifests = {"amd64": b'{"schemaVersion":2}', "arm64": b'{"schemaVersion":2,"arm64":1}'}
    digests = {arch: "sha256:" + hashlib.sha256(body).hexdigest() for arch, body in manifests.items()}
    oci = _oci_tarball(
        tmp_path / "verify.oci.tar",
        manifests["amd64"] if case != "manifest-bytes-changed" else b"{}",
        digests["amd64"],
    )
    if case != "no-arm64":
        _oci_tarball(tmp_path / "verify-arm64.oci.tar", manifests["arm64"], digests["arm64"])
    other = "sha256:" + "0" * 64
    lock = {
        "digest": digests["amd64"] if case != "other-digest-in-lock" else other,
        "platforms": {
            "linux/arm64": {"digest": digests["arm64"] if case != "other-arm64-digest-in-lock" else other}
        },
    }
    (tmp_path / "image.lock").write_text(json.dumps(lock))
    script = _script(workflow, step="The tarballs hold image.lock's digests")
    env = {**os.environ, "OCI": str(oci), "RUNNER_TEMP": str(tmp_path / "runner")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert (done.returncode == 0) == (case == "locked"), done.stdout + done.stderr


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
        PUSH,
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


def test_image_step_names_the_lowercased_ghcr_repository_at_image_lock_digests(
    workflow: dict[Any, Any], repo_root: Path, tmp_path: Path
) -> None:
    """The step's own script, run here: GITHUB_ENV gets REGISTRY, IMAGE = REGISTRY/lockstep@<index>
    (what the deploy files pin) and each platform's manifest."""
    script = _script(workflow, step="Image name")
    github_env = tmp_path / "github_env"
    env = {**os.environ, "GITHUB_REPOSITORY": "Some-Owner/Lockstep", "GITHUB_ENV": str(github_env)}
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo_root, env=env, check=True)
    lock = json.loads((repo_root / "image.lock").read_text())
    name = "ghcr.io/some-owner/lockstep/lockstep"
    assert github_env.read_text().splitlines() == [
        "REGISTRY=ghcr.io/some-owner/lockstep",
        f"IMAGE={name}@{lock['index']['digest']}",
        f"IMAGE_AMD64={name}@{lock['digest']}",
        f"IMAGE_ARM64={name}@{lock['platforms']['linux/arm64']['digest']}",
    ]


def test_push_comes_before_any_signing(workflow: dict[Any, Any]) -> None:
    script = _script(workflow)
    assert PUSH in script
    assert script.index(PUSH) < script.index("cosign sign")


SIGN_STEPS = {"keyless": "Sign and attest keyless", "key": "Sign and attest with the repository's key"}


@pytest.mark.parametrize("mode", list(SIGN_STEPS))
def test_cosign_signs_attests_and_verifies_the_digests_never_a_tag(
    workflow: dict[Any, Any], mode: str
) -> None:
    """The index and (--recursive) each manifest signed; the provenance attested to the index,
    each platform's SBOM to its own manifest; every one verified. All by digest."""
    [step] = [s for s in _steps(workflow, "publish") if s.get("name", "").startswith(SIGN_STEPS[mode])]
    assert step["if"] == f"env.SIGNING == '{mode}'"
    commands = [
        c for c in _commands(_script(workflow, step=SIGN_STEPS[mode]), "cosign") if c[1] != "public-key"
    ]
    assert [(c[1], c[-1]) for c in commands] == [
        ("sign", "$IMAGE"),
        ("attest", "$IMAGE"),
        ("attest", "$IMAGE_AMD64"),
        ("attest", "$IMAGE_ARM64"),
        ("verify", "$IMAGE"),
        ("verify-attestation", "$IMAGE"),
        ("verify", "$image"),
        ("verify-attestation", "$image"),
    ]
    assert 'for image in "$IMAGE_AMD64" "$IMAGE_ARM64"; do' in step["run"]
    assert "--recursive" in commands[0]
    for command in commands[:4]:
        assert "--yes" in command  # no prompt in CI
    attest = {(c[c.index("--type") + 1], c[c.index("--predicate") + 1], c[-1]) for c in commands[1:4]}
    assert attest == {
        ("slsaprovenance1", "build/provenance.predicate.json", "$IMAGE"),
        ("cyclonedx", "image/sbom.cdx.json", "$IMAGE_AMD64"),
        ("cyclonedx", "image/sbom.arm64.cdx.json", "$IMAGE_ARM64"),
    }
    checks = {(c[-1], c[c.index("--type") + 1]) for c in commands if c[1] == "verify-attestation"}
    assert checks == {("$IMAGE", "slsaprovenance1"), ("$image", "cyclonedx")}
    if mode == "keyless":
        assert all("--key" not in c for c in commands)
    else:
        assert all(c[c.index("--key") + 1] == "env://COSIGN_PRIVATE_KEY" for c in commands[:4])
        assert all(c[c.index("--key") + 1] == "$RUNNER_TEMP/cosign.pub" for c in commands[4:])


def test_the_signing_key_is_optional_and_reaches_only_the_key_step(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert publish["env"]["SIGNING"] == "${{ secrets.COSIGN_PRIVATE_KEY != '' && 'key' || 'keyless' }}"
    holders = [s for s in publish["steps"] if "secrets.COSIGN_PRIVATE_KEY" in yaml.safe_dump(s)]
    assert [s["name"] for s in holders] == [
        next(s["name"] for s in holders if s["name"].startswith(SIGN_STEPS["key"]))
    ]
    assert holders[0]["env"] == {
        "COSIGN_PRIVATE_KEY": "${{ secrets.COSIGN_PRIVATE_KEY }}",
        "COSIGN_PASSWORD": "${{ secrets.COSIGN_PASSWORD }}",
    }
    for name, job in workflow["jobs"].items():
        if name != "publish":
            assert "COSIGN" not in yaml.safe_dump(job)


def test_slsaprovenance1_is_the_predicate_type_make_provenance_writes(workflow: dict[Any, Any]) -> None:
    """cosign's `--type slsaprovenance1` is https://slsa.dev/provenance/v1, the statement's type;
    `ci` writes and checks the predicate before it hands it over."""
    assert provenance.PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    script = _script(workflow, "ci", step="Provenance and SBOM match the tree")
    for command in ("make image", "make provenance", "make verify-provenance", "make check-sbom"):
        assert command in script
    assert (
        "imagetool provenance predicate build/provenance.intoto.json build/provenance.predicate.json"
        in script
    )


def test_verification_expects_this_workflows_identity_and_github_s_issuer(
    workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    assert publish["env"]["SIGNER_IDENTITY"] == "${{ github.server_url }}/${{ github.workflow_ref }}"
    assert publish["env"]["SIGNER_ISSUER"] == ISSUER
    script = _script(workflow, step=SIGN_STEPS["keyless"])
    checks = [c for c in _commands(script, "cosign") if c[1].startswith("verify")]
    for command in checks:
        assert command[command.index("--certificate-identity") + 1] == "$SIGNER_IDENTITY"
        assert command[command.index("--certificate-oidc-issuer") + 1] == "$SIGNER_ISSUER"
    assert len(checks) == 4


def test_every_action_is_pinned_by_commit_with_its_tag_beside_it(
    repo_root: Path, workflow: dict[Any, Any], publish: dict[str, Any]
) -> None:
    """A tag can be moved to other code; a commit cannot. The comment says which release it is."""
    lines = [ln for ln in (repo_root / WORKFLOW).read_text().splitlines() if re.match(r"\s*(- )?uses:", ln)]
    assert len(lines) == sum("uses" in s for job in workflow["jobs"] for s in _steps(workflow, job))
    for line in lines:
        assert re.fullmatch(r"\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+(\.\d+)*", line), line
    [installer] = [
        s for s in publish["steps"] if str(s.get("uses", "")).startswith("sigstore/cosign-installer@")
    ]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", installer["with"]["cosign-release"])


def test_publish_runs_are_never_cancelled_halfway(workflow: dict[Any, Any]) -> None:
    cancel = workflow["concurrency"]["cancel-in-progress"]
    assert "github.ref != 'refs/heads/main'" in cancel
    assert "!startsWith(github.ref, 'refs/tags/')" in cancel
