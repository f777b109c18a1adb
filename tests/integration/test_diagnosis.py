"""The image tools' unhappy paths say exactly what moved: base drift, stale or tampered wheels, and
why `verify` cannot reproduce image.lock. The real CLIs run in throwaway copies of the repository."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import copy_repo
from imagetool.images import image
from imagetool.inputs import base
from tests.integration.conftest import imagetool_cli

LOCK_LINE = "If the change is intended: `make lock-image`."


def _cli(repo: Path, verb: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetool", verb, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def _link_store(repo: Path, folder: str) -> None:
    """Hard links to this tree's store files (read only: the tools replace files, never write into them)."""
    for src in (ROOT / "store" / folder).glob("*"):
        dest = repo / "store" / folder / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dest)


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


# --- base drift ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locked", "now", "explanation"),
    [
        ({"a": "1"}, {"a": "1", "b": "2"}, ["  + b 2 (new)"]),
        ({"a": "1", "b": "2"}, {"a": "1"}, ["  - b 2 (gone)"]),
        ({"a": "1"}, {"a": "1.1"}, ["  ~ a 1 -> 1.1"]),
        ({"a": "1"}, {"a": "1"}, []),
    ],
    ids=["added", "removed", "version-changed", "unchanged"],
)
def test_package_changes_name_each_kind_of_move(
    locked: dict[str, str], now: dict[str, str], explanation: list[str]
) -> None:
    assert base.package_changes(locked, now) == explanation


def test_drift_with_no_package_moved_says_the_bytes_differ() -> None:
    assert base.drift_explanation({"a": "1"}, {"a": "1"}) == (
        "the same package versions as image/base.lock.json, other bytes: another mmdebstrap or dpkg, "
        "or a non-deterministic build (compare the two tarballs with diffoscope)"
    )
    assert base.drift_explanation({"a": "1"}, {"a": "2"}) == (
        "1 packages differ from image/base.lock.json:\n  ~ a 1 -> 2"
    )


def test_base_check_names_a_changed_definition_and_ignores_comments(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    toml = repo / "image/base.toml"
    toml.write_text("# a new comment\n" + toml.read_text())
    assert _cli(repo, "base", "check").returncode == 0
    toml.write_text(toml.read_text().replace('include = ["python3", ', 'include = ["python3", "curl", '))
    proc = _cli(repo, "base", "check")
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: image/base.toml changed since image/base.lock.json was written; run `make lock-base`\n"
    )


@pytest.mark.slow
def test_rederive_base_explains_which_packages_moved(tmp_path: Path) -> None:
    """mmdebstrap really rebuilds the base from the stored .debs; the lock says other packages."""
    repo = copy_repo(tmp_path / "repo")
    _link_store(repo, "base/debs")
    lock_path = repo / "image/base.lock.json"
    real = json.loads(lock_path.read_text())["packages"]

    def drift(lock: dict) -> None:  # type: ignore[type-arg]
        lock["tarball"]["sha256"] = "0" * 64
        lock["packages"]["python3"] = "0-locked"
        del lock["packages"]["libstdc++6"]
        lock["packages"]["ghost"] = "1.0"

    _edit_json(lock_path, drift)
    proc = _cli(repo, "store", "rederive-base")
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr[proc.stderr.index("error: ") :]
    assert error.startswith("error: build/base/rederived.tar: re-derived from store/base/debs with sha256 ")
    assert error.endswith(
        f"; 3 packages differ from image/base.lock.json:\n"
        f"  - ghost 1.0 (gone)\n"
        f"  + libstdc++6 {real['libstdc++6']} (new)\n"
        f"  ~ python3 0-locked -> {real['python3']}\n"
    )


# --- wheels --------------------------------------------------------------------------------------


def test_make_wheels_removes_stale_files_and_replaces_a_tampered_wheel(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    _link_store(repo, "wheels")
    wheels_dir = repo / "build/wheels"
    stale = wheels_dir / "old_pkg-0.1-py3-none-any.whl"
    stale.write_bytes(b"no lock names me")
    junk = wheels_dir / "notes.txt"
    junk.write_text("left behind")
    tampered = next(wheels_dir.glob("idna-*.whl"))
    good = tampered.read_bytes()
    tampered.unlink()  # a hard link to the real wheel: replace it, never write through it
    tampered.write_bytes(good + b"\0")
    bad_sha = hashlib.sha256(good + b"\0").hexdigest()

    check = _cli(repo, "wheels", "check")
    assert check.returncode == 1
    assert f"build/wheels/{stale.name}: not in the locks (stale; rerun `make wheels`)" in check.stderr
    assert f"build/wheels/{tampered.name}: sha256 {bad_sha} is not one of the hashes locked" in check.stderr

    proc = _cli(repo, "wheels", "download")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    replaced = f"build/wheels/{tampered.name} (sha256 {bad_sha} is not the locked one)"
    assert f"wheels: replacing {replaced} from the store" in lines
    assert f"wheels: removing build/wheels/{stale.name}" in lines
    assert "wheels: removing build/wheels/notes.txt" in lines
    assert not stale.exists()
    assert not junk.exists()
    assert tampered.read_bytes() == good
    assert _cli(repo, "wheels", "check").returncode == 0


# --- verify: which input differs from image.lock -------------------------------------------------


def _append(path: str, text: str) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        with (repo / path).open("a") as f:
            f.write(text)

    return change


def _lock_records_other_model(repo: Path) -> None:
    _edit_json(repo / "image.lock", lambda lock: lock["inputs"].update(model_md5="0" * 32))


def _base_lock_comment(repo: Path) -> None:
    _edit_json(repo / "image/base.lock.json", lambda lock: lock.update(comment="edited"))


@pytest.mark.docker
@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            _append("requirements/serve.txt", "# a comment\n"),
            "requirements_sha256: the Python dependencies changed (requirements/serve.txt): ",
        ),
        (_base_lock_comment, "base_lock_sha256: the Debian base moved (image/base.lock.json changed): "),
        (
            _append("api/__init__.py", "\n# changed\n"),
            "source_tree_sha256: the service source or build recipe changed: api/__init__.py (changed)",
        ),
        (_lock_records_other_model, f"model_md5: a changed model (models/model.joblib): {'0' * 32} -> "),
    ],
    ids=["serve-lock", "base", "source", "model"],
)
def test_verify_names_the_input_that_differs_from_image_lock(
    repo_copy: Callable[[], Path], change: Callable[[Path], None], line: str
) -> None:
    repo = repo_copy()
    locked = json.loads((repo / "image.lock").read_text())
    change(repo)
    for command in ("verify", "check"):
        proc = imagetool_cli(repo, command)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.splitlines()
        if command == "verify":
            assert lines[0] == (
                # the platform first: `make verify` rebuilds each one (imagetool/platforms.py)
                f"error: linux/amd64: cannot reproduce {locked['digest']}: the inputs differ from image.lock:"
            )
        assert len(lines) == 3, proc.stderr  # that input alone, then what to do
        assert lines[1].startswith(f"  {line}"), proc.stderr
        assert lines[2] == LOCK_LINE
    assert not (repo / "build/image").exists(), "nothing is built when the inputs differ"


@pytest.mark.docker
@pytest.mark.slow
def test_verify_with_equal_inputs_but_another_digest_names_the_builders(
    repo_copy: Callable[[], Path],
) -> None:
    """image.lock written by another builder: two real --no-cache rebuilds agree with each other."""
    repo = repo_copy()
    real_digest = json.loads((repo / "image.lock").read_text())["digest"]

    def elsewhere(lock: dict) -> None:  # type: ignore[type-arg]
        lock["digest"] = "sha256:" + "0" * 64
        lock["built_with"]["engine"] = "0.0.0-elsewhere"

    _edit_json(repo / "image.lock", elsewhere)
    locked_builder = json.loads((repo / "image.lock").read_text())["built_with"]
    proc = imagetool_cli(repo, "verify")
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr[proc.stderr.index("error: ") :].splitlines()
    here = image.builder_identity()
    assert (
        error[0] == f"error: linux/amd64: rebuild gives {real_digest}, image.lock says sha256:{'0' * 64}; "
        "all inputs are equal."
    )
    assert error[1] == (
        f"The builder differs: image.lock was built with engine 0.0.0-elsewhere, buildx "
        f"{locked_builder['buildx']}, containerd {locked_builder['containerd']}; this host builds with "
        f"engine {here['engine']}, buildx {here['buildx']}, containerd {here['containerd']}."
    )
    assert error[-1].startswith("Two --no-cache builds on this host agree with each other")
