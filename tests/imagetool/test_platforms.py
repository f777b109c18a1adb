"""imagetool.platforms: the platform table, choosing a platform, each platform's record in image.lock and
the index over them (no build); and the refusals, each one line and exit 2: no binfmt handler, an
unknown platform, a store without an arm64 input. The arm64 builds are
tests/integration/test_platforms.py's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import venv_env
from imagetool import platforms
from imagetool.common import InputError
from imagetool.images import image
from imagetool.images.image_lock import ImageLock, computed_index
from imagetool.platforms import AMD64, ARM64

LOCK = json.loads((ROOT / "image.lock").read_text())


# --- the table and the lock (no build) ----------------------------------------------------------


def test_amd64_keeps_the_paths_it_had_before_arm64() -> None:
    """amd64's store, base and wheels did not move, so neither did its digest."""
    assert AMD64.base_lock(ROOT) == ROOT / "image/base.lock.json"
    assert AMD64.rootfs(ROOT / "build") == ROOT / "build/base/rootfs.tar"
    assert AMD64.wheels(ROOT / "build") == ROOT / "build/wheels"
    assert image.oci_tar(AMD64).name == "lockstep.oci.tar"
    assert ARM64.base_lock(ROOT) == ROOT / "image/base.arm64.lock.json"
    assert ARM64.wheels(ROOT / "build") == ROOT / "build/wheels-arm64"
    assert image.latest_tag(ARM64) == "lockstep:latest-arm64"


def test_wheel_tags_are_the_platforms_own() -> None:
    assert all(t.endswith("_aarch64") for t in ARM64.wheel_platform_tags(36))
    assert all(t.endswith("_x86_64") for t in AMD64.wheel_platform_tags(36))
    assert "manylinux_2_28_aarch64" in ARM64.wheel_platform_tags(36)
    assert "manylinux_2_37_aarch64" not in ARM64.wheel_platform_tags(36)  # Debian 12's glibc is 2.36


def test_a_platform_is_chosen_by_flag_then_environment_then_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM", "")
    assert platforms.chosen("") == [AMD64, ARM64]
    assert platforms.chosen("all") == [AMD64, ARM64]
    assert platforms.chosen("linux/arm64") == [ARM64]
    monkeypatch.setenv("PLATFORM", "linux/arm64")
    assert platforms.chosen("") == [ARM64]
    assert platforms.chosen("linux/amd64") == [AMD64]
    with pytest.raises(InputError, match=r"unknown platform 'linux/s390x': choose linux/amd64, linux/arm64"):
        platforms.chosen("linux/s390x")


def test_image_lock_records_each_platform_and_the_index_over_them() -> None:
    arm = ImageLock(LOCK).record(ARM64)
    assert arm["inputs"]["platform"] == "linux/arm64"
    assert LOCK["inputs"]["platform"] == "linux/amd64"
    # One model, one source tree, one serve lock: only the base (and so its epoch) differs.
    for key in ("model_md5", "source_tree_sha256", "requirements_sha256"):
        assert arm["inputs"][key] == LOCK["inputs"][key], key
    index = computed_index(LOCK)
    assert index == LOCK["index"]
    assert index is not None
    assert index["manifests"] == {
        "linux/amd64": {"digest": LOCK["digest"], "size": LOCK["manifest_size"]},
        "linux/arm64": {"digest": arm["digest"], "size": arm["manifest_size"]},
    }
    body = json.loads(platforms.index_bytes(index["manifests"]))
    assert body["mediaType"] == platforms.INDEX_MEDIA_TYPE
    assert [m["platform"] for m in body["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]


def test_the_index_follows_every_manifest() -> None:
    other = json.loads(json.dumps(LOCK))
    other["platforms"]["linux/arm64"]["digest"] = "sha256:" + "0" * 64
    changed = computed_index(other)
    assert changed is not None
    assert changed["digest"] != LOCK["index"]["digest"]
    del other["platforms"]["linux/arm64"]["manifest_size"]
    assert computed_index(other) is None  # no index until every platform is recorded


def test_a_lock_without_the_platform_names_the_command_that_adds_it() -> None:
    without = {k: v for k, v in LOCK.items() if k != "platforms"}
    with pytest.raises(
        InputError, match=r"no linux/arm64 record; run `make lock-image PLATFORM=linux/arm64`"
    ):
        ImageLock(without).record(ARM64)


# --- refusals, each one line and exit 2 ----------------------------------------------------------


def _imagetool(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetool", *args],
        cwd=ROOT,
        env=venv_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_without_a_binfmt_handler_arm64_is_refused_saying_how_to_register_one(tmp_path: Path) -> None:
    """An empty binfmt_misc folder stands for a host where nobody registered qemu."""
    if ARM64.native():
        pytest.skip("an aarch64 host runs arm64 natively")
    for args in (
        ("image", "build", "--platform", "linux/arm64"),
        ("base", "lock", "--platform", "linux/arm64"),
    ):
        line = _one_error_line(_imagetool(*args, LOCKSTEP_BINFMT_DIR=str(tmp_path)))
        assert "linux/arm64: this x86_64 host has no binfmt_misc handler for aarch64" in line
        assert "`make binfmt`" in line
        assert "`make image PLATFORM=linux/amd64` works without it" in line
    # ...and the native platform does not need one.
    proc = _imagetool("image", "check", "--platform", "linux/amd64", LOCKSTEP_BINFMT_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_platform_is_one_line() -> None:
    line = _one_error_line(_imagetool("image", "check", "--platform", "linux/riscv64"))
    assert line == "error: unknown platform 'linux/riscv64': choose linux/amd64, linux/arm64"


def test_a_store_without_an_arm64_input_names_it(tmp_path: Path) -> None:
    """A repo copy whose store lacks one arm64 wheel, offline: the wheel is named, nothing fetched."""
    repo = tmp_path / "repo"
    for item in ("imagetool", "image", "requirements", "contract", "store.dvc", "requirements.txt"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, repo / item)
        else:
            shutil.copy2(src, repo / item)
    store = repo / "store"
    shutil.copytree(ROOT / "store/arm64", store / "arm64", copy_function=os.link)  # the whole group
    [victim] = sorted((store / "arm64/wheels").glob("numpy-*.whl"))
    victim.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "imagetool", "wheels", "download", "--platform", "linux/arm64"],
        cwd=repo,
        env=venv_env(LOCKSTEP_OFFLINE="1", PYTHONPATH=str(repo)),
        capture_output=True,
        text=True,
        check=False,
    )
    line = _one_error_line(proc)
    assert f"store/arm64/wheels/{victim.name}" in line
    assert not (repo / "build/wheels-arm64" / victim.name).exists()
