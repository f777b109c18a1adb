"""Durable inputs: from a fresh clone and a filled DVC remote, with the network taken away
(`unshare -n`: loopback only, so any fetch from PyPI or a Debian mirror fails), the engine
installs and `make verify` reproduces image.lock's digest. An altered stored file is refused,
naming it and both hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import copy_repo
from imagetool.inputs import store

pytestmark = [pytest.mark.docker, pytest.mark.slow]

VENV = Path(sys.executable).parent.parent
MAKE = ["make", "--no-print-directory", f"VENV={VENV}"]  # this venv: a fresh clone's would need PyPI
LOCKED_DIGEST = json.loads((ROOT / "image.lock").read_text())["digest"]


def _run(cmd: list[str], cwd: Path, offline: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    full = ["unshare", "-n", *cmd] if offline else cmd
    return subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _dvc(*args: str) -> list[str]:
    return [str(VENV / "bin/dvc"), *args]


def _clone(dest: Path, remote: Path) -> Path:
    """A fresh clone (no build/, no outputs, no DVC cache) whose default DVC remote is ``remote``."""
    copy_repo(dest, with_store=True)
    _ok(_run(["git", "init", "-q"], dest))
    _ok(_run(["git", "add", "-A"], dest))
    _ok(_run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "c"], dest))
    _ok(_run(_dvc("remote", "add", "--local", "-d", "test", str(remote)), dest))
    return dest


@pytest.fixture(scope="module")
def filled_remote(tmp_path_factory: pytest.TempPathFactory, built_inputs: None) -> Path:
    """A directory remote holding the model and the whole store, pushed from this tree's DVC cache."""
    _ok(_run([sys.executable, "-m", "imagetool", "store", "check"], ROOT))
    tmp = tmp_path_factory.mktemp("remote")
    remote = tmp / "remote"
    pusher = _clone(tmp / "pusher", remote)
    _ok(_run(_dvc("config", "--local", "cache.dir", str(ROOT / ".dvc/cache")), pusher))
    _ok(_run(_dvc("push", "--quiet"), pusher))
    return remote


@pytest.fixture(scope="module")
def offline_clone(filled_remote: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = _clone(tmp_path_factory.mktemp("fresh") / "clone", filled_remote)
    _ok(_run(_dvc("pull", "--quiet"), clone, offline=True))
    return clone


def test_fresh_clone_engine_and_verify_succeed_without_network(offline_clone: Path) -> None:
    proc = _run([*MAKE, "engine", "verify"], offline_clone, offline=True)
    out = _ok(proc)
    assert out.strip().splitlines()[-1] == LOCKED_DIGEST
    assert "verified" in proc.stderr
    assert "nothing fetched from the network" in proc.stderr
    assert "(network)" not in proc.stderr


def test_engine_installs_from_the_store_into_a_fresh_debian_root_without_network(
    offline_clone: Path, tmp_path: Path
) -> None:
    """This host has an engine already, so `make engine`'s install runs against a fresh Debian 12
    root (the base rootfs: no Docker, no apt state) with dpkg --root, offline."""
    root = tmp_path / "debian12"
    root.mkdir()
    _ok(_run(["tar", "-xf", str(offline_clone / "store/base/rootfs.tar"), "-C", str(root)], tmp_path))
    assert not (root / "usr/sbin/dockerd").exists()
    proc = _run(
        [sys.executable, "-m", "imagetool", "store", "install-engine", "--root", str(root)],
        offline_clone,
        True,
    )
    _ok(proc)
    assert "no mirror" in proc.stderr
    for cmd, expect in (
        (["dockerd", "--version"], "Docker version 26"),
        (["containerd", "--version"], "containerd"),
        (["docker", "buildx", "version"], "buildx"),
        (["runc", "--version"], "runc version"),
        (["mmdebstrap", "--version"], "mmdebstrap"),
    ):
        assert expect in _ok(_run(["chroot", str(root), *cmd], tmp_path, offline=True))
    _ok(_run(["chroot", str(root), "dpkg", "--audit"], tmp_path, offline=True))


@pytest.mark.parametrize(
    ("pattern", "target"),
    [("wheels/idna-*.whl", "verify"), ("engine/debs/runc_*.deb", "store")],
)
def test_altered_file_in_the_remote_is_refused_naming_it_and_both_hashes(
    filled_remote: Path, tmp_path: Path, pattern: str, target: str
) -> None:
    [original] = sorted(store.STORE.glob(pattern))
    data = original.read_bytes()
    # A copy of the remote (hard links) in which one object is replaced by altered bytes.
    remote = tmp_path / "remote"
    shutil.copytree(filled_remote, remote, copy_function=os.link)
    md5 = hashlib.md5(data).hexdigest()
    obj = remote / "files/md5" / md5[:2] / md5[2:]
    assert obj.is_file(), f"{obj}: the remote does not hold {original.name}"
    obj.unlink()
    obj.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    clone = _clone(tmp_path / "clone", remote)
    _run(_dvc("pull", "--quiet"), clone, offline=True)  # may or may not notice; the build must
    proc = _run([*MAKE, target], clone, offline=True)
    assert proc.returncode != 0
    name = original.relative_to(store.STORE).as_posix()
    assert f"store/{name}" in proc.stderr, proc.stderr
    assert hashlib.sha256(data).hexdigest() in proc.stderr
    assert hashlib.sha256(data[:-1] + bytes([data[-1] ^ 1])).hexdigest() in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (clone / "build/image/verify.oci.tar").exists()


def test_missing_base_is_re_derived_from_the_stored_debs_without_network(
    filled_remote: Path, tmp_path: Path
) -> None:
    """The store keeps the base's .debs so the rootfs can be rebuilt, bit for bit, with no mirror
    (here with no DVC remote either: only the .debs are there)."""
    clone = _clone(tmp_path / "clone", filled_remote)
    _ok(_run(_dvc("pull", "--quiet", "store.dvc"), clone, offline=True))
    _ok(_run(_dvc("remote", "remove", "--local", "test"), clone))
    (clone / "store/base/rootfs.tar").unlink()
    proc = _run([*MAKE, "store"], clone, offline=True)
    _ok(proc)
    assert "re-derived by mmdebstrap from store/base/debs (no network)" in proc.stderr
    locked = json.loads((ROOT / "image/base.lock.json").read_text())["tarball"]["sha256"]
    assert hashlib.sha256((clone / "store/base/rootfs.tar").read_bytes()).hexdigest() == locked
