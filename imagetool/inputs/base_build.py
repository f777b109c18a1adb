"""Building the base root filesystem with mmdebstrap: from the mirror (`make lock-base`, which writes
the base lock) or, through `rederive`, from the store's .debs alone. `base` only reads and checks.

    python -m imagetool base lock [--platform P]   # build from the mirror, accept it, write the lock
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagetool import common
from imagetool.common import ToolError, file_digest, log, rel, run
from imagetool.inputs import aptsources, inrelease
from imagetool.inputs.base import (
    DEFINITION,
    definition_sha256,
    drift_explanation,
    given_sources,
    load_definition,
    load_lock,
    parse_dpkg_status,
)
from imagetool.platforms import AMD64, Platform

MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")


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
