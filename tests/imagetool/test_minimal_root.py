"""imagetool.minimal_root: the runtime root is the package closure of the interpreter, nothing else."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagetool import minimal_root

STATUS = """Package: python3-minimal
Status: install ok installed
Depends: python3.11-minimal, dpkg (>= 1.13.20)

Package: python3.11-minimal
Status: install ok installed
Pre-Depends: libc6 (>= 2.36)
Depends: libpython3.11-minimal (= 3.11.2-6), zlib1g | libz

Package: libpython3.11-minimal
Status: install ok installed
Depends: libc6

Package: libc6
Status: install ok installed
Architecture: amd64
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Description: GCC support library
 continued description line: Depends: bash

Package: libz-provider
Status: install ok installed
Provides: libz

Package: dpkg
Status: install ok installed
Pre-Depends: tar

Package: tar
Status: install ok installed

Package: removed-one
Status: deinstall ok config-files
"""


def test_closure_follows_depends_pre_depends_and_provides() -> None:
    installed = minimal_root.parse_status(STATUS)
    assert "removed-one" not in installed
    assert minimal_root.closure(["python3-minimal"], installed) == [
        "dpkg",
        "libc6",
        "libgcc-s1",
        "libpython3.11-minimal",
        "libz-provider",
        "python3-minimal",
        "python3.11-minimal",
        "tar",
    ]


def test_closure_leaves_out_dropped_packages_and_what_only_they_need() -> None:
    installed = minimal_root.parse_status(STATUS)
    closure = minimal_root.closure(["python3-minimal"], installed, frozenset({"dpkg"}))
    assert "dpkg" not in closure
    assert "tar" not in closure


def test_closure_refuses_a_package_the_base_does_not_have() -> None:
    with pytest.raises(SystemExit, match="not installed in the base: nosuch"):
        minimal_root.closure(["nosuch"], minimal_root.parse_status(STATUS))


def test_copy_refuses_a_setuid_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin/su").write_text("")
    (src / "usr/bin/su").chmod(0o4755)
    with pytest.raises(SystemExit, match="usr/bin/su is setuid/setgid"):
        minimal_root.copy_entry(src, dst, "usr/bin/su")


def test_copy_drops_the_setgid_bit_of_a_directory(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "var/local").mkdir(parents=True)
    (src / "var/local").chmod(0o2775)
    minimal_root.copy_entry(src, dst, "var/local")
    assert stat.S_IMODE((dst / "var/local").stat().st_mode) == 0o775


@pytest.mark.slow
def test_the_real_base_yields_a_working_python_with_no_shell_and_no_setuid(
    repo_root: Path, tmp_path: Path
) -> None:
    """On the locked base rootfs: python3 runs in a chroot of the result; no sh, perl, dpkg or su."""
    rootfs = repo_root / "build/base/rootfs.tar"
    if not rootfs.is_file():
        pytest.fail("build/base/rootfs.tar is missing: `make base` builds it (make test does)")
    src, dst = tmp_path / "base", tmp_path / "min"
    src.mkdir()
    with tarfile.open(rootfs) as tar:
        tar.extractall(src, filter="fully_trusted")
    assert minimal_root.main([str(src), str(dst), *minimal_root.RUNTIME_PACKAGES]) == 0
    run = subprocess.run(
        ["chroot", str(dst), "/usr/bin/python3", "-c", "import ssl, sqlite3, ctypes, uuid; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.stdout == "ok\n", run.stderr
    for gone in ("usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "usr/bin/perl", "usr/bin/dpkg", "usr/bin/su"):
        assert not os.path.lexists(dst / gone), gone
    special = [
        p
        for p in dst.rglob("*")
        if not p.is_symlink() and os.lstat(p).st_mode & (stat.S_ISUID | stat.S_ISGID)
    ]
    assert special == []
