"""The image's target platforms: one table of what differs between linux/amd64 and linux/arm64.

Everything else (the Dockerfile, the model files, the serve locks, the epoch's meaning) is shared.
amd64 keeps the paths it had before arm64 existed, so its digest and its store did not move.
arm64 RUN steps (the base's maintainer scripts, the image's pip install) run under qemu-user-static
through binfmt_misc when the host is not arm64.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host_platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagetool import engine, layout
from imagetool.common import BUILD, ROOT, InputError

ENV = "PLATFORM"  # `make image PLATFORM=linux/arm64`; empty or unset: every platform
BINFMT_DIR_ENV = "LOCKSTEP_BINFMT_DIR"  # tests point it at an empty folder to stand for "no handler"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Platform:
    name: str  # OCI platform: linux/amd64
    deb_arch: str  # Debian architecture: amd64, arm64
    machine: str  # uname -m and the wheel tags' suffix: x86_64, aarch64
    suffix: str  # "" for amd64 (the paths it always had), "-arm64" / "arm64/" for the others
    qemu: str  # binfmt handler that runs it on another host

    def base_lock(self, root: Path = ROOT) -> Path:
        lock = root / layout.BASE_LOCK
        return lock.with_name(f"base.{self.deb_arch}.lock.json") if self.suffix else lock

    def rootfs(self, build: Path = BUILD) -> Path:
        return build / "base" / (f"{self.deb_arch}/rootfs.tar" if self.suffix else "rootfs.tar")

    def deb_cache(self, build: Path = BUILD) -> Path:
        return build / "base" / (f"{self.deb_arch}/debs" if self.suffix else "debs")

    def wheels(self, build: Path = BUILD) -> Path:
        return build / f"wheels{self.suffix}"

    @property
    def store_prefix(self) -> str:
        """Where its files sit in store/: amd64 at the top (wheels/, base/), arm64 under arm64/."""
        return f"{self.deb_arch}/" if self.suffix else ""

    @property
    def make_flag(self) -> str:
        """What a `make` command needs to name this platform (nothing for the default amd64)."""
        return f" PLATFORM={self.name}" if self.suffix else ""

    @property
    def oci_name(self) -> str:
        """The OCI tarball `make image` writes under build/image/."""
        return f"lockstep{self.suffix}.oci.tar"

    def beside(self, amd64_tar: Path) -> Path:
        """This platform's OCI tarball next to amd64's, named alike: `verify.oci.tar` gives
        `verify-arm64.oci.tar` (what `make verify` wrote), `lockstep.oci.tar` `lockstep-arm64.oci.tar`."""
        return amd64_tar.with_name(amd64_tar.name.removesuffix(".oci.tar") + f"{self.suffix}.oci.tar")

    @property
    def sbom_name(self) -> str:
        """Its SBOM under image/ (`make sbom`)."""
        return f"sbom.{self.deb_arch}.cdx.json" if self.suffix else "sbom.cdx.json"

    def wheel_platform_tags(self, glibc_minor_max: int) -> list[str]:
        """pip --platform tags a wheel may carry to run on this platform's Debian 12 (glibc 2.36)."""
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(glibc_minor_max, 4, -1)]
        tags.append(f"manylinux2014_{self.machine}")
        if self.machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    def native(self) -> bool:
        # macOS says arm64 where Linux says aarch64 (Apple Silicon); Windows says AMD64.
        machine = host_platform.machine()
        return {"arm64": "aarch64", "AMD64": "x86_64"}.get(machine, machine) == self.machine

    def runnable_problem(self) -> str | None:
        """Why this host cannot run the platform's binaries (RUN steps, the container), or None."""
        if self.native():
            return None
        if sys.platform != "linux":
            # Docker Desktop's engine runs in a VM with its own emulation, out of this host's sight:
            # ask its BuildKit which platforms it runs.
            if self.name in engine.emulated_platforms():
                return None
            return (
                f"{self.name}: the Docker engine does not run {self.machine} binaries (not in "
                "`docker buildx inspect`'s platforms): turn on its emulation (Docker Desktop: Rosetta or "
                "QEMU), or build the native platform alone with `make image PLATFORM=...`"
            )
        folder = Path(os.environ.get(BINFMT_DIR_ENV) or BINFMT_DIR)
        handler = folder / self.qemu
        try:
            enabled = handler.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
        except (OSError, IndexError):
            enabled = False
        if enabled:
            return None
        return (
            f"{self.name}: this {host_platform.machine()} host has no binfmt_misc handler for {self.machine} "
            f"({handler} is missing): register one with `make binfmt` (qemu-user-static, root), "
            "or build the native platform alone: `make image PLATFORM=linux/amd64` works without it"
        )

    def check_runnable(self) -> None:
        problem = self.runnable_problem()
        if problem:
            raise InputError(problem)


AMD64 = Platform("linux/amd64", "amd64", "x86_64", "", "qemu-x86_64")
ARM64 = Platform("linux/arm64", "arm64", "aarch64", "-arm64", "qemu-aarch64")
ALL = (AMD64, ARM64)
BY_NAME = {p.name: p for p in ALL}


INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def index_bytes(manifests: dict[str, dict[str, Any]]) -> bytes:
    """The OCI image index over the platforms' manifests ({name: {digest, size}}), in the table's
    order: the bytes `make push` uploads, so its digest follows from the manifests' alone."""
    descriptors = []
    for plat in ALL:
        m = manifests[plat.name]
        os_name, arch = plat.name.split("/")
        descriptors.append(
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": m["digest"],
                "size": m["size"],
                "platform": {"architecture": arch, "os": os_name},
            }
        )
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": descriptors}
    return json.dumps(index, separators=(",", ":")).encode()


def get(name: str) -> Platform:
    """The platform called ``name`` (linux/amd64, linux/arm64); one line naming the choices else."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise InputError(f"unknown platform {name!r}: choose {', '.join(BY_NAME)}") from None


def chosen(value: str | None = None) -> list[Platform]:
    """The platforms a command works on: ``value`` (a name or ``all``), else $PLATFORM, else all."""
    name = value or os.environ.get(ENV, "") or "all"
    return list(ALL) if name == "all" else [get(name)]


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform", default="", help=f"{', '.join(BY_NAME)} or all (default: ${ENV}, else all)"
    )
