"""Bad or tampered inputs stop the build before BuildKit runs, naming the file; nothing is
built, loaded, tagged or recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import imagetool_cli

pytestmark = [pytest.mark.docker]


def _assert_refused(repo: Path, *names: str, command: str = "build") -> str:
    args = [command, "--no-load"] if command == "build" else [command]
    proc = imagetool_cli(repo, *args)
    assert proc.returncode == 1, proc.stderr
    for name in names:
        assert name in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo / "build/image/lockstep.oci.tar").exists(), "a refused build left an image behind"
    assert not (repo / "build/image/last-build.json").exists(), "a refused build was recorded"
    return proc.stderr


@pytest.mark.parametrize("artifact", ["models/model.onnx", "models/serving.json", "models/metadata.json"])
def test_flipped_model_byte_is_refused_with_dvc_hint(repo_copy: Callable[[], Path], artifact: str) -> None:
    repo = repo_copy()
    model = repo / artifact
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    err = _assert_refused(repo, artifact, "dvc.lock")
    assert "dvc repro" in err
    assert "dvc pull" in err


def test_wheel_with_wrong_hash_is_refused(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    wheel = next((repo / "build/wheels").glob("idna-*.whl"))
    data = wheel.read_bytes()
    wheel.unlink()  # a hard link to the real wheel: replace it, never write through it
    wheel.write_bytes(data + b"\0")
    err = _assert_refused(repo, f"build/wheels/{wheel.name}")
    assert "not one of the hashes locked" in err


def test_edited_base_lock_is_refused(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    lock_path = repo / "image/base.lock.json"
    lock = json.loads(lock_path.read_text())
    sha = lock["tarball"]["sha256"]
    lock["tarball"]["sha256"] = ("0" if sha[0] != "0" else "1") + sha[1:]
    lock_path.write_text(json.dumps(lock))
    _assert_refused(repo, "image/base.lock.json", "build/base/rootfs.tar")


def test_edited_image_lock_fails_verify_naming_the_input(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    lock_path = repo / "image.lock"
    lock = json.loads(lock_path.read_text())
    lock["inputs"]["model_md5"] = "0" * 32
    lock_path.write_text(json.dumps(lock))
    err = _assert_refused(repo, "image.lock", "model_md5", "a changed model", command="verify")
    assert "cannot reproduce" in err


def test_hand_edited_source_list_in_image_lock_is_refused(repo_copy: Callable[[], Path]) -> None:
    repo = repo_copy()
    lock_path = repo / "image.lock"
    lock = json.loads(lock_path.read_text())
    lock["inputs"]["sources"]["api/__init__.py"] = "0" * 64
    lock_path.write_text(json.dumps(lock))
    _assert_refused(repo, "image.lock", "edited by hand", command="verify")


@pytest.mark.parametrize(
    ("change", "named", "hint"),
    [
        pytest.param(
            lambda r: (r / "api/healthcheck.py").unlink(), "api/healthcheck.py", "incomplete", id="incomplete"
        ),
        pytest.param(
            lambda r: (r / "models/metadata.json").unlink(), "models/metadata.json", "dvc pull", id="no-model"
        ),
        pytest.param(
            lambda r: (r / "api/stray_notes.py").write_text("SECRET = 1\n"),
            "api/stray_notes.py",
            "not tracked by git",
            id="untracked",
        ),
        pytest.param(
            lambda r: (r / "build/base/rootfs.tar").unlink(),
            "build/base/rootfs.tar",
            "make base",
            id="no-base",
        ),
    ],
)
def test_build_from_a_bad_context_is_refused_naming_the_file(
    repo_copy: Callable[[], Path], change: Callable[[Path], object], named: str, hint: str
) -> None:
    repo = repo_copy()
    change(repo)
    assert hint in _assert_refused(repo, named)


def test_serving_plan_of_another_model_is_refused_even_when_dvc_lock_agrees(
    repo_copy: Callable[[], Path],
) -> None:
    repo = repo_copy()
    serving = repo / "models/serving.json"
    old = hashlib.md5(serving.read_bytes()).hexdigest()
    doc = json.loads(serving.read_text())
    doc["model"]["md5"] = "0" * 32
    serving.write_text(json.dumps(doc))
    lock = repo / "dvc.lock"
    lock.write_text(lock.read_text().replace(old, hashlib.md5(serving.read_bytes()).hexdigest()))
    err = _assert_refused(repo, "models/serving.json", "models/model.joblib")
    assert "dvc repro" in err
