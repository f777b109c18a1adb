"""Filling the store, and putting its inputs where the builds read them.

    python -m imagetool store ensure [GROUP...]   # complete the store: dvc pull, else fetch (says which)
    python -m imagetool store lock [GROUP...]     # re-fill from the network; rewrite image/store.lock.json

The only module that fills the store: from a DVC remote, else from the network (PyPI, the Debian
mirror), and the network only to lock or to fill what the remote could not provide;
`LOCKSTEP_OFFLINE=1` refuses it. It sits above `store` (which keeps the files), `base`/`wheels`
(which read and check the locks), `base_build` and `rederive` (which make the base), so none of
them imports another back.

`make base` and `make wheels` place the base root filesystem (build/base/.../rootfs.tar) and the
image's wheels (build/wheels*) from the store, each checked against its lock.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from imagetool import common, platforms
from imagetool.common import (
    ROOT,
    InputError,
    ToolError,
    file_digest,
    log,
    rel,
    replace_durably,
    run,
    temporary_beside,
)
from imagetool.inputs import aptsources, base, base_build, rederive, store, wheels
from imagetool.inputs.apt import AptState, deb_file_version, state_folder
from imagetool.inputs.wheels import (
    ABI,
    GLIBC_MINOR_MAX,
    LOCK_NAMES,
    PYTHON_VERSION,
    check_wheels,
    load_locks,
    wheel_name_version,
)
from imagetool.platforms import AMD64, Platform

# Set to refuse any network fetch (the offline tests and users who want proof set it).
OFFLINE_ENV = "LOCKSTEP_OFFLINE"


class StoreIncompleteError(InputError):
    """Locked files are missing and may not be fetched (offline): names them, exit 2."""


def not_in_base(closure: list[tuple[str, str]], base_packages: dict[str, str]) -> list[str]:
    """``name=version`` of the closure's packages the base does not hold at that very version."""
    return [f"{p}={v}" for p, v in closure if base_packages.get(p) != v]


def _refuse_network(what: str) -> None:
    if os.environ.get(OFFLINE_ENV):
        raise ToolError(f"{OFFLINE_ENV} is set: not fetching {what} from the network")


def host_suite_sources(suite: str) -> list[aptsources.Source]:
    try:
        picked = aptsources.sources_for_suite(aptsources.host_sources(), suite, ["main"])
    except LookupError as e:
        raise ToolError(f"{e}: the store is filled from the host's Debian mirror") from None
    return aptsources.check_sources(picked)


def engine_apt(definition: dict[str, Any]) -> AptState:
    host = host_suite_sources(definition["host_suite"])
    newer = aptsources.Source(host[0].uri, definition["suite"], ("main",))
    return AptState(state_folder("apt-engine"), [newer, *host], low_priority_suites=(definition["suite"],))


def builder2_apt(definition: dict[str, Any]) -> AptState:
    host = host_suite_sources(definition["host_suite"])
    suite = definition["second_builder"]["suite"]
    return AptState(state_folder("apt-builder2"), [aptsources.Source(host[0].uri, suite, ("main",))])


def fetch_wheels(plat: platforms.Platform = platforms.AMD64) -> int:
    _refuse_network(f"{plat.name} wheels")
    folder = store.STORE / store.wheels_folder(plat)
    before = set(folder.glob("*.whl"))
    log(f"store: downloading {plat.name} wheels from the package index (network)")
    pip_download([ROOT / n for n in wheels.store_lock_names(plat)], folder, plat)
    return len(set(folder.glob("*.whl")) - before)


def fetch_rootfs(plat: platforms.Platform = platforms.AMD64) -> str:
    """The platform's store rootfs.tar at its base lock's sha256: from build/ if there, else
    re-derived from the store's .debs (offline), else mmdebstrap from the mirror."""
    lock = base.load_lock(plat)
    lock_path, tarball = plat.base_lock(), plat.rootfs()
    dest = store.STORE / store.rootfs_name(plat)
    if tarball.is_file() and file_digest(tarball) == lock.tarball_sha256:
        store.place(tarball, dest)
        return f"copied from {rel(tarball)}"
    tmp = temporary_beside(dest)
    folder = store.debs_folder(plat) + "/"
    debs = {n: e for n, e in store.StoreLock.read().files.items() if n.startswith(folder)}
    if debs and not store.check_files(store.STORE, debs, (store.rootfs_group(plat),)):
        built = rederive.rederive_base(tmp, plat)
        how = f"re-derived by mmdebstrap from {rel(store.STORE / folder)} (no network)"
    else:
        _refuse_network(f"the {plat.name} base root filesystem")
        definition = base.load_definition()
        built = base_build.mmdebstrap(
            definition, base_build.resolve_sources(definition), lock.source_date_epoch, tmp, plat
        )
        how = "built by mmdebstrap from the Debian mirror (network)"
    if built.sha256 != lock.tarball_sha256:
        tmp.unlink(missing_ok=True)
        raise ToolError(
            f"{how.split(' (')[0]}, the base is not {rel(lock_path)}'s (sha256 {built.sha256}, locked "
            f"{lock.tarball_sha256}); " + base.drift_explanation(lock.packages, built.packages, lock_path)
        )
    replace_durably(tmp, dest)
    return how


def base_apt(plat: platforms.Platform = platforms.AMD64) -> AptState:
    definition = base.load_definition()
    return AptState(
        state_folder(f"apt-base-{plat.deb_arch}"), base_build.resolve_sources(definition), arch=plat.deb_arch
    )


def fetch_debs(names: list[str]) -> None:
    """The named store .debs, at the versions their file names carry."""
    by_folder: dict[str, list[str]] = {}
    for name in names:
        pkg, version = deb_file_version(Path(name).name)
        by_folder.setdefault(str(Path(name).parent), []).append(f"{pkg}={version}")
    for folder, specs in by_folder.items():
        _refuse_network(f"{len(specs)} Debian packages")
        if store.group_of(folder) == "engine":
            apt = engine_apt(store.load_engine_definition())
        elif store.group_of(folder) == "builder2":
            apt = builder2_apt(store.load_engine_definition())
        else:
            apt = base_apt(store.platform_of(folder))
        apt.download(specs, store.STORE / folder)


def fetch_missing(missing: list[str]) -> list[str]:
    """Fetch exactly the missing locked files; returns what was done, for the log."""
    done = []
    for plat in platforms.ALL:
        if any(n.startswith(store.wheels_folder(plat) + "/") for n in missing):
            done.append(f"{fetch_wheels(plat)} {plat.name} wheels from the package index")
    debs = [n for n in missing if n.endswith(".deb")]
    if debs:
        fetch_debs(debs)
        done.append(f"{len(debs)} .debs from the Debian mirror")
    for plat in platforms.ALL:  # after the .debs: it is re-derived from them, offline
        if store.rootfs_name(plat) in missing:
            done.append(f"{store.rootfs_name(plat)} {fetch_rootfs(plat)}")
    return done


def ensure(groups: list[str] | tuple[str, ...] = store.GROUPS, *, quiet: bool = False) -> None:
    """Make the locked files of ``groups`` present and intact: DVC remote first, network last."""
    wanted = tuple(groups)
    files = store.StoreLock.read().files
    problems = store.check_files(store.STORE, files, wanted)
    store.refuse_altered(problems)
    pulled = False
    if problems.missing:
        log(f"store: {len(problems.missing)} of the locked files are missing from {rel(store.STORE)}")
        if pulled := store.dvc_pull():
            problems = store.check_files(store.STORE, files, wanted)
            store.refuse_altered(problems)
    fetched: list[str] = []
    if problems.missing and os.environ.get(OFFLINE_ENV):
        shown = ", ".join(f"{rel(store.STORE / n)}" for n in problems.missing[:10])
        more = f" and {len(problems.missing) - 10} more" if len(problems.missing) > 10 else ""
        raise StoreIncompleteError(f"{OFFLINE_ENV} is set (no network), and the store lacks {shown}{more}")
    if problems.missing:
        fetched = fetch_missing(problems.missing)
        problems = store.check_files(store.STORE, files, wanted)
        store.refuse_altered(problems)
        if problems.missing:
            raise ToolError(
                f"still missing from {rel(store.STORE)} after fetching: " + ", ".join(problems.missing)
            )
    if (fetched or not store.dvc_cached()) and set(wanted) == set(store.GROUPS):
        store.remove_unlocked(files)
        store.dvc_add()
    n = [e for name, e in files.items() if store.group_of(name) in wanted]
    size = store.megabytes(sum(e["bytes"] for e in n))
    summary = f"store: {len(n)} files ({size}) of {', '.join(wanted)} match {rel(store.LOCK)}"
    if fetched:
        log(f"{summary}; filled: {'; '.join(fetched)}")
    elif pulled or not quiet:
        log(f"{summary}; {'pulled from the DVC remote, ' if pulled else ''}nothing fetched from the network")


def download_debs(apt: AptState, specs: list[str], folder: str) -> set[str]:
    """Download ``name=version`` specs into store/``folder``; their store paths."""
    apt.download(specs, store.STORE / folder)
    wanted = set(specs)
    return {
        f"{folder}/{path.name}"
        for path in store.STORE.joinpath(folder).glob("*.deb")
        if "=".join(deb_file_version(path.name)) in wanted
    }


def lock_wheels(plat: platforms.Platform) -> set[str]:
    """Fetch the platform's locked wheels into the store, drop stale ones; their store paths."""
    folder = store.STORE / store.wheels_folder(plat)
    fetch_wheels(plat)
    reqs = {r.name: r for r in wheels.load_locks(ROOT, wheels.store_lock_names(plat))}
    problems = wheels.check_wheels(list(reqs.values()), folder)
    stale = [p for p in problems if "not in the locks" in p]
    for path in folder.glob("*.whl"):
        if any(p.startswith(rel(path) + ":") for p in stale):
            path.unlink()
    problems = wheels.check_wheels(list(reqs.values()), folder)
    if problems:
        raise ToolError(f"store {plat.name} wheels do not match the locks:\n  " + "\n  ".join(problems))
    return {f"{store.wheels_folder(plat)}/{p.name}" for p in folder.glob("*.whl")}


def lock_plan(groups: list[str]) -> list[tuple[platforms.Platform, bool, bool]]:
    """Per platform, whether `store lock store.GROUPS` re-locks its wheels and its base. amd64's are the
    `wheels` and `base` groups; another platform's group (`arm64`) is both, and `wheels` alone
    takes its wheels too."""
    plan = []
    for plat in platforms.ALL:
        whole = bool(plat.store_prefix) and plat.deb_arch in groups
        take_wheels = "wheels" in groups or whole
        take_base = whole if plat.store_prefix else "base" in groups
        if take_wheels or take_base:
            plan.append((plat, take_wheels, take_base))
    return plan


def cmd_lock(groups: list[str]) -> int:
    """Re-fill from the network what the other locks name now, and write the store lock."""
    old: dict[str, dict[str, Any]] = {}
    tools_closure: list[str] = []
    if store.LOCK.is_file():
        previous = store.StoreLock.read()
        old, tools_closure = previous.files, list(previous.tools_closure)
    keep: dict[str, dict[str, Any]] = {n: e for n, e in old.items() if store.group_of(n) not in groups}
    wanted: set[str] = set()
    for plat, take_wheels, take_base in lock_plan(groups):
        if take_wheels:
            # Every platform's wheels follow the requirement locks: `make lock` re-locks them all,
            # also where the rest of that platform's group (its base) stays as it is.
            folder = store.wheels_folder(plat) + "/"
            keep = {n: e for n, e in keep.items() if not n.startswith(folder)}
            wanted |= lock_wheels(plat)
        if take_base:
            log(f"store: {store.rootfs_name(plat)} {fetch_rootfs(plat)}")
            lock = base.load_lock(plat)
            specs = [f"{p}={v}" for p, v in lock.packages.items()]
            wanted |= download_debs(base_apt(plat), specs, store.debs_folder(plat))
            wanted.add(store.rootfs_name(plat))
    if "engine" in groups:
        definition = store.load_engine_definition()
        apt = engine_apt(definition)
        closure = apt.resolve([*definition["packages"], *definition["tools"]])
        pins = store.engine_pins(definition)
        wrong = [f"{p} {v} (pinned {pins[p]})" for p, v in closure if p in pins and pins[p] != v]
        if wrong:
            raise ToolError(
                f"{rel(store.ENGINE_DEFINITION)}: apt resolved other versions: {', '.join(wrong)}"
            )
        wanted |= download_debs(apt, [f"{p}={v}" for p, v in closure], "engine/debs")
        # What the tools alone need, for hosts whose engine is fine but lack mmdebstrap or zstd.
        tools_closure = sorted(p for p, _ in apt.resolve(list(definition["tools"])))
    if "builder2" in groups:
        definition = store.load_engine_definition()
        specs = list(definition["second_builder"]["packages"])
        wanted |= download_debs(builder2_apt(definition), specs, "builder2/debs")
    if "stack" in groups:
        # From the base's own sources: the images install these .debs on the base's dpkg database.
        apt = base_apt()
        pins = store.load_stack_definition()["packages"]
        closure = apt.resolve(pins)
        wrong = sorted(set(pins) - {f"{p}={v}" for p, v in closure})
        if wrong:
            raise ToolError(f"{rel(store.STACK_DEFINITION)}: apt did not resolve {', '.join(wrong)}")
        base_packages = base.load_lock().packages
        wanted |= download_debs(apt, not_in_base(closure, base_packages), "stack/debs")
    for group in groups:  # drop what the locks no longer name
        for path in store.STORE.joinpath(group).rglob("*"):
            name = path.relative_to(store.STORE).as_posix()
            if path.is_file() and name not in wanted:
                log(f"store: removing {rel(path)} (no longer locked)")
                path.unlink()
    files = dict(keep)
    for name in sorted(wanted):
        path = store.STORE / name
        files[name] = {"sha256": file_digest(path), "bytes": path.stat().st_size}
    common.write_json_atomic(
        store.LOCK,
        {
            "comment": "Written by `make lock-store` (python -m imagetool store lock); do not edit.",
            "engine_definition": store.load_engine_definition(),
            "tools_closure": tools_closure,
            "files": dict(sorted(files.items())),
        },
    )
    total = sum(e["bytes"] for e in files.values())
    used = ", ".join(groups)
    size = store.megabytes(total)
    log(f"store: wrote {rel(store.LOCK)}: {len(files)} files, {size} (network used for {used})")
    store.dvc_add()
    return 0


# --- placing, for the builds ---------------------------------------------------------------


def place_base(plat: Platform = AMD64) -> int:
    """build/base/rootfs.tar from the store (never from the mirror: `make lock-base` is that)."""
    _, lock = base.current_lock(plat)
    tarball = plat.rootfs()
    if base.tarball_matches(lock, plat):
        log(f"base: {rel(tarball)} matches {rel(plat.base_lock())} (cached)")
        return 0
    ensure([store.rootfs_group(plat)], quiet=True)
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
    ensure([store.group_of(store.wheels_folder(plat))])
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


def pip_download(lock_files: list[Path], dest: Path, plat: Platform = AMD64) -> None:
    """Fetch the locked wheels for ``plat`` from the package index (pip checks the hashes; files
    already in ``dest`` are reused)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--progress-bar", "off", "--dest", str(dest)]
    cmd += ["--only-binary=:all:", "--no-deps", "--require-hashes"]
    cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI, "--abi", "abi3"]
    cmd += ["--abi", "none"]
    for tag in [*plat.wheel_platform_tags(GLIBC_MINOR_MAX), "any"]:
        cmd += ["--platform", tag]
    for lock in lock_files:
        cmd += ["-r", str(lock)]
    run(cmd, env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"}, capture=True)
