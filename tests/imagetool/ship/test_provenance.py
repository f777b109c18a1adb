"""SLSA v1 provenance: subject = image.lock's digest, every input with its hash, and a verifier
that names what differs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import contract
from imagetool.ship import provenance
from tests.integration.deploy.conftest import imagetool


def deps(statement: dict[str, object]) -> dict[str, dict[str, str]]:
    found = statement["predicate"]["buildDefinition"]["resolvedDependencies"]  # type: ignore[index]
    return {d["name"]: d["digest"] for d in found}


def test_statement_is_an_in_toto_slsa_v1_statement_about_the_locked_digest(repo_root: Path) -> None:
    statement = provenance.statement(repo_root)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    lock = json.loads((repo_root / "image.lock").read_text())
    arm64 = lock["platforms"]["linux/arm64"]["digest"]
    assert statement["subject"] == [  # each platform's manifest, then the index `make push` sends
        {"name": "lockstep", "digest": {"sha256": lock["digest"].removeprefix("sha256:")}},
        {"name": "lockstep:linux/arm64", "digest": {"sha256": arm64.removeprefix("sha256:")}},
        {"name": "lockstep:index", "digest": {"sha256": lock["index"]["digest"].removeprefix("sha256:")}},
    ]
    found = deps(statement)
    assert "image/base.arm64.lock.json" in found
    assert "store/arm64/base/rootfs.tar" in found
    assert any(name.startswith("store/arm64/wheels/numpy-") for name in found)


def test_statement_is_the_same_every_time(repo_root: Path) -> None:
    assert provenance.statement(repo_root) == provenance.statement(repo_root)


def test_every_input_is_a_resolved_dependency_with_its_hash(repo_root: Path) -> None:
    found = deps(provenance.statement(repo_root))
    lock = json.loads((repo_root / "image.lock").read_text())
    for name, sha256 in lock["inputs"]["sources"].items():
        assert found[name]["sha256"] == sha256
    for name, md5 in contract.locked_outs(contract.load_dvc_lock(repo_root / "dvc.lock")).items():
        assert found[name]["md5"] == md5
    store = json.loads((repo_root / "image/store.lock.json").read_text())["files"]
    assert found["store/base/rootfs.tar"] == {"sha256": store["base/rootfs.tar"]["sha256"]}
    assert any(name.startswith("store/wheels/numpy-") for name in found)
    for lock_file in ("requirements/build.txt", "image/base.lock.json", "image/store.lock.json"):
        assert lock_file in found


def test_verify_accepts_the_statement_of_this_tree(repo_root: Path) -> None:
    assert provenance.verify(provenance.statement(repo_root), repo_root) == []


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (lambda s: s["subject"][0]["digest"].update(sha256="0" * 64), "is not image.lock's"),
        (
            lambda s: s["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"].update(
                sha256="0" * 64
            ),
            "statement says {'sha256': '" + "0" * 64,
        ),
        (
            lambda s: s["predicate"]["buildDefinition"]["resolvedDependencies"].pop(),
            "missing from the statement",
        ),
        (lambda s: s.update(predicateType="https://example.invalid/other"), "not an in-toto"),
    ],
    ids=["wrong-subject", "altered-dependency", "missing-dependency", "other-predicate"],
)
def test_verify_names_what_differs(repo_root: Path, alter: object, message: str) -> None:
    statement = provenance.statement(repo_root)
    alter(statement)  # type: ignore[operator]
    problems = provenance.verify(statement, repo_root)
    assert any(message in p for p in problems), problems


def test_cli_writes_then_verifies_and_exits_1_on_a_tampered_statement(
    repo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "provenance.json"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return imagetool("provenance", *args, cwd=repo_root)

    assert cli("write", str(out)).returncode == 0
    assert cli("verify", str(out)).returncode == 0
    doc = json.loads(out.read_text())
    doc["subject"][0]["digest"]["sha256"] = "f" * 64
    out.write_text(json.dumps(doc))
    run = cli("verify", str(out))
    assert run.returncode == 1
    assert f"{out}: subject" in run.stderr


def test_cli_predicate_is_the_verified_statements_predicate_alone(repo_root: Path, tmp_path: Path) -> None:
    """What `cosign attest --type slsaprovenance1 --predicate` takes; refused for a tampered statement."""
    statement_file, out = tmp_path / "provenance.json", tmp_path / "predicate.json"
    statement = provenance.statement(repo_root)
    statement_file.write_text(json.dumps(statement))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return imagetool("provenance", "predicate", *args, cwd=repo_root)

    assert cli(str(statement_file), str(out)).returncode == 0
    assert json.loads(out.read_text()) == statement["predicate"]
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    statement_file.write_text(json.dumps(statement))
    out.unlink()
    run = cli(str(statement_file), str(out))
    assert run.returncode == 1
    assert f"{statement_file}: subject" in run.stderr
    assert not out.exists()
