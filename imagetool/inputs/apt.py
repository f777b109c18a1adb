"""apt-get with a private state directory: resolve and download exact .deb versions without
touching the host's sources, package lists or dpkg database.

Used only when the store is filled or re-locked (the network step); builds never call it.

apt's sandbox is left as apt sets it: run as root, apt downloads as its unprivileged `_apt` user.
That user must be able to reach the state directory and write where files land, so the download
goes to a fresh directory owned by `_apt` and is moved to its destination afterwards; apt's
fallback to downloading as root ("performed unsandboxed") is refused rather than accepted.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from imagetool.common import ToolError, log
from imagetool.inputs import aptsources

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")
SANDBOX_USER = "_apt"  # apt's default APT::Sandbox::User


def sandbox_uid() -> int | None:
    """The uid apt downloads as: `_apt` when run as root (None when apt does not drop privileges)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SANDBOX_USER).pw_uid
    except KeyError:
        return None


def state_folder(name: str) -> Path:
    """A fresh apt state folder that `_apt` can reach wherever the checkout lies: a clone under a
    0700 directory (mktemp -d, a home directory) would otherwise make apt download as root, which
    AptState refuses. World-traversable, unpredictably named, removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix=f"lockstep-{name}-"))
    folder.chmod(0o755)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def hand_to_sandbox(folder: Path) -> None:
    """A directory apt's sandbox user can write: owned by it, mode 0700."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = sandbox_uid()
    if uid is not None:
        os.chown(folder, uid, -1)
    folder.chmod(0o700)


def parse_simulation(text: str) -> list[tuple[str, str]]:
    """(package, version) of every ``Inst`` line of ``apt-get -s install`` output."""
    return [(m.group(1), m.group(2)) for line in text.splitlines() if (m := _INST.match(line))]


def deb_file_version(filename: str) -> tuple[str, str]:
    """(package, version) from a Debian archive file name ``name_version_arch.deb``."""
    parts = filename.removesuffix(".deb").split("_")
    if not filename.endswith(".deb") or len(parts) != 3:
        raise ValueError(f"not a Debian package file name: {filename}")
    return parts[0], parts[1].replace("%3a", ":")


@dataclass
class AptState:
    """An apt configuration of its own under ``folder``.

    ``low_priority_suites`` are pinned to priority 100: apt takes a package from them only when
    the other suites cannot satisfy the request (the engine from trixie, its libraries from the
    host's bookworm). The dpkg status is empty: apt resolves as for a machine with nothing
    installed, so the result is the whole closure a fresh host may need.
    """

    folder: Path
    sources: list[aptsources.Source]
    low_priority_suites: tuple[str, ...] = ()
    arch: str = "amd64"  # the Debian architecture resolved and downloaded (arm64 for that base)
    _updated: bool = field(default=False, init=False)

    def options(self) -> list[str]:
        d = self.folder
        return [
            "-o", f"Dir::Etc::SourceList={d / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={d / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={d / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={d / 'preferences.d'}",
            "-o", f"Dir::State::Lists={d / 'lists'}",
            "-o", f"Dir::Cache={d / 'cache'}",
            "-o", f"Dir::State::status={d / 'status'}",
            "-o", f"APT::Architecture={self.arch}",
        ]  # fmt: skip

    def _apt(self, *args: str, cwd: Path | None = None) -> str:
        cmd = ["apt-get", *self.options(), *args]
        try:
            p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise ToolError("apt-get: not installed (the store is filled on a Debian host)") from None
        if p.returncode != 0:
            raise ToolError(
                f"apt-get {' '.join(args[:3])} failed ({p.returncode}):\n{p.stderr.strip()[-1500:]}"
            )
        unsandboxed = [line for line in p.stderr.splitlines() if "unsandboxed" in line]
        if unsandboxed:  # apt fell back to downloading as root: a directory its user cannot reach
            raise ToolError(
                f"apt-get {' '.join(args[:3])}: {unsandboxed[0].strip()} (make {self.folder} and its "
                f"parents reachable by `{SANDBOX_USER}`)"
            )
        return p.stdout

    def update(self) -> None:
        if self._updated:
            return
        d = self.folder
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for partial in ("lists/partial", "cache/archives/partial"):
            hand_to_sandbox(d / partial)
        (d / "status").write_text("", encoding="utf-8")
        lines = []
        for s in self.sources:
            opts = [o for o in s.options if not o.startswith("signed-by=")]
            opts += [f"signed-by={KEYRING}", f"arch={self.arch}"]
            lines.append(aptsources.Source(s.uri, s.suite, s.components, tuple(opts)).line())
        (d / "sources.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
        prefs = [
            f"Package: *\nPin: release n={suite}\nPin-Priority: 100\n" for suite in self.low_priority_suites
        ]
        (d / "preferences").write_text("\n".join(prefs), encoding="utf-8")
        log(f"apt: reading the package index of {', '.join(s.suite for s in self.sources)} (network)")
        self._apt("-qq", "update")
        self._updated = True

    def resolve(self, specs: list[str]) -> list[tuple[str, str]]:
        """The packages (with versions) that installing ``specs`` needs, recommends excluded."""
        self.update()
        out = self._apt("-s", "-qq", "install", "--no-install-recommends", *specs)
        return parse_simulation(out)

    def download(self, specs: list[str], dest: Path) -> None:
        """``apt-get download name=version ...`` into ``dest`` (apt checks the index hashes)."""
        self.update()
        dest.mkdir(parents=True, exist_ok=True)
        landing = self.folder / "download"  # apt's user writes here, then the files move to dest
        shutil.rmtree(landing, ignore_errors=True)
        hand_to_sandbox(landing)
        log(f"apt: downloading {len(specs)} packages into {dest} (network)")
        self._apt("-qq", "download", *specs, cwd=landing)
        for deb in sorted(landing.glob("*.deb")):
            os.chown(deb, os.geteuid(), os.getegid())
            deb.chmod(0o644)
            deb.replace(dest / deb.name)
        shutil.rmtree(landing)
