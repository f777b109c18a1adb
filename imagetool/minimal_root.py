"""Copy out of a Debian root only what the service needs: the files of a package closure.

Runs inside the image build (Debian's python3, standard library only) on the base root filesystem:

    python3 minimal_root.py / /out      # RUNTIME_PACKAGES: what the Dockerfile's runtime stage uses
    python3 minimal_root.py / /out python3-minimal libstdc++6 -dpkg ...

It reads dpkg's database to close the named packages over Depends and Pre-Depends (leaving out
the packages named with a leading "-": those that others depend on only for their maintainer
scripts, which never run again in an image without dpkg), copies every
file those packages list (plus the few files that maintainer scripts create rather than ship,
such as /etc/passwd and /etc/ld.so.cache), and keeps the merged-/usr top-level symlinks. Whatever
is not in the closure stays behind: shells, perl, dpkg itself, login, util-linux and their
setuid/setgid programs. Any setuid/setgid bit left on a copied file is an error, not a warning.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

# Created by maintainer scripts or tools rather than listed by a package, and needed at run time.
_GENERATED = ("etc/passwd", "etc/group", "etc/ld.so.cache", "etc/nsswitch.conf", "etc/os-release")
_MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib64")
# What the service's image keeps: the interpreter (and the /usr/bin/python3 link), its standard
# library's shared libraries, the C++ runtime manylinux wheels expect, and the files that make a
# Debian root (os-release, passwd). dpkg and mawk are wanted only by maintainer scripts.
RUNTIME_PACKAGES = (
    "python3-minimal",
    "libpython3.11-stdlib",
    "libstdc++6",
    "base-files",
    "base-passwd",
    "-dpkg",
    "-mawk",
)
_ALTERNATIVE = re.compile(r"\s*\|\s*")


def parse_status(text: str) -> dict[str, dict[str, str]]:
    """dpkg's status file: installed package name -> its fields (continuation lines folded)."""
    packages: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields
    return packages


def _depends(fields: dict[str, str], installed: dict[str, dict[str, str]]) -> list[str]:
    """Installed packages that satisfy each dependency (the first installed alternative)."""
    names = []
    for field in ("Pre-Depends", "Depends"):
        for clause in filter(None, (c.strip() for c in fields.get(field, "").split(","))):
            for alternative in _ALTERNATIVE.split(clause):
                name = alternative.split()[0].split(":")[0]
                if name in installed:
                    names.append(name)
                    break
                providers = [p for p, f in installed.items() if name in _provides(f)]
                if providers:
                    names.append(sorted(providers)[0])
                    break
    return names


def _provides(fields: dict[str, str]) -> set[str]:
    return {p.strip().split()[0] for p in fields.get("Provides", "").split(",") if p.strip()}


def closure(
    roots: list[str], installed: dict[str, dict[str, str]], drop: frozenset[str] = frozenset()
) -> list[str]:
    """The named packages and everything they depend on, except `drop` and what only it needs; sorted."""
    missing = [r for r in [*roots, *drop] if r not in installed]
    if missing:
        raise SystemExit(f"minimal_root: not installed in the base: {', '.join(missing)}")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen and name not in drop:
            seen.add(name)
            todo.extend(_depends(installed[name], installed))
    return sorted(seen)


def listed_files(root: Path, package: str, arch: str) -> list[str]:
    """Paths (relative, no leading slash) that dpkg lists for a package."""
    info = root / "var/lib/dpkg/info"
    for name in (f"{package}:{arch}.list", f"{package}.list"):
        if (info / name).is_file():
            lines = (info / name).read_text().splitlines()
            return [line.lstrip("/") for line in lines if line.strip("/ ")]
    raise SystemExit(f"minimal_root: dpkg lists no files for {package}")


def copy_entry(src_root: Path, dst_root: Path, rel: str) -> None:
    """Copy one path (file, symlink or directory itself) keeping mode bits and link targets."""
    src, dst = src_root / rel, dst_root / rel
    if not os.path.lexists(src) or os.path.lexists(dst):
        return  # excluded by dpkg's path-exclude, or already there
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        dst.symlink_to(src.readlink())
    elif src.is_dir():
        dst.mkdir()
        # A setgid directory (/var/local) only sets new files' group; dropped all the same, so
        # that nothing in the image carries the bit.
        dst.chmod(stat.S_IMODE(src.lstat().st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
    mode = os.lstat(dst).st_mode
    if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
        raise SystemExit(f"minimal_root: {rel} is setuid/setgid; refusing to ship it")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: minimal_root.py SRC_ROOT DEST [PACKAGE... -PACKAGE...]", file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    names = argv[2:] or list(RUNTIME_PACKAGES)  # the image's own list unless told otherwise
    roots = [a for a in names if not a.startswith("-")]
    drop = frozenset(a[1:] for a in names if a.startswith("-"))
    installed = parse_status((src / "var/lib/dpkg/status").read_text())
    arch = installed["libc6"].get("Architecture", "amd64")
    dst.mkdir(parents=True, exist_ok=True)
    for link in _MERGED_USR_LINKS:
        if (src / link).is_symlink():
            (dst / link).symlink_to((src / link).readlink())
    packages = closure(roots, installed, drop)
    # Directories first, so that a file listed under a merged-/usr link lands in /usr.
    for package in packages:
        for rel in listed_files(src, package, arch):
            parts = rel.split("/")
            if parts[0] in _MERGED_USR_LINKS and (src / parts[0]).is_symlink():
                rel = "/".join([str((src / parts[0]).readlink()).strip("/"), *parts[1:]])
            copy_entry(src, dst, rel)
    for rel in _GENERATED:
        copy_entry(src, dst, rel)
    (dst / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (dst / "tmp").chmod(0o1777)
    kept, left = " ".join(packages), " ".join(sorted(drop))
    print(f"minimal_root: {len(packages)} packages: {kept}; left out: {left}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
