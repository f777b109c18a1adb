"""The image's base root filesystem: a Debian tarball built by mmdebstrap, locked by content. This
module reads and checks the definition and the lock; building the tarball is `base_build`'s, placing
the stored one `fetch`'s.

    python -m imagetool base build [--platform P]  # from the store, checked against the lock
    python -m imagetool base lock [--platform P]   # (re)build with mmdebstrap; record what the archive gives
    python -m imagetool base check [--platform P]  # lock well-formed and matching image/base.toml

One definition (image/base.toml) for every platform; a lock and a tarball per platform
(imagetool/platforms.py): linux/amd64 keeps image/base.lock.json, linux/arm64 has
image/base.arm64.lock.json, built by mmdebstrap for arm64 (its maintainer scripts under qemu).

Determinism: mmdebstrap with SOURCE_DATE_EPOCH gives a bit-identical tarball for the same
packages. The epoch is the archive's own Release ``Date`` at lock time (an input, not the clock),
recorded in the lock and reused by every later build, so it only moves when the packages do.
Every package file predates that Release, so no file mtime is clamped and the interpreter's
timestamp-based stdlib ``.pyc`` stay valid.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagetool import common, layout
from imagetool.common import ROOT, InputError, ToolError, file_digest, log, read_json, rel
from imagetool.inputs import aptsources
from imagetool.platforms import AMD64, Platform

DEFINITION = ROOT / layout.BASE_DEFINITION
LOCK = AMD64.base_lock()
TARBALL = AMD64.rootfs()

REQUIRED_KEYS = {
    "suite",
    "components",
    "variant",
    "include",
    "sources",
    "path_exclude",
    "path_include",
    "remove",
}


# --- pure logic -------------------------------------------------------------------------------


def load_definition(path: Path = DEFINITION) -> dict[str, Any]:
    data = common.read_toml(path, "base definition")
    missing = REQUIRED_KEYS - data.keys()
    unknown = data.keys() - REQUIRED_KEYS
    if missing or unknown:
        raise InputError(f"{rel(path)}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    if data["sources"] != "host" and not (
        isinstance(data["sources"], list) and all(isinstance(s, str) for s in data["sources"])
    ):
        raise InputError(f'{rel(path)}: sources must be "host" or a list of one-line apt sources')
    if data["sources"] != "host":
        given_sources(data["sources"], path)  # refused before anything is built or locked
    return data


def given_sources(lines: list[str], path: Path = DEFINITION) -> list[aptsources.Source]:
    """The one-line sources a definition names; an InputError names each line that is not one, or
    that weakens verification."""
    given, problems = [], []
    for i, line in enumerate(lines):
        parsed = aptsources.parse_one_line(line)
        if len(parsed) != 1 or "\n" in line.strip():
            problems.append(
                f"{rel(path)}: sources[{i}]: {line!r} is not one `deb [options] URI SUITE COMPONENT...` line"
            )
            continue
        given.append(dataclasses.replace(parsed[0], origin=f"{rel(path)}: sources[{i}]"))
    problems += [p for src in given for p in aptsources.source_problems(src)]
    if problems:
        raise InputError("\n".join(problems))
    return given


def definition_sha256(definition: dict[str, Any]) -> str:
    """Hash of the definition's meaning (comments and key order do not count)."""
    import hashlib

    return hashlib.sha256(common.canonical_json(definition).encode()).hexdigest()


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages (name -> version) from a dpkg status file."""
    pkgs: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        f: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and line[0] not in " \t" and ":" in line:
                k, _, v = line.partition(":")
                f[k] = v.strip()
        if f.get("Status", "").endswith(" installed") and "Package" in f:
            pkgs[f["Package"]] = f.get("Version", "")
    return dict(sorted(pkgs.items()))


def package_changes(locked: dict[str, str], now: dict[str, str]) -> list[str]:
    """Human-readable list of the packages that moved between two package sets."""
    out = []
    for name in sorted(locked.keys() | now.keys()):
        a, b = locked.get(name), now.get(name)
        if a == b:
            continue
        if a is None:
            out.append(f"  + {name} {b} (new)")
        elif b is None:
            out.append(f"  - {name} {a} (gone)")
        else:
            out.append(f"  ~ {name} {a} -> {b}")
    return out


def drift_explanation(
    locked_packages: dict[str, str], built_packages: dict[str, str], lock: Path = LOCK
) -> str:
    """Why a base built now is not the locked one, for a person: the packages that moved, or
    that none did."""
    moved = package_changes(locked_packages, built_packages)
    if moved:
        return f"{len(moved)} packages differ from {rel(lock)}:\n" + "\n".join(moved)
    return (
        f"the same package versions as {rel(lock)}, other bytes: another mmdebstrap or dpkg, "
        "or a non-deterministic build (compare the two tarballs with diffoscope)"
    )


@dataclass(frozen=True)
class BaseLock:
    """A platform's base lock (image/base.lock.json, image/base.<arch>.lock.json), checked for shape:
    the tarball's sha256, the packages it holds, and the epoch and definition it was built from."""

    source_date_epoch: int
    definition_sha256: str
    tarball_sha256: str
    packages: dict[str, str]  # package -> version

    @classmethod
    def of(cls, lock: Any, path: Path = LOCK) -> BaseLock:
        """The lock in a parsed document; an edited or truncated one is refused, naming the file."""
        problems = []
        if not isinstance(lock, dict):
            raise ToolError(f"{rel(path)}: not a JSON object")
        epoch = lock.get("source_date_epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch <= 0:
            problems.append("source_date_epoch must be a positive integer")
        if not re.fullmatch(r"[0-9a-f]{64}", str(lock.get("definition_sha256", ""))):
            problems.append("definition_sha256 must be 64 hex digits")
        tb = lock.get("tarball")
        if not isinstance(tb, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(tb.get("sha256", ""))):
            problems.append("tarball.sha256 must be 64 hex digits")
        pk = lock.get("packages")
        if not isinstance(pk, dict) or not pk or not all(isinstance(v, str) for v in pk.values()):
            problems.append("packages must map package names to versions")
        if problems:
            raise ToolError(f"{rel(path)}: " + "; ".join(problems))
        assert isinstance(pk, dict)
        return cls(lock["source_date_epoch"], lock["definition_sha256"], lock["tarball"]["sha256"], dict(pk))


# --- building ---------------------------------------------------------------------------------


def load_lock(plat: Platform = AMD64, root: Path = ROOT) -> BaseLock:
    """The platform's base lock, checked for shape; a missing one names the command that writes it."""
    path = plat.base_lock(root)
    if not path.exists():
        raise InputError(f"{rel(path)}: missing; create it with `make lock-base{plat.make_flag}`")
    return BaseLock.of(read_json(path, "base lock"), path)


def tarball_matches(lock: BaseLock, plat: Platform = AMD64) -> bool:
    tarball = plat.rootfs()
    return tarball.is_file() and file_digest(tarball) == lock.tarball_sha256


def current_lock(plat: Platform) -> tuple[dict[str, Any], BaseLock]:
    definition = load_definition()
    lock = load_lock(plat)
    if lock.definition_sha256 != definition_sha256(definition):
        raise ToolError(
            f"{rel(DEFINITION)} changed since {rel(plat.base_lock())} was written; "
            f"run `make lock-base{plat.make_flag}`"
        )
    return definition, lock


def cmd_check(plat: Platform = AMD64) -> int:
    _, lock = current_lock(plat)
    state = "matches" if tarball_matches(lock, plat) else "absent or different (run `make base`)"
    log(f"base: {rel(plat.base_lock())} ok ({len(lock.packages)} packages); {rel(plat.rootfs())} {state}")
    return 0
