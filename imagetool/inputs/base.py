"""The image's base root filesystem: a Debian tarball built by mmdebstrap, locked by content.

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
import io
import os
import re
import shlex
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagetool import common, layout
from imagetool.common import ROOT, InputError, ToolError, file_digest, log, read_json, rel, run
from imagetool.inputs import aptsources, inrelease
from imagetool.platforms import AMD64, Platform

DEFINITION = ROOT / layout.BASE_DEFINITION
LOCK = AMD64.base_lock()
TARBALL = AMD64.rootfs()
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")

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


@dataclass
class Built:
    path: Path
    sha256: str
    size: int
    packages: dict[str, str]


def resolve_sources(definition: dict[str, Any], etc_apt: Path = Path("/etc/apt")) -> list[aptsources.Source]:
    """The apt sources the base comes from; refused (InputError) if one weakens verification."""
    if definition["sources"] == "host":
        try:
            picked = aptsources.sources_for_suite(
                aptsources.host_sources(etc_apt), definition["suite"], definition["components"]
            )
        except LookupError as e:
            raise ToolError(f"{e}; set `sources` in {rel(DEFINITION)}") from None
        return aptsources.check_sources(picked)
    return given_sources(definition["sources"])


def release_epoch(sources: list[aptsources.Source], now: float | None = None) -> int:
    """Newest signature-checked Release ``Date`` among the sources: the archive state the
    packages come from."""
    dates = []
    for src in sources:
        if not src.uri.startswith(("http://", "https://", "file:")):
            raise ToolError(f"cannot read the Release date of {src.uri}: unsupported URI scheme")
        url = f"{src.uri}/dists/{src.suite}/InRelease"
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except OSError as e:
            raise ToolError(f"cannot read {url}: {e}") from None
        dates.append(inrelease.release_date(inrelease.verified_text(data, src, url), src.suite, url, now))
    return max(dates)


def tool_versions() -> dict[str, str]:
    out = run(["mmdebstrap", "--version"], capture=True).stdout.split()
    return {"mmdebstrap": out[-1] if out else "unknown"}


def read_packages(tarball: Path) -> dict[str, str]:
    with tarfile.open(tarball) as tf:
        for name in ("./var/lib/dpkg/status", "var/lib/dpkg/status"):
            try:
                f = tf.extractfile(name)
            except KeyError:
                continue
            if f is not None:
                return parse_dpkg_status(io.TextIOWrapper(f, encoding="utf-8").read())
    raise ToolError(f"{rel(tarball)}: no var/lib/dpkg/status inside")


def mmdebstrap(
    definition: dict[str, Any],
    sources: list[aptsources.Source],
    epoch: int,
    out: Path,
    plat: Platform = AMD64,
) -> Built:
    if shutil.which("mmdebstrap") is None:
        raise ToolError("mmdebstrap: not installed; `python -m imagetool engine host-tools` installs it")
    plat.check_runnable()  # a foreign base runs its maintainer scripts under qemu
    out.parent.mkdir(parents=True, exist_ok=True)
    deb_cache = plat.deb_cache()
    deb_cache.mkdir(parents=True, exist_ok=True)
    cache = shlex.quote(str(deb_cache))
    cmd = [
        "mmdebstrap",
        f"--variant={definition['variant']}",
        "--format=tar",
        f"--architectures={plat.deb_arch}",
        f"--include={','.join(definition['include'])}",
        # merged /usr via symlinks + usr-is-merged: avoids usrmerge, which drags in perl.
        f"--hook-dir={MERGED_USR_HOOKS}",
        # Reuse .deb files of earlier builds (apt checks their hashes against the archive index).
        "--skip=download/empty,cleanup/apt,cleanup/mmdebstrap",
        f'--setup-hook=mkdir -p "$1"/var/cache/apt/archives && find {cache} -name "*.deb" '
        '-exec cp -t "$1"/var/cache/apt/archives {} +',
        f'--customize-hook=find "$1"/var/cache/apt/archives -name "*.deb" -exec cp -t {cache} {{}} +',
        "--customize-hook=rm -rf " + " ".join(f'"$1"{shlex.quote(p)}' for p in definition["remove"]),
    ]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in definition["path_exclude"]]
    cmd += [f"--dpkgopt=path-include={p}" for p in definition["path_include"]]
    cmd += [definition["suite"], str(out), "-"]
    stdin = "".join(s.line() + "\n" for s in sources)
    log(
        f"base: mmdebstrap {definition['suite']} {plat.deb_arch} ({len(sources)} sources), "
        f"SOURCE_DATE_EPOCH={epoch}"
    )
    import subprocess

    output: list[str] = []
    with subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            if line.startswith("I: "):  # mmdebstrap's own progress: a dozen lines
                log(f"base:   {output[-1][3:]}")
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        tail = "\n".join(output[-25:])
        raise ToolError(f"mmdebstrap failed ({proc.returncode}):\n{tail}")
    return Built(out, file_digest(out), out.stat().st_size, read_packages(out))


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


def cmd_lock(plat: Platform = AMD64) -> int:
    definition = load_definition()
    sources = resolve_sources(definition)
    lock_path, tarball = plat.base_lock(), plat.rootfs()
    old = load_lock(plat) if lock_path.exists() else None
    dsha = definition_sha256(definition)
    tmp = common.temporary_beside(tarball)
    built: Built | None = None
    epoch = 0
    if old and old.definition_sha256 == dsha:
        # Same definition: keep the old epoch while the packages have not moved (stable digest).
        epoch = old.source_date_epoch
        built = mmdebstrap(definition, sources, epoch, tmp, plat)
        if built.packages != old.packages:
            log("base: packages moved: " + drift_explanation(old.packages, built.packages, lock_path))
            built = None
    if built is None:
        epoch = release_epoch(sources)
        built = mmdebstrap(definition, sources, epoch, tmp, plat)
    common.replace_durably(tmp, tarball)
    lock = {
        "comment": "Written by `make lock-base` (python -m imagetool base lock); do not edit.",
        "definition_sha256": dsha,
        "suite": definition["suite"],
        "source_date_epoch": epoch,
        "tarball": {"path": rel(tarball), "sha256": built.sha256, "bytes": built.size},
        "tools": tool_versions(),
        "packages": built.packages,
    }
    if plat is not AMD64:
        lock["architecture"] = plat.deb_arch
    common.write_json_atomic(lock_path, lock)
    log(f"base: wrote {rel(lock_path)}: {len(built.packages)} packages, sha256:{built.sha256}, epoch {epoch}")
    return 0
