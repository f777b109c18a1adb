"""The store: every external input of the image and of its builder, kept by sha256.

The leaf of `imagetool.inputs`: the store's layout, its lock (`StoreLock`), checking and placing
its files, and DVC; it imports no other input module. Filling it (`store ensure`, `store lock`) is
`inputs/fetch.py`'s, re-deriving the base offline `inputs/rederive.py`'s, and installing the engine
from it `engine/install.py`'s.

    python -m imagetool store ensure [GROUP...]   # complete the store: dvc pull, else fetch (says which)
    python -m imagetool store check               # every file present and equal to the lock (no network)
    python -m imagetool store lock                # re-fill from the network; rewrite image/store.lock.json
    python -m imagetool store install-engine [--root DIR]   # engine .debs from the store, no mirror
    python -m imagetool store rederive-base       # rebuild the base from store/base/debs, offline
    python -m imagetool store status              # files, size, what is missing

Layout of ``store/`` (a DVC-tracked folder, ``store.dvc``: `dvc push` / `dvc pull` carry it):

    wheels/*.whl         every wheel of requirements/serve.txt, -serve-sklearn.txt and -build.txt
    base/rootfs.tar      the base root filesystem (image/base.lock.json's tarball.sha256)
    base/debs/*.deb      the Debian packages it is made of, at the locked versions: the rootfs is
                         re-derived from them offline (mmdebstrap) when it is missing
    engine/debs/*.deb    image/engine.toml's engine and tools, with every dependency a fresh host lacks
    builder2/debs/*.deb  image/engine.toml's second builder (unpacked, never installed: CI builds with it too)
    stack/debs/*.deb     image/stack.toml's HAProxy and Prometheus, with the dependencies the base lacks
    arm64/wheels/*.whl   the image's wheels for linux/arm64 (aarch64), same versions and locks
    arm64/base/...       the linux/arm64 base: rootfs.tar (image/base.arm64.lock.json) and its .debs

``image/store.lock.json`` records each file's sha256 and size. Builds read only from the store and
refuse a file whose sha256 differs, naming it and both hashes. The network (PyPI, the Debian mirror)
is used only by ``lock`` and to fill what a DVC remote could not provide; each command says which.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagetool import common, layout, platforms
from imagetool.common import (
    ROOT,
    ToolError,
    file_digest,
    log,
    read_json,
    rel,
    replace_durably,
    temporary_beside,
)

STORE = ROOT / layout.STORE
STORE_DVC = ROOT / layout.STORE_DVC
LOCK_NAME = layout.STORE_LOCK  # relative: the SBOM and provenance read any tree's
LOCK = ROOT / LOCK_NAME
ENGINE_DEFINITION = ROOT / layout.ENGINE_DEFINITION
STACK_DEFINITION = ROOT / layout.STACK_DEFINITION
# Each platform but amd64 keeps its inputs in a group of its own (arm64/): imagetool/platforms.py.
GROUPS = (
    "wheels",
    "base",
    "engine",
    "builder2",
    "stack",
    *(p.deb_arch for p in platforms.ALL if p.store_prefix),
)
ROOTFS = "base/rootfs.tar"


# --- the lock ---------------------------------------------------------------------------------


def group_of(path: str) -> str:
    return path.split("/", 1)[0]


# A platform's inputs in the store: amd64's at the top (wheels/, base/), another's under its name.
def rootfs_name(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}{ROOTFS}"


def rootfs_group(plat: platforms.Platform) -> str:
    return group_of(rootfs_name(plat))


def wheels_folder(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}wheels"


def debs_folder(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}base/debs"


def platform_of(name: str) -> platforms.Platform:
    """The platform a store path belongs to (amd64 unless it sits under another's folder)."""
    for plat in platforms.ALL:
        if plat.store_prefix and name.startswith(plat.store_prefix):
            return plat
    return platforms.AMD64


@dataclass(frozen=True)
class StoreLock:
    """image/store.lock.json: every stored file by its store path, with its sha256 and size, and
    the packages the host tools alone need (installed when the engine is already usable)."""

    files: dict[str, dict[str, Any]]  # store path -> {"sha256", "bytes"}
    tools_closure: tuple[str, ...]

    @classmethod
    def read(cls, path: Path = LOCK) -> StoreLock:
        """The lock at `path`; a malformed one is refused, naming it."""
        data = read_json(path, "store lock")
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or not files:
            raise ToolError(f"{rel(path)}: `files` must map store paths to {{sha256, bytes}}")
        for name, entry in files.items():
            ok = (
                group_of(name) in GROUPS
                and ".." not in name.split("/")
                and isinstance(entry, dict)
                and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", "")))
                and isinstance(entry.get("bytes"), int)
            )
            if not ok:
                raise ToolError(f"{rel(path)}: bad entry {name!r} (want a store path and sha256/bytes)")
        tools = data.get("tools_closure", [])
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise ToolError(f"{rel(path)}: `tools_closure` must list package names")
        return cls(files, tuple(tools))


def load_engine_definition(path: Path = ENGINE_DEFINITION) -> dict[str, Any]:
    data = common.read_toml(path, "engine definition")
    for key in ("host_suite", "suite", "packages", "tools"):
        if key not in data:
            raise ToolError(f"{rel(path)}: missing key {key!r}")
    for spec in [*data["packages"], *data.get("second_builder", {}).get("packages", [])]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=\S+", spec):
            raise ToolError(f"{rel(path)}: packages: {spec!r} is not name=version")
    return data


def engine_pins(definition: dict[str, Any]) -> dict[str, str]:
    return dict(spec.split("=", 1) for spec in definition["packages"])


def load_stack_definition(path: Path = STACK_DEFINITION) -> dict[str, Any]:
    data = common.read_toml(path, "stack definition")
    specs = data.get("packages")
    if not isinstance(specs, list) or not specs:
        raise ToolError(f"{rel(path)}: `packages` must list name=version pins")
    for spec in specs:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=\S+", str(spec)):
            raise ToolError(f"{rel(path)}: packages: {spec!r} is not name=version")
    return data


# --- checking ---------------------------------------------------------------------------------


@dataclass
class Problems:
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)  # messages naming the file and both hashes

    def __bool__(self) -> bool:
        return bool(self.missing or self.altered)


def check_files(store: Path, files: dict[str, dict[str, Any]], groups: tuple[str, ...] = GROUPS) -> Problems:
    """Which locked files of ``groups`` are missing from ``store`` or differ from the lock."""
    problems = Problems()
    for name, entry in sorted(files.items()):
        if group_of(name) not in groups:
            continue
        path = store / name
        if not path.is_file():
            problems.missing.append(name)
            continue
        got = file_digest(path)
        if got != entry["sha256"]:
            problems.altered.append(
                f"{rel(path)}: sha256 {got}, but {rel(LOCK)} records {entry['sha256']} "
                "(altered or corrupt: delete it, then `make store`)"
            )
    return problems


@contextmanager
def verified_copies(
    names: list[str], files: dict[str, dict[str, Any]], store: Path | None = None
) -> Iterator[list[Path]]:
    """Private copies of store files, each hashed after it was copied: what dpkg then reads is
    exactly what was checked (no one can swap a store file between the check and its use).

    The copies live in a fresh directory only this user can enter (mode 0700: root-owned when run
    as root) and are removed afterwards. A copy whose sha256 is not the lock's is refused, naming
    the file and both hashes."""
    store = store if store is not None else STORE
    with tempfile.TemporaryDirectory(prefix="lockstep-debs-") as tmp:
        private = Path(tmp)
        private.chmod(0o700)
        copies = []
        for name in names:
            copy = private / Path(name).name
            shutil.copyfile(store / name, copy)
            got = file_digest(copy)
            if got != files[name]["sha256"]:
                locked = files[name]["sha256"]
                raise ToolError(f"refusing {rel(store / name)}: its copy has sha256 {got}, locked {locked}")
            copies.append(copy)
        yield copies


def refuse_altered(problems: Problems) -> None:
    if problems.altered:
        raise ToolError(
            "refusing files of the store whose hash differs from the lock:\n  "
            + "\n  ".join(problems.altered)
        )


def place(src: Path, dest: Path) -> None:
    """Put a store file at ``dest`` (hard link, else copy), replacing what is there atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and src.samefile(dest):
        return
    tmp = temporary_beside(dest)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    replace_durably(tmp, dest)


def megabytes(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


# --- DVC --------------------------------------------------------------------------------------


def _dvc(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise ToolError("dvc: not installed (run `make setup`)") from None


def dvc_pull() -> bool:
    """`dvc pull store.dvc` when a DVC remote is configured; False when there is none."""
    if not STORE_DVC.is_file():
        log(f"store: no {rel(STORE_DVC)} yet (nothing to pull)")
        return False
    remotes = _dvc("remote", "list").stdout.strip()
    if not remotes:
        log("store: no DVC remote configured (`dvc remote add -d ...`); cannot pull")
        return False
    log(f"store: dvc pull {rel(STORE_DVC)} (from the DVC remote)")
    p = _dvc("pull", "--quiet", rel(STORE_DVC))
    if p.returncode != 0:
        # Partial pulls are normal (a remote that lacks some files); what is missing is fetched.
        log(f"store: dvc pull did not get everything: {(p.stderr or p.stdout).strip()[-500:]}")
    return True


def dvc_cached() -> bool:
    """Whether the DVC cache holds the store as store.dvc records it (else `dvc push` cannot send it,
    e.g. after store/ was restored by a CI cache or copied by hand)."""
    text = STORE_DVC.read_text(encoding="utf-8") if STORE_DVC.is_file() else ""
    m = re.search(r"md5: ([0-9a-f]{32}\.dir)", text)
    return m is not None and (ROOT / ".dvc/cache/files/md5" / m.group(1)[:2] / m.group(1)[2:]).is_file()


def remove_unlocked(files: dict[str, dict[str, Any]]) -> None:
    """Delete files in store/ that the lock does not name, so `dvc add` records exactly the lock."""
    for path in sorted(STORE.rglob("*")):
        if path.is_file() and path.relative_to(STORE).as_posix() not in files:
            log(f"store: removing {rel(path)} (not in {rel(LOCK)})")
            path.unlink()


def dvc_add() -> None:
    """Record the store in store.dvc and the DVC cache, so `dvc push` uploads it."""
    p = _dvc("add", "--quiet", rel(STORE))
    if p.returncode != 0:
        raise ToolError(f"dvc add {rel(STORE)} failed: {(p.stderr or p.stdout).strip()[-1000:]}")
    log(f"store: recorded in {rel(STORE_DVC)} (`dvc push` uploads it to the DVC remote)")


# --- commands ---------------------------------------------------------------------------------


def cmd_check() -> int:
    files = StoreLock.read().files
    problems = check_files(STORE, files)
    refuse_altered(problems)
    if problems.missing:
        raise ToolError(
            f"{len(problems.missing)} locked files missing from {rel(STORE)} "
            f"(`dvc pull {rel(STORE_DVC)}` or `make store`): " + ", ".join(problems.missing[:10])
        )
    log(f"store: all {len(files)} files match {rel(LOCK)}")
    return 0


def cmd_status() -> int:
    files = StoreLock.read().files
    for group in GROUPS:
        entries = {n: e for n, e in files.items() if group_of(n) == group}
        problems = check_files(STORE, files, (group,))
        log(
            f"{group:7} {len(entries):4} files {megabytes(sum(e['bytes'] for e in entries.values())):>7}  "
            f"missing {len(problems.missing)}, altered {len(problems.altered)}"
        )
    log(f"total   {len(files):4} files {megabytes(sum(e['bytes'] for e in files.values())):>7}")
    return 0
