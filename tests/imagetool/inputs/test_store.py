"""The store's pure logic: the lock, hash checks, file names, and which engine .debs a host needs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT
from imagetool.common import ToolError
from imagetool.engine import install
from imagetool.inputs import apt, fetch, store

ROOT = REPO_ROOT


def _entry(data: bytes) -> dict[str, object]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@pytest.fixture
def small_store(tmp_path: Path) -> tuple[Path, dict[str, dict[str, object]]]:
    files = {"wheels/a-1.0-py3-none-any.whl": b"wheel", "engine/debs/tini_0.19.0-1_amd64.deb": b"deb"}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path, {name: _entry(data) for name, data in files.items()}


def test_intact_store_has_no_problems(small_store: tuple[Path, dict[str, dict[str, object]]]) -> None:
    folder, files = small_store
    assert not store.check_files(folder, files)


def test_altered_file_is_named_with_both_hashes(
    small_store: tuple[Path, dict[str, dict[str, object]]],
) -> None:
    folder, files = small_store
    deb = folder / "engine/debs/tini_0.19.0-1_amd64.deb"
    deb.write_bytes(b"dEb")
    problems = store.check_files(folder, files)
    [message] = problems.altered
    assert "tini_0.19.0-1_amd64.deb" in message
    assert hashlib.sha256(b"dEb").hexdigest() in message
    assert str(files["engine/debs/tini_0.19.0-1_amd64.deb"]["sha256"]) in message
    with pytest.raises(ToolError, match="refusing"):
        store.refuse_altered(problems)


def test_missing_file_is_reported_not_refused(small_store: tuple[Path, dict[str, dict[str, object]]]) -> None:
    folder, files = small_store
    (folder / "wheels/a-1.0-py3-none-any.whl").unlink()
    problems = store.check_files(folder, files)
    assert problems.missing == ["wheels/a-1.0-py3-none-any.whl"]
    assert not problems.altered
    assert not store.check_files(folder, files, ("engine",))


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "files"),
        ({"elsewhere/x": {"sha256": "0" * 64, "bytes": 1}}, "bad entry"),
        ({"wheels/../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}, "bad entry"),
        ({"wheels/x.whl": {"sha256": "xyz", "bytes": 1}}, "bad entry"),
        ({"wheels/x.whl": {"sha256": "0" * 64}}, "bad entry"),
    ],
)
def test_malformed_store_lock_is_refused_naming_it(tmp_path: Path, files: object, reason: str) -> None:
    lock = tmp_path / "store.lock.json"
    lock.write_text(json.dumps({"files": files}))
    with pytest.raises(ToolError, match=reason):
        store.StoreLock.read(lock)


def test_a_store_lock_whose_tools_closure_is_not_a_list_of_names_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "store.lock.json"
    document = json.loads(store.LOCK.read_text())
    lock.write_text(json.dumps({**document, "tools_closure": "mmdebstrap"}))
    with pytest.raises(ToolError, match=r"store\.lock\.json: `tools_closure` must list package names"):
        store.StoreLock.read(lock)
    lock.write_text(json.dumps(document))
    assert store.StoreLock.read(lock) == store.StoreLock.read()


@pytest.mark.parametrize(
    ("groups", "plan"),
    [
        (["wheels"], [("linux/amd64", True, False), ("linux/arm64", True, False)]),
        (["base"], [("linux/amd64", False, True)]),
        (["arm64"], [("linux/arm64", True, True)]),
        (["engine", "stack"], []),
        (list(store.GROUPS), [("linux/amd64", True, True), ("linux/arm64", True, True)]),
    ],
)
def test_store_lock_wheels_relocks_every_platforms_wheels(groups: list[str], plan: list[Any]) -> None:
    """`make lock` (store lock wheels) keeps arm64's stored wheels in step with the locks too, as
    `make lock-image` for arm64 needs; its base stays unless its group is asked for."""
    assert [(p.name, w, b) for p, w, b in fetch.lock_plan(groups)] == plan


def test_committed_store_lock_covers_every_locked_input() -> None:
    files = store.StoreLock.read().files
    assert {store.group_of(n) for n in files} == set(store.GROUPS)
    assert (
        files[store.ROOTFS]["sha256"]
        == json.loads((ROOT / "image/base.lock.json").read_text())["tarball"]["sha256"]
    )
    base_pkgs = json.loads((ROOT / "image/base.lock.json").read_text())["packages"]
    stored = {apt.deb_file_version(Path(n).name) for n in files if n.startswith("base/debs/")}
    assert stored == set(base_pkgs.items()), "every base package at its locked version (to re-derive it)"
    pins = store.engine_pins(store.load_engine_definition())
    engine = dict(apt.deb_file_version(Path(n).name) for n in files if n.startswith("engine/debs/"))
    assert all(engine[p] == v for p, v in pins.items())
    for tool in ("runc", "tini", "iptables", "mmdebstrap", "zstd"):
        assert tool in engine, f"{tool}: a dependency the engine install needs offline"
    tools = set(store.StoreLock.read().tools_closure)
    assert {"mmdebstrap", "zstd"} <= tools <= set(engine)
    assert not tools & {"docker.io", "containerd", "runc", "iptables"}


def test_store_wheels_cover_both_serve_locks_and_pip() -> None:
    from imagetool.inputs import wheels

    files = store.StoreLock.read().files
    reqs = wheels.load_locks(ROOT, wheels.STORE_LOCK_NAMES)
    for req in reqs:
        stored = [
            n for n in files if n.startswith("wheels/") and wheels.wheel_name_version(n[7:])[0] == req.name
        ]
        assert len(stored) == 1, req.name
        assert files[stored[0]]["sha256"] in req.hashes
    assert {"scikit-learn", "onnxruntime", "pip"} <= {r.name for r in reqs}


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("libaudit1_1%3a3.0.9-1_amd64.deb", ("libaudit1", "1:3.0.9-1")),
        ("docker.io_26.1.5+dfsg1-9+deb13u1+b1_amd64.deb", ("docker.io", "26.1.5+dfsg1-9+deb13u1+b1")),
    ],
)
def test_deb_file_names_give_package_and_version(filename: str, expected: tuple[str, str]) -> None:
    assert apt.deb_file_version(filename) == expected


@pytest.mark.parametrize("filename", ["docker.io.deb", "a_1_amd64.tar", "a_b_c_d.deb"])
def test_other_file_names_are_not_debs(filename: str) -> None:
    with pytest.raises(ValueError, match="not a Debian package"):
        apt.deb_file_version(filename)


def test_apt_simulation_lines_are_parsed() -> None:
    out = (
        "Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n"
        "Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n"
        "Inst runc [1.1.4] (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable [amd64])\n"
    )
    assert apt.parse_simulation(out) == [("libc6", "2.36-9+deb12u14"), ("runc", "1.1.5+ds1-1+deb12u1")]


DEBS = [
    "engine/debs/docker.io_26.1.5_amd64.deb",
    "engine/debs/libc6_2.36-9_amd64.deb",
    "engine/debs/runc_1.1.5_amd64.deb",
    "engine/debs/tini_0.19.0_amd64.deb",
]


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({}, DEBS),  # an empty root: everything
        ({"libc6": "2.36-9"}, [DEBS[0], DEBS[2], DEBS[3]]),  # a fresh Debian 12 host
        ({"libc6": "2.36-8", "runc": "1.0"}, [DEBS[0], DEBS[3]]),  # others' versions are left alone
        (
            {"libc6": "2.36-9", "runc": "1.1.5", "tini": "0.19.0", "docker.io": "20.10"},
            [DEBS[0]],
        ),  # pin moved
        ({"libc6": "2.36-9", "runc": "1.1.5", "tini": "0.19.0", "docker.io": "26.1.5"}, []),  # done
    ],
)
def test_engine_install_takes_missing_packages_and_the_pins(
    installed: dict[str, str], expected: list[str]
) -> None:
    assert install.engine_debs_to_install(DEBS, installed, {"docker.io": "26.1.5"}) == expected


def test_place_replaces_without_writing_through_a_link(tmp_path: Path) -> None:
    src, old = tmp_path / "src", tmp_path / "old"
    src.write_bytes(b"new")
    old.write_bytes(b"old")
    dest = tmp_path / "dest"
    dest.hardlink_to(old)
    store.place(src, dest)
    assert dest.read_bytes() == b"new"
    assert old.read_bytes() == b"old"


def test_tools_only_install_never_touches_the_engine() -> None:
    """A host with a good engine (say, Docker's own packages) gets only the missing tools."""
    chosen = install.engine_debs_to_install(
        DEBS, {"libc6": "2.36-9"}, {"docker.io": "26.1.5"}, only={"tini", "libc6", "docker.io"}
    )
    assert chosen == [DEBS[3]]


# --- .debs are installed from checked private copies -----------------------------------------------


def test_verified_copies_are_private_and_keep_the_checked_bytes(
    small_store: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    """dpkg reads the copies: swapping the store file after the check changes nothing they hold."""
    root, files = small_store
    name = "engine/debs/tini_0.19.0-1_amd64.deb"
    with store.verified_copies([name], files, root) as [copy]:
        folder = copy.parent
        assert folder.stat().st_mode & 0o777 == 0o700
        assert folder.stat().st_uid == os.geteuid()
        (root / name).write_bytes(b"swapped after the check")
        assert copy.read_bytes() == b"deb"
    assert not folder.exists()  # removed afterwards


def test_a_store_file_altered_before_the_copy_is_refused_naming_both_hashes(
    small_store: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    root, files = small_store
    name = "engine/debs/tini_0.19.0-1_amd64.deb"
    (root / name).write_bytes(b"evil")
    with pytest.raises(ToolError) as refused, store.verified_copies([name], files, root):
        pass
    message = str(refused.value)
    assert hashlib.sha256(b"evil").hexdigest() in message
    assert str(files[name]["sha256"]) in message
    assert name in message


def test_the_stack_group_keeps_only_what_the_base_lacks_at_that_version() -> None:
    closure = [("libc6", "2.36-9+deb12u13"), ("haproxy", "2.6.12-1+deb12u4"), ("zlib1g", "1:1.2.13")]
    base_packages = {"libc6": "2.36-9+deb12u13", "zlib1g": "1:1.2.11"}
    assert fetch.not_in_base(closure, base_packages) == ["haproxy=2.6.12-1+deb12u4", "zlib1g=1:1.2.13"]


def test_the_committed_stack_definition_is_in_the_lock() -> None:
    """Every pinned package of image/stack.toml has its .deb, at that version, in the store lock."""
    pins = store.load_stack_definition()["packages"]
    files = store.StoreLock.read().files
    locked = {"=".join(apt.deb_file_version(Path(n).name)) for n in files if n.startswith("stack/")}
    assert set(pins) <= locked


@pytest.mark.parametrize("text", ["packages = []\n", 'packages = ["haproxy"]\n', "other = 1\n"])
def test_a_bad_stack_definition_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    with pytest.raises(ToolError, match=r"stack\.toml"):
        store.load_stack_definition(path)
