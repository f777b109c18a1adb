"""The store's locked inputs, put where the builds read them: the base root filesystem
(build/base/.../rootfs.tar) and the image's wheels (build/wheels*), each checked against its lock.

Above `store` (which keeps the files) and `base`/`wheels` (which read and check the locks), so
neither of those imports the other back: `make base` and `make wheels` run these.
"""

from __future__ import annotations

from imagetool.common import ToolError, file_digest, log, rel
from imagetool.inputs import base, store
from imagetool.inputs.wheels import LOCK_NAMES, check_wheels, load_locks, wheel_name_version
from imagetool.platforms import AMD64, Platform


def place_base(plat: Platform = AMD64) -> int:
    """build/base/rootfs.tar from the store (never from the mirror: `make lock-base` is that)."""
    _, lock = base.current_lock(plat)
    tarball = plat.rootfs()
    if base.tarball_matches(lock, plat):
        log(f"base: {rel(tarball)} matches {rel(plat.base_lock())} (cached)")
        return 0
    store.ensure([store.rootfs_group(plat)], quiet=True)
    stored = store.STORE / store.rootfs_name(plat)
    if file_digest(stored) != lock.tarball_sha256:
        raise ToolError(
            f"{rel(stored)}: not the tarball {rel(plat.base_lock())} locks "
            f"(sha256 {lock.tarball_sha256}); "
            "after `make lock-base`, run `make lock-store`"
        )
    store.place(stored, tarball)
    log(f"base: {rel(tarball)} from {rel(stored)} sha256:{lock.tarball_sha256} (= lock)")
    return 0


def place_wheels(plat: Platform = AMD64) -> int:
    """build/wheels = the image's wheels, taken from the store only (checked there and here)."""
    reqs = load_locks()
    store.ensure([store.group_of(store.wheels_folder(plat))])
    folder = plat.wheels()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {r.name: r for r in reqs}
    kept = 0
    for path in sorted(store.STORE.joinpath(store.wheels_folder(plat)).glob("*.whl")):
        name, _ = wheel_name_version(path.name)
        if name in wanted:
            dest = folder / path.name
            if dest.is_file() and not dest.samefile(path) and (got := file_digest(dest)) != file_digest(path):
                log(f"wheels: replacing {rel(dest)} (sha256 {got} is not the locked one) from the store")
            store.place(path, dest)
            kept += 1
    # Remove what the image's locks no longer name (it would sit in the build context).
    for path in folder.glob("*"):
        try:
            stale = wheel_name_version(path.name)[0] not in wanted
        except ValueError:
            stale = True
        if stale:
            log(f"wheels: removing {rel(path)}")
            path.unlink()
    problems = check_wheels(reqs, folder)
    if problems:
        raise ToolError("wheels do not match the locks:\n  " + "\n  ".join(problems))
    log(
        f"wheels: {kept} {plat.name} wheels from the store in {rel(folder)}, "
        f"all hashes match {', '.join(LOCK_NAMES)}"
    )
    return 0
