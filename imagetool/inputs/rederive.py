"""The base root filesystem re-derived from the store's .debs alone: no mirror, no network.

    python -m imagetool store rederive-base [--platform P]   # rebuild it offline; == the base lock?

`fetch` uses it to fill a missing rootfs.tar before it would go to the mirror.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from imagetool import platforms
from imagetool.common import BUILD, InputError, ToolError, log, rel
from imagetool.inputs import aptsources, base, base_build
from imagetool.inputs.store import (
    STORE,
    StoreLock,
    check_files,
    debs_folder,
    place,
    refuse_altered,
    rootfs_group,
)


def local_base_repository(dest: Path, plat: platforms.Platform = platforms.AMD64) -> aptsources.Source:
    """An apt repository of the store's base .debs (checked first) under ``dest``, for mmdebstrap.

    Unsigned (``trusted=yes``): every .deb was just checked against image/store.lock.json, and the
    index is written here from those very files (control fields + size + sha256).
    """
    files = StoreLock.read().files
    debs = {n: e for n, e in files.items() if n.startswith(debs_folder(plat) + "/")}
    problems = check_files(STORE, debs, (rootfs_group(plat),))
    refuse_altered(problems)
    if problems.missing:
        raise InputError(
            f"cannot re-derive the {plat.name} base: missing from {rel(STORE)}: {', '.join(problems.missing)}"
        )
    suite = base.load_definition()["suite"]
    shutil.rmtree(dest, ignore_errors=True)
    index = dest / "dists" / suite / f"main/binary-{plat.deb_arch}"
    index.mkdir(parents=True)
    stanzas = []
    for name, entry in sorted(debs.items()):
        pool = dest / "pool" / Path(name).name
        place(STORE / name, pool)
        control = subprocess.run(["dpkg-deb", "-f", str(pool)], capture_output=True, text=True, check=True)
        stanzas.append(
            control.stdout.rstrip("\n")
            + f"\nFilename: pool/{pool.name}\nSize: {entry['bytes']}\nSHA256: {entry['sha256']}\n"
        )
    (index / "Packages").write_text("\n".join(stanzas), encoding="utf-8")
    (dest / "dists" / suite / "Release").write_text(
        f"Suite: {suite}\nCodename: {suite}\nArchitectures: {plat.deb_arch}\nComponents: main\n",
        encoding="utf-8",
    )
    # copy://: mmdebstrap copies the files into its chroot (file:// would need a bind mount).
    return aptsources.Source(f"copy://{dest}", suite, ("main",), ("trusted=yes",))


def rederive_base(out: Path, plat: platforms.Platform = platforms.AMD64) -> base_build.Built:
    """The base rootfs rebuilt by mmdebstrap from the store's .debs only: no mirror, no network."""
    lock = base.load_lock(plat)
    source = local_base_repository(BUILD / f"base-repo{plat.suffix}", plat)
    return base_build.mmdebstrap(base.load_definition(), [source], lock.source_date_epoch, out, plat)


def cmd_rederive_base(plat: platforms.Platform = platforms.AMD64) -> int:
    """Prove the stored .debs still make the locked base: rebuild it offline and compare."""
    lock = base.load_lock(plat)
    lock_path = plat.base_lock()
    out = plat.rootfs().with_name("rederived.tar")
    built = rederive_base(out, plat)
    if built.sha256 != lock.tarball_sha256:
        raise ToolError(
            f"{rel(out)}: re-derived from {rel(STORE / debs_folder(plat))} with sha256 {built.sha256}, but "
            f"{rel(lock_path)} locks {lock.tarball_sha256}; "
            + base.drift_explanation(lock.packages, built.packages, lock_path)
        )
    out.unlink()
    log(
        f"store: re-derived the {plat.name} base from {rel(STORE / debs_folder(plat))} = {rel(lock_path)} "
        f"(sha256 {built.sha256})"
    )
    return 0
